"""global_maxpool2d: the maximum of every channel over its whole image.

Shapes (per batch): x (N, C, H, W), y (N, C): one number per channel, the spatial axes
gone.

Forward, over the K = H * W entries of each channel in row-major order (h, then w), with
k* = h* * W + w* the first of them holding the maximum:

    y[n, c] = max_{h, w} x[n, c, h, w] = x[n, c, h*, w*]

Backward: y is locally a selection of the one entry (h*, w*), so

    dx[n, c, h, w] = dy[n, c]  if (h, w) == (h*, w*) else 0        (N, C, H, W)

Ties go to the first maximum in row-major order, as in maxpool2d (whose window here
is the whole image): the whole gradient to one entry, a valid subgradient, the same
in any memory layout. A NaN in a channel wins it, so y is NaN there, as in maxpool2d:
a broken activation is not hidden by the pool (the first NaN gets the gradient).

No parameters. See docs/layers/global_maxpool2d.md for the derivation.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import numpy as np

from lamina import Example, Layer, LayerConfig, LayerTraits, Reference, ShapeError, hookimpl


class GlobalMaxPool2DConfig(LayerConfig):
    """global_maxpool2d has no settings."""


class Selection(NamedTuple):
    """What backward needs from forward."""

    x_shape: tuple[int, ...]
    winner: np.ndarray  # (N, C) k* = h* * W + w* of each channel's first maximum


class GlobalMaxPool2D(Layer):
    """The maximum of each channel: (N, C, H, W) -> (N, C)."""

    name: ClassVar[str] = "global_maxpool2d"
    Config: ClassVar[type[LayerConfig]] = GlobalMaxPool2DConfig
    # Each output is its channel's first maximum and alone gets its gradient, so a relu
    # before this layer may run after it instead, on C entries instead of C*H*W.
    traits: ClassVar[LayerTraits] = LayerTraits(max_selecting=True)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(
                "global_maxpool2d expects (channels, height, width) per sample; "
                f"received {input_shape} ({len(input_shape)}-D). Fix: pool images (e.g. the "
                "output of a conv2d), before any flatten"
            )
        return (input_shape[0],)

    def forward(self, x, *, training):
        """x: (N, C, H, W) -> y: (N, C)."""
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        # argmax returns the first maximal index, and treats NaN as the maximum
        winner = np.argmax(flat, axis=2)
        self.cache = Selection(x.shape, winner)
        return np.take_along_axis(flat, winner[:, :, None], axis=2)[:, :, 0]

    def backward(self, dy, *, input_grad=True):
        """dy: (N, C) -> dx: (N, C, H, W)."""
        x_shape, winner = self.cached()
        if not input_grad:
            return None  # no parameters: nothing else to compute
        n, c, h, w = x_shape
        dx = np.zeros((n, c, h * w), dtype=dy.dtype)
        np.put_along_axis(dx, winner[:, :, None], dy[:, :, None], axis=2)
        return dx.reshape(x_shape)

    def export_onnx(self, graph, inputs, name):
        """ONNX GlobalMaxPool gives (N, C, 1, 1); Flatten from axis 1 makes it (N, C)."""
        pooled = graph.add("GlobalMaxPool", inputs, f"{name}.pooled")
        return graph.add("Flatten", [pooled], name, axis=1)

    @classmethod
    def examples(cls):
        return [
            # docs/layers/global_maxpool2d.md, "Hand-worked example": channel 0's maximum
            # 5 is at (1, 0); channel 1 is a tie of three 4s, the first at (0, 1)
            Example(config={}, input_shape=(2, 2, 3), id="2x3-ties", reference=Reference(
                x=[[[[1, 3, 2], [5, 0, 4]], [[0, 4, 4], [4, -1, 2]]]],
                y=[[5, 4]],
                dy=[[2, -3]],
                dx=[[[[0, 0, 0], [2, 0, 0]], [[0, -3, 0], [0, 0, 0]]]])),
            Example(config={}, input_shape=(3, 5, 4), id="odd"),
            Example(config={}, input_shape=(4, 1, 1), id="1x1"),
        ]


@hookimpl
def lamina_register_layers():
    return [GlobalMaxPool2D]
