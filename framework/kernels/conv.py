"""conv2d's kernels: the receptive fields laid out as a matrix, the products, and back.

For x (N, C, H, W), weights W (F, C, kh, kw), bias b (F,), stride (sh, sw) and zero
padding ((top, bottom), (left, right)):

    y[n, f, p, q] = b[f] + sum_{c, i, j} W[f, c, i, j] * x[n, c, p*sh + i - top, q*sw + j - left]

(an input index outside the image reads 0). Copying every receptive field into a patch
matrix ("im2col") turns the sum into a matrix product with the weights, and the
backward into two more:

    y  = patches @ W2 + b      dW = dy @ patches      dpatches = dy @ W2      db = sum dy

where dx is the adjoint of the copy ("col2im"): each patch entry's gradient added
back onto the input it was read from. (docs/layers/conv2d.md derives each line.)

The patch matrix has one of two layouts, chosen by its row length K = C*kh*kw, because
the products' speed depends on their shapes (measured in docs/performance.md):

- **Sample columns** (K <= SAMPLE_COLUMNS_MAX_K, a first layer on a few channels):
  per sample the matrix (K, H'*W'), rows (c, i, j) like W reshaped to (F, K), so N
  products ``W2 @ cols[n]`` write y straight in its (N, F, H', W') order and dy is read
  as it comes. Below the K rows sits a row of ones and beside W2 the column b, so the
  product adds the bias and the dW products yield db (y is written once).
- **Pixel rows** (larger K): one row per output pixel, (N*H'*W', kh*kw*C) in
  channels-last order. The three products are then single large GEMMs in the
  orientation OpenBLAS runs fastest, and the patch copies move runs of C contiguous
  channels; y, dy and dx are reordered between channels-first and channels-last once
  each (compiled loops, :mod:`lamina.kernels._loops`).

Both layouts give the same sums up to float rounding (tests/plugins/test_conv2d.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamina.kernels.geometry import Padding, Pair, conv_output_size, taps
from lamina.kernels.jit import run
from lamina.kernels.winograd import lies_channels_last, winograd_conv2d, winograd_input_grad
from lamina.kernels.workspace import Workspace

#: Up to this many patch rows (C*kh*kw) conv2d uses sample columns, above it pixel rows.
SAMPLE_COLUMNS_MAX_K = 32


class SampleColumns(NamedTuple):
    """What :func:`conv2d_backward` needs from a sample-columns forward."""

    x_shape: tuple[int, int, int, int]
    cols: np.ndarray
    """(N, K [+ 1 with a bias: the row of ones], H'*W'), a workspace buffer."""


class PixelRows(NamedTuple):
    """What :func:`conv2d_backward` needs from a pixel-rows forward."""

    x_shape: tuple[int, int, int, int]
    rows: np.ndarray
    """(N*H'*W', kh*kw*C) one channels-last patch per output pixel, a workspace buffer."""
    channels_last: bool = False
    """x lay channels-last in memory (a fused conv2d's output): dx is returned so too."""


def output_size(x_shape, kernel: Pair, stride: Pair, padding: Padding) -> tuple[int, int]:
    """(H', W') for an input of ``x_shape`` (N, C, H, W)."""
    (kh, kw), (sh, sw), ((top, bottom), (left, right)) = kernel, stride, padding
    return (conv_output_size(x_shape[2], kh, sh, top, bottom),
            conv_output_size(x_shape[3], kw, sw, left, right))


def sample_patches(x: np.ndarray, kernel: Pair, stride: Pair, padding: Padding,
                   out: np.ndarray) -> np.ndarray:
    """out[n, c, i, j, p, q] = x[n, c, p*sh + i - top, q*sw + j - left] (0 in the padding).

    ``out`` (N, C, kh, kw, H', W') is overwritten entirely, one strided block copy per
    kernel offset (i, j); only the offsets that reach into the padding clear a border.
    """
    h_out, w_out = out.shape[4:]
    for i, j, window, bounds, src_rows, src_cols in taps(x.shape, kernel, stride, padding):
        block = out[:, :, i, j]  # (N, C, H', W'): the inputs at offset (i, j)
        if window is None:  # this offset reads padding only
            block[...] = 0
            continue
        block[(..., *window)] = x[:, :, src_rows, src_cols]
        r0, r1, c0, c1 = bounds
        if r0 > 0:
            block[:, :, :r0] = 0
        if r1 < h_out:
            block[:, :, r1:] = 0
        if c0 > 0:
            block[:, :, r0:r1, :c0] = 0
        if c1 < w_out:
            block[:, :, r0:r1, c1:] = 0
    return out


def winograd_applies(weights_shape: tuple[int, ...], stride: Pair, padding: Padding) -> bool:
    """Whether conv2d runs Winograd F(2x2, 3x3) (:mod:`lamina.kernels.winograd`) for a layer of
    weights (F, C, kh, kw): 3x3 kernels at stride 1 with at most 2 zeros of padding per side
    (so the input gradient is such a convolution too) and more than SAMPLE_COLUMNS_MAX_K
    patch rows. On fewer channels its transforms cost more than the products they save
    (measured in docs/performance.md)."""
    _, c, kh, kw = weights_shape
    return ((kh, kw) == (3, 3) and stride == (1, 1) and c * kh * kw > SAMPLE_COLUMNS_MAX_K
            and all(0 <= side <= 2 for sides in padding for side in sides))


def winograd_input_grad_applies(weights_shape: tuple[int, ...], stride: Pair,
                                padding: Padding) -> bool:
    """Whether conv2d_backward computes dx by Winograd: dx is a 3x3 convolution of dy (F
    channels) padded by 2 - p, which pays only when the layer pads its input (p >= 1 on
    every side, "same"). For a valid layer dy is padded by 2 all round and the tiles
    reach far past it: on the reference network's conv2d_2 Winograd took 4.6 ms a shard
    against 2.4 for the patch products (docs/performance.md)."""
    f, c, kh, kw = weights_shape
    return (winograd_applies(weights_shape, stride, padding)
            and winograd_applies((c, f, kh, kw), stride, padding)
            and all(side >= 1 for sides in padding for side in sides))


class Deferred(NamedTuple):
    """What :func:`conv2d_backward` needs from a forward that built no patch matrix
    (Winograd, or a convolution that ended in its pool): the input, from which backward
    builds the patches the weight gradient needs."""

    x: np.ndarray
    has_bias: bool


def conv2d(x: np.ndarray, W: np.ndarray, b: np.ndarray | None, stride: Pair, padding: Padding,
           work: Workspace, *, training: bool = False
           ) -> tuple[np.ndarray, SampleColumns | PixelRows | Deferred]:
    """y (N, F, H', W'), a new array, and the cache :func:`conv2d_backward` reads.

    ``training``: a backward will follow, which needs the patch matrix; the product with
    it is then the forward too, rather than Winograd and the same patches built in
    backward (on the reference network's conv2d_2 without its pool: 18.4 against 20.0 ms
    for forward and backward of a 128-sample batch)."""
    if not training and winograd_applies(W.shape, stride, padding):
        return winograd_conv2d(x, W, b, padding, work), Deferred(x, b is not None)
    cache = patch_matrix(x, W.shape, b is not None, stride, padding, work)
    n, f = x.shape[0], W.shape[0]
    h_out, w_out = output_size(x.shape, W.shape[2:], stride, padding)
    y = np.empty((n, f, h_out, w_out), dtype=x.dtype)
    if isinstance(cache, SampleColumns):
        W2 = W.reshape(f, -1)
        if b is not None:  # beside the row of ones in the columns
            W2 = np.concatenate([W2, b[:, None]], axis=1)
        np.matmul(W2, cache.cols, out=y.reshape(n, f, h_out * w_out))
        return y, cache
    y_last = np.matmul(cache.rows, weights_last(W).T,
                       out=work.get("y_last", (cache.rows.shape[0], f), x.dtype))
    bias = np.zeros(f, x.dtype) if b is None else b
    run("channels_first", y_last.reshape(n, h_out * w_out, f), bias, y.reshape(n, f, -1))
    return y, cache


def patch_matrix(x: np.ndarray, weights_shape: tuple[int, ...], bias: bool, stride: Pair,
                 padding: Padding, work: Workspace) -> SampleColumns | PixelRows:
    """x's receptive fields as the patch matrix of the layout this layer uses (a workspace
    buffer): sample columns (with the row of ones when there is a ``bias``) or pixel rows."""
    n, c, _, _ = x.shape
    _, _, kh, kw = weights_shape
    h_out, w_out = output_size(x.shape, (kh, kw), stride, padding)
    k, pixels, dtype = c * kh * kw, h_out * w_out, x.dtype
    if k <= SAMPLE_COLUMNS_MAX_K:
        cols = work.get("cols", (n, k + bias, pixels), dtype)
        sample_patches(x, (kh, kw), stride, padding,
                       cols[:, :k].reshape(n, c, kh, kw, h_out, w_out))
        if bias:
            cols[:, k] = 1
        return SampleColumns(x.shape, cols)
    patches = work.get("patches", (n, h_out, w_out, kh, kw, c), dtype)
    (sh, sw), ((top, _), (left, _)) = stride, padding
    run("pixel_patches", x, kh, kw, sh, sw, top, left, patches)  # any layout
    return PixelRows(x.shape, patches.reshape(n * pixels, k), lies_channels_last(x))


def conv2d_backward(dy: np.ndarray, cache: SampleColumns | PixelRows | Deferred, W: np.ndarray,
                    dW: np.ndarray, db: np.ndarray | None, stride: Pair, padding: Padding,
                    work: Workspace, *, input_grad: bool = True) -> np.ndarray | None:
    """Fill dW (and db, unless None) in place; return dx (N, C, H, W), a new array, or
    None without ``input_grad``."""
    n, f, h_out, w_out = dy.shape
    _, c, kh, kw = W.shape
    k, pixels, dtype = c * kh * kw, h_out * w_out, dy.dtype
    dy = np.ascontiguousarray(dy)
    if isinstance(cache, Deferred):
        cache = patch_matrix(cache.x, W.shape, cache.has_bias, stride, padding, work)
    if isinstance(cache, SampleColumns):
        cols = cache.cols
        dY = dy.reshape(n, f, pixels)
        # dW = sum_n dY[n] @ cols[n].T; with the row of ones the last column is db.
        dW_n = np.matmul(dY, cols.transpose(0, 2, 1),
                         out=work.get("dW_n", (n, f, cols.shape[1]), dtype))
        dWb = np.sum(dW_n, axis=0, out=work.get("dWb", (f, cols.shape[1]), dtype))
        dW.reshape(f, k)[...] = dWb[:, :k]
        if db is not None:
            db[...] = dWb[:, k]
        if not input_grad:
            return None
        dcols = np.matmul(W.reshape(f, k).T, dY, out=work.get("dcols", (n, k, pixels), dtype))
        dx = np.empty(cache.x_shape, dtype=dtype)
        (sh, sw), ((top, _), (left, _)) = stride, padding
        return run("add_sample_columns", dcols.reshape(n, c, kh, kw, h_out, w_out),
                   sh, sw, top, left, dx)
    rows = cache.rows
    dy_last = work.get("dy_last", (n * pixels, f), dtype)
    run("channels_last", dy.reshape(n, f, pixels), dy_last.reshape(n, pixels, f))
    dW_last = np.matmul(dy_last.T, rows, out=work.get("dW_last", (f, k), dtype))
    dW[...] = dW_last.reshape(f, kh, kw, c).transpose(0, 3, 1, 2)
    if db is not None:  # per sample and filter first: NumPy's pairwise sums on long rows
        np.sum(np.sum(dy.reshape(n, f, pixels), axis=2), axis=0, out=db)
    if not input_grad:
        return None
    if winograd_input_grad_applies(W.shape, stride, padding):
        return winograd_input_grad(dy, W, padding, work)
    dpatches = np.matmul(dy_last, weights_last(W), out=work.get("dpatches", rows.shape, dtype))
    return add_pixel_rows(dpatches.reshape(n, h_out, w_out, kh, kw, c), cache.x_shape,
                          cache.channels_last, stride, padding, work)


def add_pixel_rows(dpatches: np.ndarray, x_shape: tuple[int, int, int, int],
                   channels_last: bool, stride: Pair, padding: Padding,
                   work: Workspace) -> np.ndarray:
    """dx (N, C, H, W), a new array: the adjoint copy of pixel rows, each patch gradient of
    ``dpatches`` (N, H', W', kh, kw, C) added back onto the input entries it was read from;
    laid out channels-last (a transposed view) when ``channels_last``, as x was."""
    n, c, dtype = x_shape[0], x_shape[1], dpatches.dtype
    dxh = np.empty((n, *x_shape[2:], c), dtype) if channels_last else work.get(
        "dx_last", (n, *x_shape[2:], c), dtype)
    (sh, sw), ((top, _), (left, _)) = stride, padding
    run("add_pixel_patches", dpatches, sh, sw, top, left, dxh)
    if channels_last:
        return dxh.transpose(0, 3, 1, 2)
    dx = np.empty(x_shape, dtype=dtype)
    run("channels_first", dxh.reshape(n, -1, c), np.zeros(c, dtype), dx.reshape(n, c, -1))
    return dx


def weights_last(W: np.ndarray) -> np.ndarray:
    """W (F, C, kh, kw) as the matrix (F, kh*kw*C) whose columns match pixel rows."""
    f = W.shape[0]
    return np.ascontiguousarray(W.transpose(0, 2, 3, 1)).reshape(f, -1)
