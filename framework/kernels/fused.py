"""conv2d ending in a 2x2 max pool with stride 2, computed as one pass (a fused chain).

    y[n, f, p, q] = max_{u, v in {0, 1}} conv[n, f, 2p + u, 2q + v]       (floor)

with conv the convolution of :mod:`lamina.kernels.conv` and the winner of each window
chosen as :func:`lamina.kernels.max_pool` chooses it (the first maximum in row-major
order; a NaN wins). On the first two paths the convolution's own output is never
written:

- 3x3 stride-1 layers that run Winograd compute only the tiles the pool keeps and pool
  each tile in the output transform (:func:`lamina.kernels.winograd.winograd_conv2d`);
- stride-1 layers on few channels (at most SAMPLE_COLUMNS_MAX_K patch rows, the first
  layer of an image network) run one direct loop, the filters innermost, summing a
  window's four positions side by side (``direct_conv_pool``; 3x3 kernels on one channel
  have a loop of their own with the taps written out, ``conv3x3_pool_single_channel``);
- every other geometry runs the convolution, then the pool (same results, no saving).

The backward routes the pooled gradient to the winners and runs conv2d's backward, which
builds the patch matrix it needs from the input (:class:`lamina.kernels.conv.Deferred`);
for a stride-1 pixel-rows layer it runs those products over the outputs the pool kept
only, the gradient routed straight into channels-last rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamina.kernels.conv import (
    SAMPLE_COLUMNS_MAX_K,
    Deferred,
    PixelRows,
    SampleColumns,
    add_pixel_rows,
    conv2d,
    conv2d_backward,
    output_size,
    weights_last,
    winograd_applies,
)
from lamina.kernels.geometry import Padding, Pair
from lamina.kernels.jit import run
from lamina.kernels.pool import max_pool, max_pool_backward, winner_dtype
from lamina.kernels.winograd import lies_channels_last, winograd_conv2d, winograd_weight_grad
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
    cache :func:`conv2d_max_pool_backward` reads.

    The Winograd and direct paths compute with the filters innermost and return their
    output as it lies in memory, channels-last, seen through a transposed view: an array
    of shape (N, F, H'/2, W'/2) like any other, indexed the same, whose strides say
    channels-last. Layers that need C order copy it (np.ascontiguousarray), and the
    ones after conv2d in an image network read it as it lies: relu in memory order,
    a following Winograd conv2d channels-last as it wants it, flatten by one reshape
    copy. Transposing to C order here and back in the next layer cost 0.45 ms of a 2.6 ms
    shard (docs/performance.md)."""
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
    y_last, k_last = np.empty(pooled, dtype), np.empty(pooled, winner_dtype((2, 2)))
    bias = np.zeros(f, dtype) if b is None else b
    if W.shape[1:] == (1, 3, 3):
        run("conv3x3_pool_single_channel", image, np.ascontiguousarray(W.reshape(f, 9).T), bias,
            y_last, k_last)
    else:
        run("direct_conv_pool", image, np.ascontiguousarray(W.transpose(1, 2, 3, 0)), bias,
            work.get("pool_acc", (4, f), dtype), y_last, k_last)
    # (N, F, H'/2, W'/2) views of channels-last memory (see conv2d_max_pool)
    y, winner = y_last.transpose(0, 3, 1, 2), k_last.transpose(0, 3, 1, 2)
    return y, PooledConv(conv_shape, winner, Deferred(x, b is not None))


def conv2d_max_pool_backward(dy: np.ndarray, cache: PooledConv, W: np.ndarray, dW: np.ndarray,
                             db: np.ndarray | None, stride: Pair, padding: Padding,
                             work: Workspace, *, input_grad: bool = True) -> np.ndarray | None:
    """dy (N, F, H'//2, W'//2) of the pooled output -> dx as conv2d_backward returns it (dW
    and db filled in place): each window's gradient to its winner, then the convolution's
    backward."""
    f, c, kh, kw = W.shape
    if (isinstance(cache.conv, Deferred) and stride == (1, 1)
            and c * kh * kw > SAMPLE_COLUMNS_MAX_K):  # pixel rows (a first layer: measured
        # 4.8 against 1.5 ms a shard as pixel rows, so it keeps its sample columns)
        return _kept_pixel_rows_backward(dy, cache, W, dW, db, padding, work, input_grad)
    d_conv = max_pool_backward(dy, cache.winner, cache.conv_shape, *POOL_2X2)
    return conv2d_backward(d_conv, cache.conv, W, dW, db, stride, padding, work,
                           input_grad=input_grad)


def _kept_pixel_rows_backward(dy, cache, W, dW, db, padding, work, input_grad):
    """conv2d_backward's pixel-rows products over the outputs the pool kept only.

    A floor pool drops the last row and column of an odd-sized output (conv2d_2: 100 of
    121 pixels kept), whose gradient is 0: the patch rows, both products and the adjoint
    copy run over the kept (2P, 2Q) grid, and the pooled gradient is routed straight
    into its channels-last rows (unpool_2x2_channels_last), where conv2d_backward would
    route it into (N, F, H', W') and reorder it. Sums are those of conv2d_backward
    restricted to terms that are not 0 (the dropped pixels' terms are all 0). A layer
    Winograd serves takes its weight gradient by Winograd F(3x3, 2x2) too, whose tiles
    are the pool's windows, and builds no patch matrix (1.4 against 2.7 ms a shard for
    conv2d_2's dW)."""
    x = cache.conv.x
    n, f, p_count, q_count = dy.shape
    _, c, kh, kw = W.shape
    dtype, (top, _), (left, _) = dy.dtype, *padding
    h_kept, w_kept = 2 * p_count, 2 * q_count
    d_rows = work.get("kept_dy", (n, h_kept, w_kept, f), dtype)
    run("unpool_2x2_channels_last", _channels_last(dy), _channels_last(cache.winner), d_rows)
    dy_rows, channels_last = d_rows.reshape(-1, f), lies_channels_last(x)
    if winograd_applies(W.shape, (1, 1), padding):  # no patch matrix at all
        dW[...] = winograd_weight_grad(x, d_rows, padding, work)
    else:
        patches = work.get("kept_patches", (n, h_kept, w_kept, kh, kw, c), dtype)
        if channels_last:
            run("pixel_patches_from_channels_last", x.transpose(0, 2, 3, 1), kh, kw, top, left,
                patches)
        else:
            run("pixel_patches", x, kh, kw, 1, 1, top, left, patches)
        dW_last = np.matmul(dy_rows.T, patches.reshape(-1, kh * kw * c),
                            out=work.get("kept_dW", (f, kh * kw * c), dtype))
        dW[...] = dW_last.reshape(f, kh, kw, c).transpose(0, 3, 1, 2)
    if db is not None:  # the pooled gradient's sums: each window's reaches one output
        np.sum(np.sum(dy.reshape(n, f, -1) if dy.flags.c_contiguous else
                      np.ascontiguousarray(dy).reshape(n, f, -1), axis=2), axis=0, out=db)
    if not input_grad:
        return None
    dpatches = np.matmul(dy_rows, weights_last(W), out=work.get(
        "kept_dpatches", (dy_rows.shape[0], kh * kw * c), dtype))
    return add_pixel_rows(dpatches.reshape(n, h_kept, w_kept, kh, kw, c), x.shape,
                          channels_last, (1, 1), padding, work)


def _channels_last(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) as a C-contiguous (N, H, W, C): a view when ``a`` lies so already."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))

