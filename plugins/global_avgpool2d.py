"""global_avgpool2d: the mean of every channel over its whole image.

Shapes (per batch): x (N, C, H, W), y (N, C): one number per channel, the spatial axes
gone (the layer that usually ends an all-convolutional network, before a dense or the
loss).

Forward, with K = H * W:

    y[n, c] = sum_{h, w} x[n, c, h, w] / K

Backward: every entry of a channel has weight 1 / K in its mean, so

    dx[n, c, h, w] = dy[n, c] / K                (N, C, H, W)

No parameters. See docs/layers/global_avgpool2d.md for the derivation.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from lamina import Example, Layer, LayerConfig, Reference, ShapeError, hookimpl


class GlobalAvgPool2DConfig(LayerConfig):
    """global_avgpool2d has no settings."""


class GlobalAvgPool2D(Layer):
    """The mean of each channel: (N, C, H, W) -> (N, C)."""

    name: ClassVar[str] = "global_avgpool2d"
    Config: ClassVar[type[LayerConfig]] = GlobalAvgPool2DConfig
    # No declarations: a mean is not a selection, and each sample is pooled alone.

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(
                "global_avgpool2d expects (channels, height, width) per sample; "
                f"received {input_shape} ({len(input_shape)}-D). Fix: pool images (e.g. the "
                "output of a conv2d), before any flatten"
            )
        return (input_shape[0],)

    def forward(self, x, *, training):
        """x: (N, C, H, W) -> y: (N, C)."""
        n, c, h, w = x.shape
        self.cache = x.shape
        # one contiguous axis of K entries: NumPy sums it pairwise, accurately in float32
        return np.mean(x.reshape(n, c, h * w), axis=2)

    def backward(self, dy, *, input_grad=True):
        """dy: (N, C) -> dx: (N, C, H, W)."""
        x_shape = self.cached()
        if not input_grad:
            return None  # no parameters: nothing else to compute
        k = dy.dtype.type(x_shape[2] * x_shape[3])
        dx = np.empty(x_shape, dtype=dy.dtype)
        dx[...] = (dy / k)[:, :, None, None]
        return dx

    def export_onnx(self, graph, inputs, name):
        """ONNX GlobalAveragePool gives (N, C, 1, 1); Flatten from axis 1 makes it (N, C)."""
        pooled = graph.add("GlobalAveragePool", inputs, f"{name}.pooled")
        return graph.add("Flatten", [pooled], name, axis=1)

    @classmethod
    def examples(cls):
        return [
            # docs/layers/global_avgpool2d.md, "Hand-worked example": K = 6, so
            # y = [12/6, -3/6] and every dx entry of channel c is dy[c] / 6
            Example(config={}, input_shape=(2, 2, 3), id="2x3", reference=Reference(
                x=[[[[1, 2, 3], [0, 2, 4]], [[-1, 0, 1], [-3, 0, 0]]]],
                y=[[2, -0.5]],
                dy=[[6, -3]],
                dx=[[[[1, 1, 1], [1, 1, 1]], [[-0.5, -0.5, -0.5], [-0.5, -0.5, -0.5]]]])),
            Example(config={}, input_shape=(3, 5, 4), id="odd"),
            Example(config={}, input_shape=(4, 1, 1), id="1x1"),
        ]


@hookimpl
def lamina_register_layers():
    return [GlobalAvgPool2D]
