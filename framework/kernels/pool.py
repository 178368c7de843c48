"""Max pooling: each window's maximum and the offset it came from, and the gradient's way back.

For x (N, C, H, W), windows (ph, pw) and stride (sh, sw):

    y[n, c, p, q]      = max_{i < ph, j < pw} x[n, c, p*sh + i, q*sw + j]
    winner[n, c, p, q] = i*pw + j of the first maximum in row-major order (i, then j)

    dx[n, c, p*sh + i, q*sw + j] = sum of dy[n, c, p, q] over the windows (p, q) whose
                                   winner is (i, j)          (0 for an input no window chose)

Ties go to the first maximal offset, so the gradient is a valid subgradient and does
not depend on memory layout; a NaN in a window makes its output NaN (as NumPy's
maximum does), so a broken activation is not hidden by the pool. Windows that tile
the input 2x2 with stride 2 (the reference network's pools) run a branch-free loop
over the four values; every other geometry runs the loops of the formula.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamina.kernels.geometry import Pair, conv_output_size
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
