"""The compiled loops behind :mod:`lamina.kernels` (imported on first use: it imports Numba).

Each function is the derivation's sum or selection written as loops over its indices,
compiled by Numba once per argument type and kept in Numba's on-disk cache
(``cache=True``), so a later process loads it instead of compiling. ``nogil=True``
lets the sharded step (lamina.runtime.parallel) run two shards' kernels at once.
Callers pass C-contiguous arrays of one float dtype and preallocated outputs; the
public wrappers in :mod:`lamina.kernels.pool` and :mod:`lamina.kernels.conv` check
shapes and choose the loop. No loop uses Numba's own threads (``parallel=True``):
the shards already keep both cores busy (measured in docs/performance.md).
"""

from __future__ import annotations

import math

from numba import njit
from numba.core.errors import NumbaError

__all__ = ["NumbaError", "add_pixel_patches", "add_sample_columns", "avg_pool_2x2",
           "avg_pool_2x2_backward", "channels_first", "channels_last",
           "conv3x3_pool_single_channel", "crop_channels_first", "depthwise_conv",
           "depthwise_conv_input_grad", "depthwise_conv_weight_grad", "direct_conv_pool",
           "max_pool", "max_pool_2x2", "max_pool_2x2_backward", "max_pool_backward",
           "pad_channels_last", "pad_from_channels_last", "pixel_patches",
           "pixel_patches_from_channels_last", "relu", "relu_backward",
           "unpool_2x2_channels_last", "winograd_grad_tiles", "winograd_input",
           "winograd_output", "winograd_output_pool", "winograd_weights"]

compiled = njit(nogil=True, cache=True)


@compiled
def _first_max(a, b, c, d):
    """The first maximum of a 2x2 window a b / c d in row-major order and its offset 0-3, a
    NaN winning: the row pairs' first maxima (b replaces a only if b > a, d replaces c only
    if d > c), then the bottom pair's only if it is greater. Without branches, so loops
    calling it run on the vector units (max_pool_2x2, the fused pools)."""
    right = (b > a) | (b != b)
    upper = b if right else a
    upper_k = 1 if right else 0
    right = (d > c) | (d != d)
    lower = d if right else c
    lower_k = 3 if right else 2
    down = (lower > upper) | (lower != lower)
    return (lower if down else upper), (lower_k if down else upper_k)


@compiled
def max_pool_2x2(x, y, winner):
    """2x2 windows with stride 2: each output is the first maximum of its four inputs
    (:func:`_first_max`, written without branches so the loop over q runs on the vector
    units). A NaN in a window wins it (y is NaN, as with np.maximum)."""
    n_count, c_count, h_out, w_out = y.shape
    for n in range(n_count):
        for c in range(c_count):
            for p in range(h_out):
                top, bottom = x[n, c, 2 * p], x[n, c, 2 * p + 1]
                y_row, k_row = y[n, c, p], winner[n, c, p]
                for q in range(w_out):
                    y_row[q], k_row[q] = _first_max(top[2 * q], top[2 * q + 1],
                                                    bottom[2 * q], bottom[2 * q + 1])
    return y


@compiled
def max_pool(x, ph, pw, sh, sw, y, winner):
    """Any window (ph, pw) and stride (sh, sw): y[n, c, p, q] = max_{i, j} x[n, c, p*sh + i,
    q*sw + j], winner = i*pw + j of the first (row-major) maximum; a NaN wins its window."""
    n_count, c_count, h_out, w_out = y.shape
    for n in range(n_count):
        for c in range(c_count):
            for p in range(h_out):
                for q in range(w_out):
                    best = x[n, c, p * sh, q * sw]
                    best_k = 0
                    for i in range(ph):
                        row = x[n, c, p * sh + i]
                        for j in range(pw):
                            value = row[q * sw + j]
                            if value > best or (value != value and best == best):
                                best = value
                                best_k = i * pw + j
                    y[n, c, p, q] = best
                    winner[n, c, p, q] = best_k
    return y


