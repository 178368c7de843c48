"""conv2d: 2-D cross-correlation of channels-first images with a bank of filters.

Shapes (per batch): x (N, C, H, W), W (F, C, kh, kw), b (F,), y (N, F, H', W')
with ``H' = (H + pt + pb - kh) // sh + 1`` and ``W' = (W + pl + pr - kw) // sw + 1``
for a stride (sh, sw) and zero padding (pt, pb, pl, pr).

Forward (cross-correlation, as in Keras and PyTorch; the kernel is not flipped),
with xp the zero-padded input:

    y[n, f, p, q] = b[f] + sum_{c, i, j} W[f, c, i, j] * xp[n, c, p*sh + i, q*sw + j]

With cols = im2col(x) (C*kh*kw, N*H'*W') and W2 = W.reshape(F, C*kh*kw) this is one
matrix product, ``y = W2 @ cols + b`` (F, N*H'*W'), reordered to (N, F, H', W').

Backward, with dy (N, F, H', W') laid out as the matrix dY (F, N*H'*W'):

    dW = dY @ cols.T        (F, C*kh*kw)   the correlation of dy with x
    db = dY.sum(axis=1)     (F,)
    dx = col2im(W2.T @ dY)  (N, C, H, W)   the full convolution of dy with W

Padding: ``"valid"`` is none; an int p pads p zeros on every side; ``"same"`` pads
so that H' = ceil(H / sh) (for stride 1, H' = H), splitting an odd total with the
extra zero at the bottom and right, as TensorFlow does.

Layout: with few rows of columns (C*kh*kw <= PER_SAMPLE_MAX_K, a first layer) the
columns are kept sample first, (N, C*kh*kw, H'*W'), and y is N batched products
W2 @ cols_n written straight into (N, F, H'*W'); dW then sums N products
dy_n @ cols_n.T. There the bias is a column of W2 against a row of ones in the
columns, so the products add b and the dW sum yields db. Called with
``input_grad=False`` (this layer reads the network input) backward fills dW and db
and returns None.

Buffers: the columns, the (F, N*H'*W') staging matrix and the column gradient
live in a :class:`lamina.ops.Workspace` reused while the batch shape stays the
same. They are never handed out: ``y`` and ``dx`` are new arrays on every call,
so a caller may keep them as long as it likes. ``backward`` differentiates the
most recent ``forward`` (whose columns it reads from the workspace).
See docs/layers/conv2d.md for the derivation.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from lamina import Example, Layer, LayerConfig, ParamSpec, ShapeError, hookimpl
from lamina.initializers import Initializer
from lamina.ops import (
    Workspace,
    col2im,
    cols_shape,
    conv_output_size,
    im2col,
    pair,
    same_padding,
)

PositiveInt = Annotated[int, Field(strict=True, ge=1)]

#: Up to this many rows of columns (C*kh*kw) the per-sample (batched matmul) layout is
#: used; above it one large 2-D GEMM over the whole batch (measured: docs/performance.md).
PER_SAMPLE_MAX_K = 32
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
    use_bias: bool = Field(default=True, description="add a learned bias per filter")
    initializer: Initializer = Field(
        default="glorot_uniform", description="weight initializer (lamina.initializers)"
    )


class Conv2D(Layer):
    """2-D cross-correlation: (N, C, H, W) -> (N, F, H', W'); weights W (F, C, kh, kw)."""

    name: ClassVar[str] = "conv2d"
    Config: ClassVar[type[LayerConfig]] = Conv2DConfig

    def __init__(self, config=None, /, **kwargs):
        super().__init__(config, **kwargs)
        self.kernel = pair(self.config.kernel_size)
        self.stride = pair(self.config.stride)
        self._work = Workspace()

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(
                "conv2d expects (channels, height, width) per sample; "
                f"received {input_shape} ({len(input_shape)}-D). Fix: feed it images, e.g. "
                "an input of shape (1, 28, 28), not the output of flatten or dense"
            )
        _, h, w = input_shape
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
        specs = {"W": ParamSpec((f, c, kh, kw), init=self.config.initializer)}
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
        geometry = (self.kernel, self.stride, self.padding)
        c, kh, kw, n, h_out, w_out = shape = cols_shape(x.shape, *geometry)
        f, k, p = self.config.filters, c * kh * kw, h_out * w_out
        W2 = self._params["W"].reshape(f, k)
        y = np.empty((n, f, h_out, w_out), dtype=self.dtype)
        if k <= PER_SAMPLE_MAX_K:
            # Few rows of columns (a first layer: C*kh*kw = 9): the products are cheap and
            # the output is large, so the columns go sample first (N, C, kh, kw, H', W')
            # and one batched matmul of N products writes y in its final order, saving
            # the (F, N, .) <-> (N, F, .) reorders of y and dy (docs/performance.md).
            # With a bias the columns get a last row of ones and W2 the column b, so the
            # product adds the bias (y is written once, not written and then re-read
            # for a separate add) and backward's dW product also yields db.
            rows = k + 1 if self.config.use_bias else k
            cols = self._work.get("cols_n", (n, rows, p), self.dtype)
            im2col(x, *geometry, out=cols[:, :k].reshape(n, c, kh, kw, h_out, w_out)
                   .transpose(1, 2, 3, 0, 4, 5))
            if self.config.use_bias:
                cols[:, k] = 1
                W2 = np.concatenate([W2, self._params["b"][:, None]], axis=1)
            np.matmul(W2, cols, out=y.reshape(n, f, p))
            self.cache = (x.shape, cols, True)
            return y
        cols = im2col(x, *geometry, out=self._work.get("cols", shape, self.dtype))
        # One GEMM for the whole batch, written to a reused (F, N*H'*W') buffer; the
        # reorder to (N, F, H', W') is fused with the bias add into the fresh output.
        y_fm = np.matmul(W2, cols.reshape(k, n * p),
                         out=self._work.get("fm", (f, n * p), self.dtype))
        y_nf = y_fm.reshape(f, n, h_out, w_out).transpose(1, 0, 2, 3)
        if self.config.use_bias:
            np.add(y_nf, self._params["b"][:, None, None], out=y)
        else:
            np.copyto(y, y_nf)
        self.cache = (x.shape, cols, False)
        return y

    def backward(self, dy, *, input_grad=True):
        x_shape, cols, per_sample = self.cached()
        if per_sample:
            return self._backward_per_sample(dy, x_shape, cols, input_grad)
        c, kh, kw, n, h_out, w_out = cols.shape
        f, k, m = self.config.filters, c * kh * kw, n * h_out * w_out
        # dY (F, N*H'*W') in the column order of cols; reuses the forward's staging buffer.
        dY = self._work.get("fm", (f, m), self.dtype)
        np.copyto(dY.reshape(f, n, h_out * w_out), dy.reshape(n, f, -1).transpose(1, 0, 2))
        np.matmul(dY, cols.reshape(k, m).T, out=self._grads["W"].reshape(f, k))
        if self.config.use_bias:
            np.sum(dY, axis=1, out=self._grads["b"])
        if not input_grad:
            # The runner needs no dx (this layer reads the network input): skip a third
            # of the products and the col2im.
            return None
        W2 = self._params["W"].reshape(f, k)
        dcols = np.matmul(W2.T, dY, out=self._work.get("dcols", (k, m), self.dtype))
        return col2im(dcols.reshape(cols.shape), x_shape, self.kernel, self.stride, self.padding)

    def _backward_per_sample(self, dy, x_shape, cols, input_grad):
        """backward for the sample-first columns (N, C*kh*kw [+ 1], H'*W') of forward."""
        n, rows, p = cols.shape
        f, c, kh, kw = self._params["W"].shape
        k = c * kh * kw
        dY = dy.reshape(n, f, p)
        # dW = sum_n dY_n cols_n^T: N small products, then one sum over the batch. The
        # row of ones (with a bias) makes the last column of each product dY_n's row
        # sums, so the same sum yields db.
        dW_n = np.matmul(dY, cols.transpose(0, 2, 1),
                         out=self._work.get("dW_n", (n, f, rows), self.dtype))
        dWb = np.sum(dW_n, axis=0, out=self._work.get("dWb", (f, rows), self.dtype))
        self._grads["W"].reshape(f, k)[...] = dWb[:, :k]
        if self.config.use_bias:
            self._grads["b"][...] = dWb[:, k]
        if not input_grad:
            return None
        W2 = self._params["W"].reshape(f, k)
        h_out, w_out = dy.shape[2:]
        dcols = np.matmul(W2.T, dY, out=self._work.get("dcols_n", (n, k, p), self.dtype))
        return col2im(dcols.reshape(n, c, kh, kw, h_out, w_out).transpose(1, 2, 3, 0, 4, 5),
                      x_shape, self.kernel, self.stride, self.padding)

    @classmethod
    def examples(cls):
        return [
            Example(config={"filters": 2, "kernel_size": 3}, input_shape=(2, 5, 5), id="3x3"),
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
        ]


@hookimpl
def lamina_register_layers():
    return [Conv2D]
