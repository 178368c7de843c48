"""conv2d: 2-D cross-correlation of channels-first images with a bank of filters.

Shapes (per batch): x (N, C, H, W), W (F, C/G, kh, kw), b (F,), y (N, F, H', W') for G groups
with ``H' = (H + pt + pb - kh) // sh + 1`` and ``W' = (W + pl + pr - kw) // sw + 1``
for a stride (sh, sw) and zero padding (pt, pb, pl, pr).

Forward (cross-correlation, as in Keras and PyTorch; the kernel is not flipped),
with xp the zero-padded input:

    y[n, f, p, q] = b[f] + sum_{c, i, j} W[f, c, i, j] * xp[n, c, p*sh + i, q*sw + j]

With the receptive fields copied into a patch matrix (im2col) the sum is a matrix
product, and backward is two more and the adjoint copy (col2im):

    y  = W2 @ patches + b      (F, N*H'*W')    W2 = W.reshape(F, C*kh*kw)
    dW = dY @ patches.T        (F, C*kh*kw)    the correlation of dy with x
    db = dY.sum(axis=1)        (F,)
    dx = col2im(W2.T @ dY)     (N, C, H, W)    the full convolution of dy with W

with dY = dy as the matrix (F, N*H'*W'). lamina.kernels.conv2d and conv2d_backward
run these with the patch layout that measured fastest for the layer's shapes, and
keep their buffers in a Workspace reused while the batch shape stays the same.
``y`` and ``dx`` are new arrays on every call, so a caller may keep them as long as it
likes; ``backward`` differentiates the most recent ``forward``. Called with
``input_grad=False`` (this layer reads the network input) backward fills dW and db
and returns None.

Padding: ``"valid"`` is none; an int p pads p zeros on every side; ``"same"`` pads
so that H' = ceil(H / sh) (for stride 1, H' = H), splitting an odd total with the
extra zero at the bottom and right, as TensorFlow does.

Groups (G = ``groups``, default 1, the sums above): the C channels and the F filters are
cut into G groups in order, and filter f sums over the Cg = C/G channels of its group
g = f // (F/G) only, as in PyTorch and ONNX:

    y[n, f, p, q] = b[f] + sum_{c < Cg, i, j} W[f, c, i, j] * xp[n, g*Cg + c, p*sh + i, q*sw + j]

so each group is a convolution of its own, and dW, db and dx are each group's
gradients side by side. groups = C is a depthwise convolution (each filter sees one
channel). lamina.kernels.grouped_conv2d and grouped_conv2d_backward run them; groups = 1
calls conv2d and conv2d_backward as above.

See docs/layers/conv2d.md for the derivation.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from lamina import (
    Example,
    Layer,
    LayerConfig,
    LayerTraits,
    ParamSpec,
    Reference,
    ShapeError,
    hookimpl,
)
from lamina.initializers import Initializer
from lamina.kernels import (
    POOL_2X2,
    Workspace,
    conv2d,
    conv2d_backward,
    conv2d_max_pool,
    conv2d_max_pool_backward,
    conv_output_size,
    grouped_conv2d,
    grouped_conv2d_backward,
    pair,
    same_padding,
)

PositiveInt = Annotated[int, Field(strict=True, ge=1)]

Size = PositiveInt | tuple[PositiveInt, PositiveInt]


class Conv2DConfig(LayerConfig):
    filters: PositiveInt = Field(description="number of output channels F (>= 1)")
    kernel_size: Size = Field(description="kernel height and width: an int or [kh, kw], each >= 1")
    stride: Size = Field(default=1, description="step between windows: an int or [sh, sw], >= 1")
    padding: Literal["valid", "same"] | Annotated[int, Field(strict=True, ge=0)] = Field(
        default="valid",
        description='"valid" (none), "same" (output = ceil(input / stride)) '
        "or the number of zeros per side (>= 0)",
    )
    groups: PositiveInt = Field(
        default=1,
        description="split the input channels and the filters into this many groups, each "
        "filter seeing only its group's channels (>= 1, dividing both; channels = depthwise)",
    )
    use_bias: bool = Field(default=True, description="add a learned bias per filter")
    initializer: Initializer = Field(
        default="glorot_uniform", description="weight initializer (lamina.initializers)"
    )


def _common_divisors(a: int, b: int) -> str:
    gcd = math.gcd(a, b)
    return ", ".join(str(d) for d in range(1, gcd + 1) if gcd % d == 0)


class Conv2D(Layer):
    """2-D cross-correlation: (N, C, H, W) -> (N, F, H', W'); weights W (F, C/groups, kh, kw)."""

    name: ClassVar[str] = "conv2d"
    Config: ClassVar[type[LayerConfig]] = Conv2DConfig
    # A following 2x2 max pool (stride 2) is computed inside the convolution's last pass:
    # Winograd tiles are the pool's windows (lamina.kernels.fused).
    traits: ClassVar[LayerTraits] = LayerTraits(fuses_max_pool=True)

    def __init__(self, config=None, /, **kwargs):
        super().__init__(config, **kwargs)
        self.kernel = pair(self.config.kernel_size)
        self.stride = pair(self.config.stride)
        self._work = Workspace()
        groups = self.config.groups
        self._group_work = tuple(Workspace() for _ in range(groups)) if groups > 1 else ()

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(
                "conv2d expects (channels, height, width) per sample; "
                f"received {input_shape} ({len(input_shape)}-D). Fix: feed it images, e.g. "
                "an input of shape (1, 28, 28), not the output of flatten or dense"
            )
        c, h, w = input_shape
        groups, filters = self.config.groups, self.config.filters
        if c % groups or filters % groups:
            raise ShapeError(
                f"conv2d groups = {groups} must divide both its input channels and its filters; "
                f"received {c} input channels and {filters} filters. Fix: choose groups among "
                f"the common divisors of {c} and {filters} ({_common_divisors(c, filters)}), "
                "or change filters"
            )
        (kh, kw), (sh, sw) = self.kernel, self.stride
        (top, bottom), (left, right) = self._padding(h, w)
        if kh > h + top + bottom or kw > w + left + right:
            raise ShapeError(
                f"conv2d kernel_size ({kh}, {kw}) is larger than its input ({h}, {w}) "
                f"padded to ({h + top + bottom}, {w + left + right}); expected a kernel that "
                "fits inside the padded input. Fix: use a smaller kernel_size, padding = "
                '"same", or fewer pooling layers before this one'
            )
        return (self.config.filters, conv_output_size(h, kh, sh, top, bottom),
                conv_output_size(w, kw, sw, left, right))

    def param_specs(self, input_shape):
        f, c, (kh, kw) = self.config.filters, input_shape[0], self.kernel
        cg = c // self.config.groups  # the channels each filter sees
        specs = {"W": ParamSpec((f, cg, kh, kw), init=self.config.initializer)}
        if self.config.use_bias:
            specs["b"] = ParamSpec((f,), init="zeros")
        return specs

    @property
    def padding(self):
        """((top, bottom), (left, right)) zeros for the input this layer was built for."""
        return self._padding(*self.input_shape[1:])

    def _padding(self, h: int, w: int):
        padding = self.config.padding
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            return (same_padding(h, self.kernel[0], self.stride[0]),
                    same_padding(w, self.kernel[1], self.stride[1]))
        return ((padding, padding), (padding, padding))

    def forward(self, x, *, training):
        if self.config.groups > 1:
            y, self.cache = grouped_conv2d(x, self._params["W"], self._params.get("b"),
                                           self.config.groups, self.stride, self.padding,
                                           self._group_work, training=training)
            return y
        y, self.cache = conv2d(x, self._params["W"], self._params.get("b"), self.stride,
                               self.padding, self._work, training=training)
        return y

    def backward(self, dy, *, input_grad=True):
        if self.config.groups > 1:
            return grouped_conv2d_backward(dy, self.cached(), self._params["W"],
                                           self._grads["W"], self._grads.get("b"),
                                           self.config.groups, self.stride, self.padding,
                                           self._group_work, input_grad=input_grad)
        return conv2d_backward(dy, self.cached(), self._params["W"], self._grads["W"],
                               self._grads.get("b"), self.stride, self.padding, self._work,
                               input_grad=input_grad)

    def fusable_max_pool(self, window):
        """2x2 windows with stride 2, ungrouped."""
        return tuple(window) == POOL_2X2 and self.config.groups == 1

    def forward_max_pool(self, x, window, *, training):
        if not self.fusable_max_pool(window):
            raise ValueError(f"conv2d ends only in a 2x2 max pool with stride 2 and groups = 1; "
                             f"received the window {window} with groups = {self.config.groups}")
        y, self.cache = conv2d_max_pool(x, self._params["W"], self._params.get("b"),
                                        self.stride, self.padding, self._work)
        return y

    def backward_max_pool(self, dy, *, input_grad=True):
        return conv2d_max_pool_backward(dy, self.cached(), self._params["W"], self._grads["W"],
                                        self._grads.get("b"), self.stride, self.padding,
                                        self._work, input_grad=input_grad)

    def export_onnx(self, graph, inputs, name):
        """ONNX Conv: the same cross-correlation (pads are top, left, bottom, right) with the
        same weight layout for groups (ONNX's ``group``, left at its default 1 when 1)."""
        (top, bottom), (left, right) = self.padding
        args = [*inputs, graph.constant(self._params["W"], f"{name}.W")]
        if self.config.use_bias:
            args.append(graph.constant(self._params["b"], f"{name}.b"))
        groups = {"group": self.config.groups} if self.config.groups > 1 else {}
        return graph.add("Conv", args, name, kernel_shape=list(self.kernel),
                         strides=list(self.stride), pads=[top, left, bottom, right], **groups)

    @classmethod
    def examples(cls):
        return [
            Example(config={"filters": 2, "kernel_size": 3}, input_shape=(2, 5, 5), id="3x3"),
            # docs/layers/conv2d.md, "Hand-worked example"
            Example(config={"filters": 1, "kernel_size": 2}, input_shape=(1, 3, 3), id="hand",
                    reference=Reference(
                        x=[[[[1, 2, 0], [0, 1, 3], [2, 1, 0]]]],
                        params={"W": [[[[1, 0], [0, -1]]]], "b": [0.5]},
                        y=[[[[0.5, -0.5], [-0.5, 1.5]]]],
                        dy=[[[[1, 2], [3, 4]]]],
                        dx=[[[[1, 2, 0], [3, 3, -2], [0, -3, -4]]]],
                        grads={"W": [[[[9, 17], [12, 10]]]], "b": [10]})),
            Example(
                config={"filters": 3, "kernel_size": [3, 2], "stride": 2, "padding": "same"},
                input_shape=(2, 7, 6),
                id="stride2-same",
            ),
            Example(
                config={"filters": 2, "kernel_size": 2, "padding": 1, "use_bias": False},
                input_shape=(1, 4, 5),
                id="pad1-nobias",
            ),
            Example(
                config={"filters": 2, "kernel_size": 3, "stride": [2, 1], "padding": "same"},
                input_shape=(3, 6, 5),
                id="stride21-same",
            ),
            # more than SAMPLE_COLUMNS_MAX_K patch rows: the pixel-rows layout
            Example(config={"filters": 3, "kernel_size": 3}, input_shape=(4, 5, 6), id="4ch-3x3"),
            Example(
                config={"filters": 2, "kernel_size": [3, 2], "stride": [1, 2], "padding": 1},
                input_shape=(6, 5, 7),
                id="6ch-pad1-stride12",
            ),
            # Winograd F(2x2, 3x3) (3x3, stride 1, more than SAMPLE_COLUMNS_MAX_K patch rows):
            # one 2x2 tile, values from the direct sum in float64 (docs/layers/conv2d.md)
            Example(config={"filters": 1, "kernel_size": 3}, input_shape=(4, 4, 4),
                    id="winograd-tile", reference=Reference(
                        x=[[[[-1, -1, 1, 0], [1, 0, -2, 0], [0, 0, 0, 0], [0, 2, -1, -2]],
                            [[1, 1, 0, 2], [-1, 1, 1, 0], [1, 2, -1, -2], [1, 2, -2, 1]],
                            [[1, -2, 1, -1], [-2, -1, 0, -2], [-1, 1, -2, 0], [2, 1, 2, -1]],
                            [[2, -2, 0, 1], [2, 1, 1, -2], [0, 0, 1, 0], [1, 2, 0, 0]]]],
                        params={"W": [[[[0, -1, -1], [1, 0, -1], [0, 1, 1]],
                                       [[-1, -1, -1], [-1, -1, 0], [1, 1, -1]],
                                       [[1, -1, 0], [-1, 1, 1], [1, 0, 1]],
                                       [[-1, 1, 1], [1, 1, 0], [-1, -1, -1]]]],
                                "b": [0.5]},
                        y=[[[[4.5, -1.5], [4.5, -11.5]]]],
                        dy=[[[[1, -1], [2, 0.5]]]],
                        dx=[[[[0, -1, 0, 1], [1, -3, -3.5, 0.5], [2, 1.5, -2, -1.5],
                              [0, 2, 2.5, 0.5]],
                             [[-1, 0, 0, 1], [-3, -2.5, -1.5, -0.5], [-1, -2.5, -2.5, 1],
                              [2, 2.5, -1.5, -0.5]],
                             [[1, -2, 1, 0], [1, 0.5, -0.5, -1], [-1, 0.5, 3.5, -0.5],
                              [2, 0.5, 2, 0.5]],
                             [[-1, 2, 0, -1], [-1, 1.5, 1.5, 0.5], [1, 2.5, 0.5, 1],
                              [-2, -2.5, -2.5, -0.5]]]],
                        grads={"W": [[[[2, -3, -3], [1, 2, -2], [1, 3.5, -3]],
                                      [[-1.5, 3.5, 0], [1, 3.5, -2], [2, 6, -2.5]],
                                      [[-1.5, -5, 1], [-2.5, 0, -2], [2.5, 6, 1.5]],
                                      [[8.5, 0.5, 0], [1, 0.5, 5], [3, 3, 1]]]],
                               "b": [2.5]})),
            # Winograd forward and input gradient ("same" padding), partial last tiles
            Example(config={"filters": 4, "kernel_size": 3, "padding": "same"},
                    input_shape=(4, 7, 5), id="winograd-same"),
            # the fused pool's loop for 3x3 kernels on one channel (the reference network's
            # first layer)
            Example(config={"filters": 3, "kernel_size": 3}, input_shape=(1, 7, 6),
                    id="gray-3x3"),
            # Winograd in each group of four channels (eval mode)
            Example(config={"filters": 4, "kernel_size": 3, "padding": "same", "groups": 2},
                    input_shape=(8, 5, 5), id="groups2-winograd"),
            # docs/layers/conv2d.md, "Groups": each filter sees one channel
            Example(config={"filters": 2, "kernel_size": 2, "groups": 2}, input_shape=(2, 3, 3),
                    id="depthwise-hand",
                    reference=Reference(
                        x=[[[[1, 2, 0], [0, 1, 3], [2, 1, 0]],
                            [[0, 1, 1], [2, 0, 1], [1, 1, 2]]]],
                        params={"W": [[[[1, 0], [0, -1]]], [[[0, 2], [1, 0]]]], "b": [0.5, -1]},
                        y=[[[[0.5, -0.5], [-0.5, 1.5]], [[3, 1], [0, 2]]]],
                        dy=[[[[1, 2], [3, 4]], [[1, 0], [-1, 2]]]],
                        dx=[[[[1, 2, 0], [3, 3, -2], [0, -3, -4]],
                             [[0, 2, 0], [1, -2, 4], [-1, 2, 0]]]],
                        grads={"W": [[[[9, 17], [12, 10]]], [[[-2, 3], [3, 3]]]],
                               "b": [10, 2]})),
            # two filters per channel, strided and padded
            Example(
                config={"filters": 6, "kernel_size": 3, "stride": 2, "padding": "same",
                        "groups": 3},
                input_shape=(3, 6, 5),
                id="depthwise-x2-stride2-same",
            ),
            # two channels per group: sample columns per group (K = 2*3*3 = 18)
            Example(config={"filters": 4, "kernel_size": 3, "padding": 1, "groups": 2},
                    input_shape=(4, 5, 4), id="groups2"),
            # four channels per group: pixel rows per group (K = 36), no bias
            Example(
                config={"filters": 3, "kernel_size": [3, 3], "stride": [2, 1], "groups": 3,
                        "use_bias": False},
                input_shape=(12, 5, 5),
                id="groups3-pixel-rows",
            ),
        ]


@hookimpl
def lamina_register_layers():
    return [Conv2D]