@compiled
def max_pool_2x2_backward(dy, winner, dx):
    """dx for 2x2 windows with stride 2: each input gets dy of its window if it won it,
    else 0; every entry of dx is written once (the rows and columns no window covers get
    0)."""
    n_count, c_count, h_out, w_out = dy.shape
    h, w = dx.shape[2], dx.shape[3]
    for n in range(n_count):
        for c in range(c_count):
            for p in range(h_out):
                top, bottom = dx[n, c, 2 * p], dx[n, c, 2 * p + 1]
                g_row, k_row = dy[n, c, p], winner[n, c, p]
                for q in range(w_out):
                    g, k = g_row[q], k_row[q]
                    top[2 * q] = g if k == 0 else 0
                    top[2 * q + 1] = g if k == 1 else 0
                    bottom[2 * q] = g if k == 2 else 0
                    bottom[2 * q + 1] = g if k == 3 else 0
                for col in range(2 * w_out, w):
                    top[col] = 0
                    bottom[col] = 0
            for row in range(2 * h_out, h):
                dx[n, c, row, :] = 0
    return dx


@compiled
def max_pool_backward(dy, winner, pw, sh, sw, dx):
    """dx[n, c, p*sh + i*, q*sw + j*] += dy[n, c, p, q] for each window's winner (i*, j*);
    an input that wins several overlapping windows gets their sum, added in (p, q) order."""
    n_count, c_count, h_out, w_out = dy.shape
    dx[...] = 0
    for n in range(n_count):
        for c in range(c_count):
            for p in range(h_out):
                for q in range(w_out):
                    k = winner[n, c, p, q]
                    dx[n, c, p * sh + k // pw, q * sw + k % pw] += dy[n, c, p, q]
    return dx


@compiled
def avg_pool_2x2(x, y):
    """2x2 windows with stride 2, no padding: y[n, c, p, q] = (a + b + c + d) / 4 for the
    window's top row a, b and bottom row c, d (the rows and columns past the last whole
    window are dropped). Scaling by 1/4 is exact, so this equals the sum divided by 4."""
    n_count, c_count, h_out, w_out = y.shape
    for n in range(n_count):
        for c in range(c_count):
            for p in range(h_out):
                top, bottom = x[n, c, 2 * p], x[n, c, 2 * p + 1]
                y_row = y[n, c, p]
                for q in range(w_out):
                    y_row[q] = (top[2 * q] + top[2 * q + 1]
                                + bottom[2 * q] + bottom[2 * q + 1]) * 0.25
    return y


@compiled
def avg_pool_2x2_backward(dy, dx):
    """dx for 2x2 windows with stride 2, no padding: each input gets a quarter of its
    window's dy; every entry of dx is written once (the rows and columns no window covers
    get 0)."""
    n_count, c_count, h_out, w_out = dy.shape
    h, w = dx.shape[2], dx.shape[3]
    for n in range(n_count):
        for c in range(c_count):
            for p in range(h_out):
                top, bottom = dx[n, c, 2 * p], dx[n, c, 2 * p + 1]
                g_row = dy[n, c, p]
                for q in range(w_out):
                    g = g_row[q] * 0.25
                    top[2 * q] = g
                    top[2 * q + 1] = g
                    bottom[2 * q] = g
                    bottom[2 * q + 1] = g
                for col in range(2 * w_out, w):
                    top[col] = 0
                    bottom[col] = 0
            for row in range(2 * h_out, h):
                dx[n, c, row, :] = 0
    return dx


@compiled
def add_sample_columns(cols, sh, sw, top, left, dx):
    """The adjoint of sample-first patches: dx[n, c, h, w] = sum of cols[n, c, i, j, p, q]
    over h = p*sh + i - top, w = q*sw + j - left, offsets added in (i, j) order; entries
    that read padding are dropped."""
    n_count, c_count, kh, kw, h_out, w_out = cols.shape
    h, w = dx.shape[2], dx.shape[3]
    dx[...] = 0
    for n in range(n_count):
        for c in range(c_count):
            for i in range(kh):
                for j in range(kw):
                    for p in range(h_out):
                        row = p * sh + i - top
                        if row < 0 or row >= h:
                            continue
                        src, dst = cols[n, c, i, j, p], dx[n, c, row]
                        for q in range(w_out):
                            col = q * sw + j - left
                            if 0 <= col < w:
                                dst[col] += src[q]
    return dx


@compiled
def pixel_patches(x, kh, kw, sh, sw, top, left, cols):
    """cols[n, p, q, i, j, c] = x[n, c, p*sh + i - top, q*sw + j - left] (0 in the padding)
    for x (N, C, H, W) and cols (N, H', W', kh, kw, C): one channels-last patch per output
    pixel, written contiguously (one sample of x, read across channels, stays in cache)."""
    n_count, h_out, w_out = cols.shape[0], cols.shape[1], cols.shape[2]
    c_count, h, w = x.shape[1], x.shape[2], x.shape[3]
    for n in range(n_count):
        image = x[n]
        for p in range(h_out):
            for q in range(w_out):
                for i in range(kh):
                    row = p * sh + i - top
                    for j in range(kw):
                        col = q * sw + j - left
                        dst = cols[n, p, q, i, j]
                        if 0 <= row < h and 0 <= col < w:
                            for c in range(c_count):
                                dst[c] = image[c, row, col]
                        else:
                            dst[:] = 0
    return cols


@compiled
def add_pixel_patches(dcols, sh, sw, top, left, dxh):
    """The adjoint of pixel_patches: dxh[n, h, w, :] = sum of dcols[n, p, q, i, j, :] over
    h = p*sh + i - top, w = q*sw + j - left (added in (p, q, i, j) order)."""
    n_count, h_out, w_out, kh, kw = dcols.shape[:5]
    h, w, c_count = dxh.shape[1], dxh.shape[2], dxh.shape[3]
    dxh[...] = 0
    for n in range(n_count):
        for p in range(h_out):
            for q in range(w_out):
                for i in range(kh):
                    row = p * sh + i - top
                    if row < 0 or row >= h:
                        continue
                    for j in range(kw):
                        col = q * sw + j - left
                        if col < 0 or col >= w:
                            continue
                        src, dst = dcols[n, p, q, i, j], dxh[n, row, col]
                        for c in range(c_count):
                            dst[c] += src[c]
    return dxh


@compiled
def depthwise_conv(x, W, b, sh, sw, top, left, y):
    """y[n, f, p, q] = b[f] + sum_{i, j} W[f, 0, i, j] * x[n, f // m, p*sh + i - top,
    q*sw + j - left] for m = F // C filters per channel; the taps that read padding are left
    out. One output row is built at a time, the taps added in (i, j) order. The bounds are
    tested inside the loop over q rather than narrowing its range: the test proves col >= 0,
    which spares every read Numba's wrap-around of negative indices (a narrowed range
    does not), and the loop stays vectorisable."""
    n_count, f_count, h_out, w_out = y.shape
    c_count, h, w = x.shape[1], x.shape[2], x.shape[3]
    m, kh, kw = f_count // c_count, W.shape[2], W.shape[3]
    for n in range(n_count):
        for f in range(f_count):
            image, kernel, bias = x[n, f // m], W[f, 0], b[f]
            for p in range(h_out):
                dst = y[n, f, p]
                for q in range(w_out):
                    dst[q] = bias
                for i in range(kh):
                    row = p * sh + i - top
                    if row < 0 or row >= h:
                        continue
                    src = image[row]
                    for j in range(kw):
                        weight = kernel[i, j]
                        for q in range(w_out):
                            col = q * sw + j - left
                            if 0 <= col < w:
                                dst[q] += weight * src[col]
    return y


@compiled
def depthwise_conv_weight_grad(dy, x, sh, sw, top, left, lanes, dW):
    """dW[f, 0, i, j] = sum_{n, p, q} dy[n, f, p, q] * x[n, f // m, p*sh + i - top,
    q*sw + j - left]. The sum over q is kept in ``lanes`` (kh, kw, W') while n and p run, and
    summed at the end: one running sum per q adds independent lanes the compiler can
    vectorise, where a single running sum would be one dependency chain."""
    n_count, f_count, h_out, w_out = dy.shape
    c_count, h, w = x.shape[1], x.shape[2], x.shape[3]
    m, kh, kw = f_count // c_count, dW.shape[2], dW.shape[3]
    for f in range(f_count):
        lanes[...] = 0
        for n in range(n_count):
            image = x[n, f // m]
            for p in range(h_out):
                grad = dy[n, f, p]
                for i in range(kh):
                    row = p * sh + i - top
                    if row < 0 or row >= h:
                        continue
                    src = image[row]
                    for j in range(kw):
                        dst = lanes[i, j]
                        for q in range(w_out):
                            col = q * sw + j - left
                            if 0 <= col < w:
                                dst[q] += grad[q] * src[col]
        for i in range(kh):
            for j in range(kw):
                total = lanes[i, j, 0] * 0
                for q in range(w_out):
                    total += lanes[i, j, q]
                dW[f, 0, i, j] = total
    return dW


@compiled
def depthwise_conv_input_grad(dy, W, sh, sw, top, left, dx):
    """dx[n, f // m, p*sh + i - top, q*sw + j - left] += dy[n, f, p, q] * W[f, 0, i, j] over
    every (f, p, q, i, j) whose tap lands inside the image (the rest read padding)."""
    n_count, f_count, h_out, w_out = dy.shape
    c_count, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    m, kh, kw = f_count // c_count, W.shape[2], W.shape[3]
    dx[...] = 0
    for n in range(n_count):
        for f in range(f_count):
            image, kernel = dx[n, f // m], W[f, 0]
            for p in range(h_out):
                grad = dy[n, f, p]
                for i in range(kh):
                    row = p * sh + i - top
                    if row < 0 or row >= h:
                        continue
                    dst = image[row]
                    for j in range(kw):
                        weight = kernel[i, j]
                        for q in range(w_out):
                            col = q * sw + j - left
                            if 0 <= col < w:
                                dst[col] += grad[q] * weight
    return dx


@compiled
def channels_last(x, out):
    """out[n, k, c] = x[n, c, k] for x (N, C, K): each output row written contiguously
    (measured faster than writing with a stride)."""
    n_count, c_count, k_count = x.shape
    for n in range(n_count):
        for k in range(k_count):
            dst = out[n, k]
            for c in range(c_count):
                dst[c] = x[n, c, k]
    return out


@compiled
def channels_first(x, b, out):
    """out[n, c, k] = x[n, k, c] + b[c] for x (N, K, C)."""
    n_count, k_count, c_count = x.shape
    for n in range(n_count):
        for c in range(c_count):
            dst, bias = out[n, c], b[c]
            for k in range(k_count):
                dst[k] = x[n, k, c] + bias
    return out


@compiled
def relu(x, y, mask):
    """mask[i] = x[i] > 0 and y[i] = x[i] * mask[i] for flat x (the product, not a select,
    as NumPy's multiply by the mask gives: -0.0 for negative x, NaN for -inf and NaN)."""
    for i in range(x.size):
        positive = x[i] > 0
        mask[i] = positive
        y[i] = x[i] * positive
    return y


@compiled
def relu_backward(dy, mask, dx):
    """dx[i] = dy[i] * mask[i] for flat arrays."""
    for i in range(dy.size):
        dx[i] = dy[i] * mask[i]
    return dx


@compiled
def erfc(x, out):
    """out[i] = erfc(x[i]) for flat x: the C library's erfc, the function math.erfc calls
    (erfcf for float32)."""
    for i in range(x.size):
        out[i] = math.erfc(x[i])
    return out


# The fast convolution paths (Winograd, the direct convolution ending in a pool) keep
# their loops in a module of their own; lamina.kernels.jit.run finds them here.
from lamina.kernels._conv_loops import (  # noqa: E402
    conv3x3_pool_single_channel,
    crop_channels_first,
    direct_conv_pool,
    pad_channels_last,
    pad_from_channels_last,
    pixel_patches_from_channels_last,
    unpool_2x2_channels_last,
    winograd_grad_tiles,
    winograd_input,
    winograd_output,
    winograd_output_pool,
    winograd_weights,
)
