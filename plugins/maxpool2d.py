"""maxpool2d: the maximum of each (ph, pw) window of every channel.

Shapes (per batch): x (N, C, H, W), y (N, C, H', W') with
``H' = (H - ph) // sh + 1`` and ``W' = (W - pw) // sw + 1`` (floor: rows and columns
that do not fill a window are dropped, so 11 -> 5 for a 2x2 pool with stride 2).

Forward, for the window offsets (i, j) in 0 <= i < ph, 0 <= j < pw:

    y[n, c, p, q] = max_{i, j} x[n, c, p*sh + i, q*sw + j]

Backward: y is locally a selection of one input, the window's argmax (i*, j*), so

    dx[n, c, p*sh + i, q*sw + j] += dy[n, c, p, q]  if (i, j) == (i*, j*) else 0

Each output's gradient goes to exactly one input. On ties the winner is the first
maximal offset in row-major order (i, then j), which keeps the gradient a valid
subgradient and the result independent of memory layout. When windows overlap
(stride < pool) one input can win several windows and its gradients are summed.

Both passes are kernels of lamina.kernels.pool: the forward keeps each window's
winner beside its maximum (in a buffer reused while the batch shape stays the same),
the backward routes dy through it. See docs/layers/maxpool2d.md for the derivation.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, NamedTuple

import numpy as np
from pydantic import Field

from lamina import Example, Layer, LayerConfig, LayerTraits, Reference, ShapeError, hookimpl
from lamina.kernels import (
    Workspace,
    conv_output_size,
    max_pool,
    max_pool_backward,
    pair,
    winner_dtype,
)

PositiveInt = Annotated[int, Field(strict=True, ge=1)]
Size = PositiveInt | tuple[PositiveInt, PositiveInt]


class MaxPool2DConfig(LayerConfig):
    pool_size: Size = Field(
        default=2, description="window height and width: an int or [ph, pw], each >= 1"
    )
    stride: Size | None = Field(
        default=None,
        description="step between windows: an int or [sh, sw], each >= 1; default pool_size",
    )


class Selection(NamedTuple):
    """What backward needs from forward."""

    x_shape: tuple[int, ...]
    winner: np.ndarray  # (N, C, H', W') offset i*pw + j of each window's first maximum


class MaxPool2D(Layer):
    """Max pooling over (ph, pw) windows: (N, C, H, W) -> (N, C, H', W')."""

    name: ClassVar[str] = "maxpool2d"
    Config: ClassVar[type[LayerConfig]] = MaxPool2DConfig
    # Each output is its window's first maximum and alone gets its gradient, so a relu
    # before this layer may run after it instead (lamina.layer, lamina.steps).
    traits: ClassVar[LayerTraits] = LayerTraits(max_selecting=True)

    def __init__(self, config=None, /, **kwargs):
        super().__init__(config, **kwargs)
        self.pool = pair(self.config.pool_size)
        self.stride = pair(self.config.stride if self.config.stride is not None else self.pool)
        self._work = Workspace()

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(
                "maxpool2d expects (channels, height, width) per sample; "
                f"received {input_shape} ({len(input_shape)}-D). Fix: pool images (e.g. the "
                "output of a conv2d), before any flatten"
            )
        c, h, w = input_shape
        (ph, pw), (sh, sw) = self.pool, self.stride
        if ph > h or pw > w:
            raise ShapeError(
                f"maxpool2d pool_size ({ph}, {pw}) is larger than its input ({h}, {w}); "
                "expected a pool that fits inside the input. Fix: use a smaller pool_size "
                "or fewer pooling layers before this one"
            )
        return (c, conv_output_size(h, ph, sh), conv_output_size(w, pw, sw))

    def forward(self, x, *, training):
        winner = self._work.get("winner", (*x.shape[:2], *self.output_shape[1:]),
                                winner_dtype(self.pool))
        y, winner = max_pool(x, self.pool, self.stride, winner=winner)
        self.cache = Selection(x.shape, winner)
        return y

    def backward(self, dy, *, input_grad=True):
        x_shape, winner = self.cached()
        return max_pool_backward(dy, winner, x_shape, self.pool, self.stride)

    def max_pool_window(self):
        """Its windows, so a layer that fuses_max_pool can end in this pool (lamina.steps)."""
        return (self.pool, self.stride)

    def export_onnx(self, graph, inputs, name):
        """ONNX MaxPool (floor: partial windows dropped, as here)."""
        return graph.add("MaxPool", inputs, name, kernel_shape=list(self.pool),
                         strides=list(self.stride))

    @classmethod
    def examples(cls):
        return [
            # docs/layers/maxpool2d.md, "Hand-worked example": channel 1 is all ties
            Example(config={}, input_shape=(2, 4, 4), id="2x2", reference=Reference(
                x=[[[[1, 3, 2, 0], [4, 2, 1, 5], [0, 0, 1, 1], [2, 1, 0, 3]],
                    [[7, 7, 7, 7], [7, 7, 7, 7], [7, 7, 7, 7], [7, 7, 7, 7]]]],
                y=[[[[4, 5], [2, 3]], [[7, 7], [7, 7]]]],
                dy=[[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]],
                dx=[[[[0, 0, 0, 0], [1, 0, 0, 2], [0, 0, 0, 0], [3, 0, 0, 4]],
                     [[5, 0, 6, 0], [0, 0, 0, 0], [7, 0, 8, 0], [0, 0, 0, 0]]]])),
            Example(config={"pool_size": 2}, input_shape=(2, 5, 7), id="2x2-odd"),
            Example(
                config={"pool_size": 3, "stride": 2}, input_shape=(2, 7, 6), id="3x3-s2-overlap"
            ),
            Example(
                config={"pool_size": [2, 3], "stride": [1, 3]}, input_shape=(1, 4, 7), id="2x3-s13"
            ),
            Example(config={"pool_size": 2, "stride": 3}, input_shape=(2, 7, 8), id="2x2-s3-gaps"),
        ]


@hookimpl
def lamina_register_layers():
    return [MaxPool2D]
