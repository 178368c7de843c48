"""conv2d ending in a 2x2 max pool with stride 2, computed as one pass (a fused chain).

    y[n, f, p, q] = max_{u, v in {0, 1}} conv[n, f, 2p + u, 2q + v]       (floor)

with conv the convolution of :mod:`lamina.kernels.conv` and the winner of each window
chosen as :func:`lamina.kernels.max_pool` chooses it (the first maximum in row-major
order; a NaN wins). The convolution's own output is never written:

- 3x3 stride-1 layers that run Winograd compute only the tiles the pool keeps and pool
  each tile in the output transform (:func:`lamina.kernels.winograd.winograd_conv2d`);
- stride-1 layers on few channels (at most SAMPLE_COLUMNS_MAX_K patch rows, the first
  layer of an image network) run one direct loop, the filters innermost, summing a
  window's four positions side by side (``direct_conv_pool``; 3x3 kernels on one channel
  have a loop of their own with the taps written out, ``conv3x3_pool_single_channel``);
- every other geometry runs the convolution, then the pool (same results, no saving).

The backward routes the pooled gradient to the winners and runs conv2d's backward, which
builds the patch matrix it needs from the input (:class:`lamina.kernels.conv.Deferred`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamina.kernels.conv import (
    SAMPLE_COLUMNS_MAX_K,
    Deferred,
    PixelRows,
    SampleColumns,
    conv2d,
    conv2d_backward,
    output_size,
    winograd_applies,
)
from lamina.kernels.geometry import Padding, Pair
from lamina.kernels.jit import run
from lamina.kernels.pool import max_pool, max_pool_backward, winner_dtype
from lamina.kernels.winograd import winograd_conv2d
from lamina.kernels.workspace import Workspace

#: the pool a convolution can end in: 2x2 windows with stride 2
POOL_2X2: tuple[Pair, Pair] = ((2, 2), (2, 2))


class PooledConv(NamedTuple):
    """What :func:`conv2d_max_pool_backward` needs from :func:`conv2d_max_pool`."""

    conv_shape: tuple[int, int, int, int]
    """(N, F, H', W') of the convolution before the pool."""
    winner: np.ndarray
    """(N, F, H'//2, W'//2) each window's winner, as :class:`Pooled`."""
    conv: SampleColumns | PixelRows | Deferred


def conv2d_max_pool(x: np.ndarray, W: np.ndarray, b: np.ndarray | None, stride: Pair,
                    padding: Padding, work: Workspace) -> tuple[np.ndarray, PooledConv]:
    """The 2x2 max pool (stride 2) of conv2d(x, W, b, stride, padding): a new array, and the
    cache :func:`conv2d_max_pool_backward` reads."""
    n, f = x.shape[0], W.shape[0]
    h_out, w_out = output_size(x.shape, W.shape[2:], stride, padding)
    conv_shape = (n, f, h_out, w_out)
    if winograd_applies(W.shape, stride, padding):
        y, winner = winograd_conv2d(x, W, b, padding, work, pool=True)
        return y, PooledConv(conv_shape, winner, Deferred(x, b is not None))
    c, kh, kw = W.shape[1:]
    if c * kh * kw <= SAMPLE_COLUMNS_MAX_K and stride == (1, 1):
        return _direct(x, W, b, padding, work, conv_shape)
    conv, cache = conv2d(x, W, b, stride, padding, work)
    y, winner = max_pool(conv, *POOL_2X2)
    return y, PooledConv(conv_shape, winner, cache)


def _direct(x, W, b, padding, work, conv_shape) -> tuple[np.ndarray, PooledConv]:
    n, f, h_out, w_out = conv_shape
    (top, bottom), (left, right) = padding
    image = x if padding == ((0, 0), (0, 0)) else np.pad(
        x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    image = np.ascontiguousarray(image)
    dtype, pooled = x.dtype, (n, h_out // 2, w_out // 2, f)
    y_last = work.get("pool_y_last", pooled, dtype)
    k_last = work.get("pool_k_last", pooled, winner_dtype((2, 2)))
    bias = np.zeros(f, dtype) if b is None else b
    if W.shape[1:] == (1, 3, 3):
        run("conv3x3_pool_single_channel", image, np.ascontiguousarray(W.reshape(f, 9).T), bias,
            y_last, k_last)
    else:
        run("direct_conv_pool", image, np.ascontiguousarray(W.transpose(1, 2, 3, 0)), bias,
            work.get("pool_acc", (4, f), dtype), y_last, k_last)
    y = np.empty((n, f, h_out // 2, w_out // 2), dtype=dtype)
    winner = np.empty(y.shape, dtype=k_last.dtype)
    run("channels_first", y_last.reshape(n, -1, f), np.zeros(f, dtype), y.reshape(n, f, -1))
    run("channels_first", k_last.reshape(n, -1, f), np.zeros(f, k_last.dtype),
        winner.reshape(n, f, -1))
    return y, PooledConv(conv_shape, winner, Deferred(x, b is not None))


def conv2d_max_pool_backward(dy: np.ndarray, cache: PooledConv, W: np.ndarray, dW: np.ndarray,
                             db: np.ndarray | None, stride: Pair, padding: Padding,
                             work: Workspace, *, input_grad: bool = True) -> np.ndarray | None:
    """dy (N, F, H'//2, W'//2) of the pooled output -> dx as conv2d_backward returns it (dW
    and db filled in place): each window's gradient to its winner, then the convolution's
    backward."""
    d_conv = max_pool_backward(dy, cache.winner, cache.conv_shape, *POOL_2X2)
    return conv2d_backward(d_conv, cache.conv, W, dW, db, stride, padding, work,
                           input_grad=input_grad)

