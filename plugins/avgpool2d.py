"""avgpool2d: the average of each (ph, pw) window of every channel, padding left out.

Shapes (per batch): x (N, C, H, W), y (N, C, H', W') with, for a stride (sh, sw),

    "valid": H' = (H - ph) // sh + 1        (floor: a partial window is dropped)
    "same":  H' = ceil(H / sh)              (zeros added as TensorFlow adds them)

and W' alike. "same" pads (H' - 1)*sh + ph - H rows in all, the smaller half on top
and the extra one, if the total is odd, at the bottom (columns: left, then right).

Forward, for the window offsets (i, j) in 0 <= i < ph, 0 <= j < pw whose entry
(p*sh + i - top, q*sw + j - left) lies inside the image, and count[p, q] their number:

    y[n, c, p, q] = sum_{i, j inside} x[n, c, p*sh + i - top, q*sw + j - left] / count[p, q]

Padded entries are left out of the average, not counted as zeros (as Keras does, and
ONNX AveragePool with count_include_pad = 0): a window half over the padding is the
mean of its real half. count depends on (p, q) only, never on the data.

Backward: y is linear in x, and each entry inside window (p, q) has weight
1 / count[p, q] in it, so

    dx[n, c, p*sh + i - top, q*sw + j - left] += dy[n, c, p, q] / count[p, q]

for every window and every offset inside the image (an entry that several windows
cover, stride < pool, sums their shares; one that no window covers gets 0).

Both passes are lamina.kernels.avg_pool and avg_pool_backward: a compiled loop for 2x2
windows with stride 2 and no padding, NumPy slices otherwise. See
docs/layers/avgpool2d.md for the derivation.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from lamina import Example, Layer, LayerConfig, Reference, ShapeError, hookimpl
from lamina.kernels import (
    avg_pool,
    avg_pool_backward,
    conv_output_size,
    pair,
    same_padding,
)

PositiveInt = Annotated[int, Field(strict=True, ge=1)]
Size = PositiveInt | tuple[PositiveInt, PositiveInt]


class AvgPool2DConfig(LayerConfig):
    pool_size: Size = Field(
        default=2, description="window height and width: an int or [ph, pw], each >= 1"
    )
    stride: Size | None = Field(
        default=None,
        description="step between windows: an int or [sh, sw], each >= 1; default pool_size",
    )
    padding: Literal["valid", "same"] = Field(
        default="valid",
        description='"valid" (partial windows dropped) or "same" (output = ceil(input / '
        "stride), TensorFlow's padding); padded entries are left out of each average",
    )


class AvgPool2D(Layer):
    """Average pooling over (ph, pw) windows: (N, C, H, W) -> (N, C, H', W')."""

    name: ClassVar[str] = "avgpool2d"
    Config: ClassVar[type[LayerConfig]] = AvgPool2DConfig
    # No declarations: an average is not a selection (not max_selecting), and each
    # sample is pooled alone, deterministically.

    def __init__(self, config=None, /, **kwargs):
        super().__init__(config, **kwargs)
        self.pool = pair(self.config.pool_size)
        self.stride = pair(self.config.stride if self.config.stride is not None else self.pool)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(
                "avgpool2d expects (channels, height, width) per sample; "
                f"received {input_shape} ({len(input_shape)}-D). Fix: pool images (e.g. the "
                "output of a conv2d), before any flatten"
            )
        c, h, w = input_shape
        (ph, pw), (sh, sw) = self.pool, self.stride
        if self.config.padding == "valid" and (ph > h or pw > w):
            raise ShapeError(
                f"avgpool2d pool_size ({ph}, {pw}) is larger than its input ({h}, {w}); "
                "expected a pool that fits inside the input with padding = \"valid\". Fix: "
                'use a smaller pool_size, padding = "same", or fewer pooling layers before '
                "this one"
            )
        (top, bottom), (left, right) = self._padding(h, w)
        return (c, conv_output_size(h, ph, sh, top, bottom),
                conv_output_size(w, pw, sw, left, right))

    @property
    def padding(self):
        """((top, bottom), (left, right)) padded rows and columns for the built input."""
        return self._padding(*self.input_shape[1:])

    def _padding(self, h: int, w: int):
        if self.config.padding == "valid":
            return ((0, 0), (0, 0))
        return (same_padding(h, self.pool[0], self.stride[0]),
                same_padding(w, self.pool[1], self.stride[1]))

    def forward(self, x, *, training):
        self.cache = x.shape
        return avg_pool(x, self.pool, self.stride, self.padding)

    def backward(self, dy, *, input_grad=True):
        x_shape = self.cached()
        if not input_grad:
            return None  # no parameters: nothing else to compute
        return avg_pool_backward(dy, x_shape, self.pool, self.stride, self.padding)

    def export_onnx(self, graph, inputs, name):
        """ONNX AveragePool with explicit pads (top, left, bottom, right) and
        count_include_pad = 0: the padding is left out of each average, as here."""
        (top, bottom), (left, right) = self.padding
        return graph.add("AveragePool", inputs, name, kernel_shape=list(self.pool),
                         strides=list(self.stride), pads=[top, left, bottom, right],
                         count_include_pad=0)

    @classmethod
    def examples(cls):
        return [
            # docs/layers/avgpool2d.md, "Hand-worked examples": "same" on 3x3 pads one row
            # and one column after the image; y = [12/4, 9/2; 15/2, 9/1]; each window's
            # dy / count goes to each entry it covers: 4/4, 6/2, 2/2, 5/1
            Example(config={"padding": "same"}, input_shape=(1, 3, 3), id="2x2-same-odd",
                    reference=Reference(
                        x=[[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]],
                        y=[[[[3, 4.5], [7.5, 9]]]],
                        dy=[[[[4, 6], [2, 5]]]],
                        dx=[[[[1, 1, 3], [1, 1, 3], [1, 1, 5]]]])),
            # "valid" on 4x5 drops column 4; y = [12/4, 28/4; 0/4, 20/4]; dx = dy / 4
            Example(config={}, input_shape=(1, 4, 5), id="2x2-valid-odd",
                    reference=Reference(
                        x=[[[[1, 3, 5, 7, 100], [3, 5, 7, 9, 100],
                             [0, 2, 4, 6, 100], [-2, 0, 2, 8, 100]]]],
                        y=[[[[3, 7], [0, 5]]]],
                        dy=[[[[4, 8], [-4, 2]]]],
                        dx=[[[[1, 1, 2, 2, 0], [1, 1, 2, 2, 0],
                              [-1, -1, 0.5, 0.5, 0], [-1, -1, 0.5, 0.5, 0]]]])),
            Example(config={"pool_size": 2}, input_shape=(3, 6, 6), id="2x2"),
            Example(config={"pool_size": 3, "stride": 1, "padding": "same"},
                    input_shape=(2, 5, 6), id="3x3-s1-same"),
            Example(config={"pool_size": 3, "stride": 2}, input_shape=(2, 7, 6),
                    id="3x3-s2-overlap"),
            Example(config={"pool_size": [2, 3], "stride": [1, 2], "padding": "same"},
                    input_shape=(1, 4, 7), id="2x3-s12-same"),
            Example(config={"pool_size": 2, "stride": 3, "padding": "same"},
                    input_shape=(2, 7, 8), id="2x2-s3-same-gaps"),
            Example(config={"pool_size": 4, "stride": 1, "padding": "same"},
                    input_shape=(1, 3, 2), id="4x4-same-larger-than-input"),
        ]


@hookimpl
def lamina_register_layers():
    return [AvgPool2D]
