"""Pooling: each window's maximum (and the offset it came from) or its average, and the
gradient's way back.

Max pooling, for x (N, C, H, W), windows (ph, pw) and stride (sh, sw):

    y[n, c, p, q]      = max_{i < ph, j < pw} x[n, c, p*sh + i, q*sw + j]
    winner[n, c, p, q] = i*pw + j of the first maximum in row-major order (i, then j)

    dx[n, c, p*sh + i, q*sw + j] = sum of dy[n, c, p, q] over the windows (p, q) whose
                                   winner is (i, j)          (0 for an input no window chose)

Ties go to the first maximal offset, so the gradient is a valid subgradient and does
not depend on memory layout; a NaN in a window makes its output NaN (as NumPy's
maximum does), so a broken activation is not hidden by the pool. Windows that tile
the input 2x2 with stride 2 (the reference network's pools) run a branch-free loop
over the four values; every other geometry runs the loops of the formula.

Average pooling, over a zero-padded image whose padding is left out of each average:

    y[n, c, p, q] = sum of x[n, c, p*sh + i - top, q*sw + j - left] over the offsets
                    (i, j) that land inside the image, divided by count[p, q], their number

    dx[n, c, h, w] = sum of dy[n, c, p, q] / count[p, q] over the windows (p, q) covering
                     (h, w)

2x2 windows with stride 2 and no padding run a compiled loop; every other geometry is
NumPy, one strided slice per offset, which measured faster than a compiled loop of the
formula there (docs/layers/avgpool2d.md).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamina.kernels.geometry import Padding, Pair, conv_output_size, taps
from lamina.kernels.jit import run


class Pooled(NamedTuple):
    """The result of :func:`max_pool`."""

    y: np.ndarray
    """(N, C, H', W') the windows' maxima: a new array on every call."""
    winner: np.ndarray
    """(N, C, H', W') offset i*pw + j of each window's first maximum (the smallest
    unsigned integer type that holds ph*pw - 1)."""


def winner_dtype(pool: Pair) -> np.dtype:
    """The unsigned integer type :func:`max_pool` stores window offsets in."""
    return np.min_scalar_type(pool[0] * pool[1] - 1)


def pooled_shape(x_shape, pool: Pair, stride: Pair) -> tuple[int, int, int, int]:
    n, c, h, w = x_shape
    return (n, c, conv_output_size(h, pool[0], stride[0]), conv_output_size(w, pool[1], stride[1]))


def max_pool(x: np.ndarray, pool: Pair, stride: Pair, *,
             winner: np.ndarray | None = None) -> Pooled:
    """The maximum of every (ph, pw) window of ``x`` (N, C, H, W) and where it was.

    ``winner``, if given, is a buffer of the output's shape and :func:`winner_dtype` to
    reuse; it is overwritten.
    """
    shape = pooled_shape(x.shape, pool, stride)
    x = np.ascontiguousarray(x)
    y = np.empty(shape, dtype=x.dtype)
    if winner is None:
        winner = np.empty(shape, dtype=winner_dtype(pool))
    if pool == stride == (2, 2):
        run("max_pool_2x2", x, y, winner)
    else:
        run("max_pool", x, *pool, *stride, y, winner)
    return Pooled(y, winner)


def max_pool_backward(dy: np.ndarray, winner: np.ndarray, x_shape: tuple[int, int, int, int],
                      pool: Pair, stride: Pair) -> np.ndarray:
    """dx (N, C, H, W), a new array: each output's gradient ``dy`` routed to its window's
    winner; inputs chosen by several overlapping windows get the sum."""
    dx = np.empty(x_shape, dtype=dy.dtype)
    dy = np.ascontiguousarray(dy)
    if pool == stride == (2, 2):
        return run("max_pool_2x2_backward", dy, winner, dx)
    return run("max_pool_backward", dy, winner, pool[1], *stride, dx)


NO_PADDING: Padding = ((0, 0), (0, 0))


def window_counts(size: int, kernel: int, stride: int, pad_lo: int, out: int) -> np.ndarray:
    """(out,) the number of entries of each window along one axis that lie inside the image
    (not in the padding): window o covers [o*stride - pad_lo, o*stride - pad_lo + kernel)."""
    start = np.arange(out) * stride - pad_lo
    return np.minimum(start + kernel, size) - np.maximum(start, 0)


def average_divisors(x_shape, pool: Pair, stride: Pair, padding: Padding,
                     dtype) -> np.ndarray:
    """(H', W') count[p, q]: how many entries of the image window (p, q) covers."""
    h, w = x_shape[2], x_shape[3]
    (ph, pw), (sh, sw), ((top, bottom), (left, right)) = pool, stride, padding
    rows = window_counts(h, ph, sh, top, conv_output_size(h, ph, sh, top, bottom))
    cols = window_counts(w, pw, sw, left, conv_output_size(w, pw, sw, left, right))
    return np.multiply.outer(rows, cols).astype(dtype)


def avg_pool(x: np.ndarray, pool: Pair, stride: Pair, padding: Padding = NO_PADDING) -> np.ndarray:
    """y (N, C, H', W'), a new array: the average of the entries of every (ph, pw) window of
    ``x`` (N, C, H, W) padded by ``padding``, the padding left out of each average."""
    (top, bottom), (left, right) = padding
    n, c, h, w = x.shape
    shape = (n, c, conv_output_size(h, pool[0], stride[0], top, bottom),
             conv_output_size(w, pool[1], stride[1], left, right))
    if pool == stride == (2, 2) and padding == NO_PADDING:
        return run("avg_pool_2x2", np.ascontiguousarray(x), np.empty(shape, dtype=x.dtype))
    y = np.zeros(shape, dtype=x.dtype)
    for _, _, rows, _, src_rows, src_cols in taps(x.shape, pool, stride, padding):
        if rows is not None:
            y[:, :, rows[0], rows[1]] += x[:, :, src_rows, src_cols]
    y /= average_divisors(x.shape, pool, stride, padding, x.dtype)
    return y


def avg_pool_backward(dy: np.ndarray, x_shape: tuple[int, int, int, int], pool: Pair,
                      stride: Pair, padding: Padding = NO_PADDING) -> np.ndarray:
    """dx (N, C, H, W), a new array: each output's gradient ``dy`` divided by its window's
    count and added to every entry of the image the window covers."""
    if pool == stride == (2, 2) and padding == NO_PADDING:
        return run("avg_pool_2x2_backward", np.ascontiguousarray(dy),
                   np.empty(x_shape, dtype=dy.dtype))
    g = dy / average_divisors(x_shape, pool, stride, padding, dy.dtype)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for _, _, rows, _, src_rows, src_cols in taps(x_shape, pool, stride, padding):
        if rows is not None:
            dx[:, :, src_rows, src_cols] += g[:, :, rows[0], rows[1]]
    return dx
