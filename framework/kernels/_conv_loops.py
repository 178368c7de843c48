"""The compiled loops of the fast convolution paths (:mod:`lamina.kernels.winograd` and
:mod:`lamina.kernels.fused`): Winograd F(2x2, 3x3) transforms and a direct convolution
with the filters innermost, each able to end in a 2x2 max pool.

Same rules as :mod:`lamina.kernels._loops`: one float dtype per call, C-contiguous
arrays, preallocated outputs, ``nogil`` so two shards run at once, cached on disk.
The transform matrices and their derivation are in docs/layers/conv2d.md ("Winograd").
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lamina.kernels._loops import _first_max, compiled

#: the direct sums may fuse each multiply and add into one FMA instruction (one rounding
#: instead of two; the order of the sum unchanged): 0.43 -> 0.31 ms a shard for the
#: reference network's first layer. Every CPU lamina's wheels run on (x86-64 with AVX2,
#: AArch64) has FMA, and a run is bit-identical across repeats as before.
compiled_fma = njit(nogil=True, cache=True, fastmath={"contract"})

__all__ = ["conv3x3_pool_single_channel", "crop_channels_first", "direct_conv_pool",
           "pad_channels_last", "pad_from_channels_last", "pixel_patches_from_channels_last",
           "unpool_2x2_channels_last", "winograd_grad_tiles", "winograd_input",
           "winograd_output", "winograd_output_pool", "winograd_weights"]


@compiled
def winograd_weights(W, U):
    """U[k, c, f] = (G g G^T)[k // 4, k % 4] for g = W[f, c] (3x3), G = [[1, 0, 0],
    [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]: the filters in the transformed domain,
    laid out so that U[k] is the (C, F) right factor of the k-th product."""
    f_count, c_count = W.shape[0], W.shape[1]
    t = np.empty((4, 3), dtype=W.dtype)
    for f in range(f_count):
        for c in range(c_count):
            g = W[f, c]
            for j in range(3):  # t = G g: the rows combined
                t[0, j] = g[0, j]
                t[1, j] = (g[0, j] + g[1, j] + g[2, j]) * 0.5
                t[2, j] = (g[0, j] - g[1, j] + g[2, j]) * 0.5
                t[3, j] = g[2, j]
            for i in range(4):  # U = t G^T: the columns combined
                U[4 * i, c, f] = t[i, 0]
                U[4 * i + 1, c, f] = (t[i, 0] + t[i, 1] + t[i, 2]) * 0.5
                U[4 * i + 2, c, f] = (t[i, 0] - t[i, 1] + t[i, 2]) * 0.5
                U[4 * i + 3, c, f] = t[i, 2]
    return U


@compiled
def pad_channels_last(x, n0, top, left, xp):
    """xp[s, r, q, c] = x[n0 + s, c, r - top, q - left], 0 outside the image: samples
    n0 .. n0 + S of x (N, C, H, W) zero-padded and channels-last in xp (S, Hp, Wp, C)."""
    samples, hp, wp, c_count = xp.shape
    h, w = x.shape[2], x.shape[3]
    for s in range(samples):
        image = x[n0 + s]
        for r in range(hp):
            row = r - top
            for q in range(wp):
                col = q - left
                if 0 <= row < h and 0 <= col < w:
                    for c in range(c_count):
                        xp[s, r, q, c] = image[c, row, col]
                else:
                    for c in range(c_count):
                        xp[s, r, q, c] = 0
    return xp


@compiled
def pad_from_channels_last(x_last, n0, top, left, xp):
    """:func:`pad_channels_last` for an input already channels-last, x_last (N, H, W, C): row
    copies of C contiguous channels."""
    samples, hp, wp, c_count = xp.shape
    h, w = x_last.shape[1], x_last.shape[2]
    for s in range(samples):
        image = x_last[n0 + s]
        for r in range(hp):
            row = r - top
            for q in range(wp):
                col = q - left
                dst = xp[s, r, q]
                if 0 <= row < h and 0 <= col < w:
                    src = image[row, col]
                    for c in range(c_count):
                        dst[c] = src[c]
                else:
                    for c in range(c_count):
                        dst[c] = 0
    return xp


@compiled
def winograd_input(xp, tiles_h, tiles_w, V):
    """V[k, t, c] = (B^T d B)[k // 4, k % 4] for d = xp[s, 2ty .. 2ty + 3, 2tx .. 2tx + 3, c],
    tile t = (s*tiles_h + ty)*tiles_w + tx, B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0],
    [0, 1, 0, -1]].

    Channels innermost, one loop per row i of B^T d (rows a - b of d: 0 - 2, 1 + 2, 2 - 1,
    1 - 3), each reading 8 and writing 4 channel vectors through 1-D views: written as
    one loop of 16 reads and 16 writes, or with 3-D indexing, Numba's loop stayed scalar
    (LLVM gives up on that many possibly overlapping streams), at twice the time."""
    samples, c_count = xp.shape[0], xp.shape[3]
    for s in range(samples):
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                t = (s * tiles_h + ty) * tiles_w + tx
                r, q = 2 * ty, 2 * tx
                x0, x1, x2, x3 = xp[s, r], xp[s, r + 1], xp[s, r + 2], xp[s, r + 3]
                for i in range(4):
                    if i == 0:
                        a, b = x0, x2
                    elif i == 1:
                        a, b = x1, x2
                    elif i == 2:
                        a, b = x2, x1
                    else:
                        a, b = x1, x3
                    a0, a1, a2, a3 = a[q], a[q + 1], a[q + 2], a[q + 3]
                    b0, b1, b2, b3 = b[q], b[q + 1], b[q + 2], b[q + 3]
                    v0, v1, v2, v3 = V[4 * i, t], V[4 * i + 1, t], V[4 * i + 2, t], V[4 * i + 3, t]
                    if i == 1:  # the one sum among the differences
                        for c in range(c_count):
                            e0, e1 = a0[c] + b0[c], a1[c] + b1[c]
                            e2, e3 = a2[c] + b2[c], a3[c] + b3[c]
                            v0[c] = e0 - e2
                            v1[c] = e1 + e2
                            v2[c] = e2 - e1
                            v3[c] = e1 - e3
                    else:
                        for c in range(c_count):
                            e0, e1 = a0[c] - b0[c], a1[c] - b1[c]
                            e2, e3 = a2[c] - b2[c], a3[c] - b3[c]
                            v0[c] = e0 - e2
                            v1[c] = e1 + e2
                            v2[c] = e2 - e1
                            v3[c] = e1 - e3
    return V


@compiled
def winograd_output(M, b, tiles_h, tiles_w, y_tiles):
    """y_tiles[s, 2ty + u, 2tx + v, f] = b[f] + (A^T m A)[u, v] for m = M[:, t, f] as 4x4 (t as
    in :func:`winograd_input`), A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]: every tile whole, in
    y_tiles (S, 2*tiles_h, 2*tiles_w, F) (:func:`crop_channels_first` drops the part of
    a last tile past the output). One loop per output row u of the tile, through 1-D
    views, as :func:`winograd_input` and for the same reason."""
    samples, f_count = y_tiles.shape[0], y_tiles.shape[3]
    for s in range(samples):
        for ty in range(tiles_h):
            p = 2 * ty
            for tx in range(tiles_w):
                t = (s * tiles_h + ty) * tiles_w + tx
                q = 2 * tx
                m0, m1, m2, m3 = M[0, t], M[1, t], M[2, t], M[3, t]
                m4, m5, m6, m7 = M[4, t], M[5, t], M[6, t], M[7, t]
                m8, m9, m10, m11 = M[8, t], M[9, t], M[10, t], M[11, t]
                m12, m13, m14, m15 = M[12, t], M[13, t], M[14, t], M[15, t]
                left, right = y_tiles[s, p, q], y_tiles[s, p, q + 1]
                for f in range(f_count):  # u = 0: the row m0 + m1 + m2 of A^T m
                    r0 = m0[f] + m4[f] + m8[f]
                    r1 = m1[f] + m5[f] + m9[f]
                    r2 = m2[f] + m6[f] + m10[f]
                    r3 = m3[f] + m7[f] + m11[f]
                    left[f] = b[f] + (r0 + r1 + r2)
                    right[f] = b[f] + (r1 - r2 - r3)
                left, right = y_tiles[s, p + 1, q], y_tiles[s, p + 1, q + 1]
                for f in range(f_count):  # u = 1: the row m1 - m2 - m3
                    r0 = m4[f] - m8[f] - m12[f]
                    r1 = m5[f] - m9[f] - m13[f]
                    r2 = m6[f] - m10[f] - m14[f]
                    r3 = m7[f] - m11[f] - m15[f]
                    left[f] = b[f] + (r0 + r1 + r2)
                    right[f] = b[f] + (r1 - r2 - r3)
    return y_tiles


@compiled
def crop_channels_first(y_tiles, n0, y):
    """y[n0 + s, f, p, q] = y_tiles[s, p, q, f] for the rows and columns of y (N, F, H', W'):
    channels-first again, the part of a last tile past the output dropped."""
    samples, f_count, h_out, w_out = y_tiles.shape[0], y.shape[1], y.shape[2], y.shape[3]
    for s in range(samples):
        for f in range(f_count):
            plane = y[n0 + s, f]
            for p in range(h_out):
                for q in range(w_out):
                    plane[p, q] = y_tiles[s, p, q, f]
    return y


@compiled
def winograd_output_pool(M, b, y_last, winner_last):
    """The 2x2 max pool (stride 2) of :func:`winograd_output`: tile t is pool window t, so
    y_last[t, f] (for the first T rows of M's planes) gets the first maximum (row-major; a
    NaN wins, as lamina.kernels.max_pool) of the tile's four outputs and winner_last[t, f]
    its offset 2u + v."""
    tiles, f_count = y_last.shape[0], y_last.shape[1]
    for t in range(tiles):
        for f in range(f_count):
            r00 = M[0, t, f] + M[4, t, f] + M[8, t, f]
            r01 = M[1, t, f] + M[5, t, f] + M[9, t, f]
            r02 = M[2, t, f] + M[6, t, f] + M[10, t, f]
            r03 = M[3, t, f] + M[7, t, f] + M[11, t, f]
            r10 = M[4, t, f] - M[8, t, f] - M[12, t, f]
            r11 = M[5, t, f] - M[9, t, f] - M[13, t, f]
            r12 = M[6, t, f] - M[10, t, f] - M[14, t, f]
            r13 = M[7, t, f] - M[11, t, f] - M[15, t, f]
            bias = b[f]
            a = bias + (r00 + r01 + r02)
            b_ = bias + (r01 - r02 - r03)
            c_ = bias + (r10 + r11 + r12)
            d = bias + (r11 - r12 - r13)
            y_last[t, f], winner_last[t, f] = _first_max(a, b_, c_, d)
    return y_last


@compiled_fma
def direct_conv_pool(x, Wt, b, acc, y_last, winner_last):
    """A stride-1 valid convolution ending in a 2x2 max pool with stride 2, the filters
    innermost: for x (N, C, H, W) and Wt (C, kh, kw, F) (the weights filters-last),

        conv[n, r, q, f] = b[f] + sum_{c, i, j} Wt[c, i, j, f] * x[n, c, r + i, q + j]

    y_last[n, p, q, f] is the first maximum of conv at (2p + u, 2q + v), u, v in {0, 1}
    (row-major; a NaN wins) and winner_last its offset 2u + v. ``acc`` (4, F) is scratch:
    the four positions of a window are summed side by side, each input read once per tap."""
    n_count, h_pool, w_pool, f_count = y_last.shape
    c_count, kh, kw = Wt.shape[0], Wt.shape[1], Wt.shape[2]
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    for n in range(n_count):
        for p in range(h_pool):
            for q in range(w_pool):
                for f in range(f_count):
                    a0[f] = b[f]
                    a1[f] = b[f]
                    a2[f] = b[f]
                    a3[f] = b[f]
                for c in range(c_count):
                    image = x[n, c]
                    for i in range(kh):
                        top, bottom = image[2 * p + i], image[2 * p + i + 1]
                        for j in range(kw):
                            v0, v1 = top[2 * q + j], top[2 * q + j + 1]
                            v2, v3 = bottom[2 * q + j], bottom[2 * q + j + 1]
                            w = Wt[c, i, j]
                            for f in range(f_count):
                                a0[f] += v0 * w[f]
                                a1[f] += v1 * w[f]
                                a2[f] += v2 * w[f]
                                a3[f] += v3 * w[f]
                y, k = y_last[n, p, q], winner_last[n, p, q]
                for f in range(f_count):
                    y[f], k[f] = _first_max(a0[f], a1[f], a2[f], a3[f])
    return y_last


@compiled_fma
def conv3x3_pool_single_channel(x, W9, b, y_last, winner_last):
    """:func:`direct_conv_pool` for the commonest first layer, 3x3 kernels on one channel
    (grayscale images), with the nine taps written out: for x (N, 1, H, W) and W9 (9, F),
    W9[3i + j, f] = W[f, 0, i, j], each window's 4x4 input patch is read once into
    registers and the loop over the filters computes the window's four sums and its
    pool from it (a quarter of the generic loop's time on the reference network)."""
    n_count, h_pool, w_pool, f_count = y_last.shape
    w0, w1, w2, w3, w4 = W9[0], W9[1], W9[2], W9[3], W9[4]
    w5, w6, w7, w8 = W9[5], W9[6], W9[7], W9[8]
    for n in range(n_count):
        image = x[n, 0]
        for p in range(h_pool):
            r0, r1, r2, r3 = image[2 * p], image[2 * p + 1], image[2 * p + 2], image[2 * p + 3]
            for q in range(w_pool):
                c = 2 * q
                d00, d01, d02, d03 = r0[c], r0[c + 1], r0[c + 2], r0[c + 3]
                d10, d11, d12, d13 = r1[c], r1[c + 1], r1[c + 2], r1[c + 3]
                d20, d21, d22, d23 = r2[c], r2[c + 1], r2[c + 2], r2[c + 3]
                d30, d31, d32, d33 = r3[c], r3[c + 1], r3[c + 2], r3[c + 3]
                y, k = y_last[n, p, q], winner_last[n, p, q]
                for f in range(f_count):
                    bias = b[f]
                    a = (bias + w0[f] * d00 + w1[f] * d01 + w2[f] * d02 + w3[f] * d10
                         + w4[f] * d11 + w5[f] * d12 + w6[f] * d20 + w7[f] * d21 + w8[f] * d22)
                    b_ = (bias + w0[f] * d01 + w1[f] * d02 + w2[f] * d03 + w3[f] * d11
                          + w4[f] * d12 + w5[f] * d13 + w6[f] * d21 + w7[f] * d22 + w8[f] * d23)
                    c_ = (bias + w0[f] * d10 + w1[f] * d11 + w2[f] * d12 + w3[f] * d20
                          + w4[f] * d21 + w5[f] * d22 + w6[f] * d30 + w7[f] * d31 + w8[f] * d32)
                    d = (bias + w0[f] * d11 + w1[f] * d12 + w2[f] * d13 + w3[f] * d21
                         + w4[f] * d22 + w5[f] * d23 + w6[f] * d31 + w7[f] * d32 + w8[f] * d33)
                    y[f], k[f] = _first_max(a, b_, c_, d)
    return y_last


@compiled
def unpool_2x2_channels_last(dy_last, k_last, d_rows):
    """The 2x2 pool's backward onto the windows it covers, channels-last: for dy_last and
    k_last (N, P, Q, F) (each window's gradient and winner offset 2u + v), d_rows[n, 2p + u,
    2q + v, f] = dy_last[n, p, q, f] at the winner and 0 at the window's three others;
    d_rows (N, 2P, 2Q, F), every entry written."""
    n_count, h_pool, w_pool, f_count = dy_last.shape
    for n in range(n_count):
        for p in range(h_pool):
            for q in range(w_pool):
                g, k = dy_last[n, p, q], k_last[n, p, q]
                a, b = d_rows[n, 2 * p, 2 * q], d_rows[n, 2 * p, 2 * q + 1]
                c, d = d_rows[n, 2 * p + 1, 2 * q], d_rows[n, 2 * p + 1, 2 * q + 1]
                for f in range(f_count):
                    a[f] = g[f] if k[f] == 0 else 0
                    b[f] = g[f] if k[f] == 1 else 0
                    c[f] = g[f] if k[f] == 2 else 0
                    d[f] = g[f] if k[f] == 3 else 0
    return d_rows


@compiled
def pixel_patches_from_channels_last(x_last, kh, kw, top, left, cols):
    """cols[n, p, q, i, j, :] = x_last[n, p + i - top, q + j - left, :] (0 in the padding),
    stride 1, for x_last (N, H, W, C): the pixel rows of lamina.kernels._loops.pixel_patches
    from a channels-last input, each a copy of C contiguous channels."""
    n_count, h_out, w_out = cols.shape[0], cols.shape[1], cols.shape[2]
    h, w, c_count = x_last.shape[1], x_last.shape[2], x_last.shape[3]
    for n in range(n_count):
        for p in range(h_out):
            for q in range(w_out):
                for i in range(kh):
                    row = p + i - top
                    for j in range(kw):
                        col = q + j - left
                        dst = cols[n, p, q, i, j]
                        if 0 <= row < h and 0 <= col < w:
                            src = x_last[n, row, col]
                            for c in range(c_count):
                                dst[c] = src[c]
                        else:
                            for c in range(c_count):
                                dst[c] = 0
    return cols


@compiled
def winograd_grad_tiles(d_rows, n0, samples, D):
    """D[k, t, f] = s_k (G' g G'^T)[k // 4, k % 4] for the 2x2 block g of d_rows[n0 + s, 2ty ..
    2ty + 1, 2tx .. 2tx + 1, f] (tile t = (s*P + ty)*Q + tx, s < samples), G' = [[1, 0], [1/2, 1/2],
    [1/2, -1/2], [0, 1]]: the output gradient's tiles for the weight gradient by Winograd
    F(3x3, 2x2). s_k = -1 where exactly one of k's row and column is 3: the sign that
    turns :func:`winograd_input`'s B^T (last row [0, 1, 0, -1]) into F(3x3, 2x2)'s
    ([0, -1, 0, 1]), so the forward's input transform serves both. One loop per row of
    G' g through 1-D views, as winograd_input and for the same reason."""
    p_count, q_count, f_count = d_rows.shape[1] // 2, d_rows.shape[2] // 2, d_rows.shape[3]
    for s in range(samples):
        for ty in range(p_count):
            for tx in range(q_count):
                t = (s * p_count + ty) * q_count + tx
                g00, g01 = d_rows[n0 + s, 2 * ty, 2 * tx], d_rows[n0 + s, 2 * ty, 2 * tx + 1]
                g10 = d_rows[n0 + s, 2 * ty + 1, 2 * tx]
                g11 = d_rows[n0 + s, 2 * ty + 1, 2 * tx + 1]
                for i in range(4):
                    v0, v1, v2, v3 = D[4 * i, t], D[4 * i + 1, t], D[4 * i + 2, t], D[4 * i + 3, t]
                    if i == 0:  # row g0
                        for f in range(f_count):
                            a, b = g00[f], g01[f]
                            v0[f] = a
                            v1[f] = (a + b) * 0.5
                            v2[f] = (a - b) * 0.5
                            v3[f] = -b
                    elif i == 1:  # (g0 + g1) / 2
                        for f in range(f_count):
                            a, b = (g00[f] + g10[f]) * 0.5, (g01[f] + g11[f]) * 0.5
                            v0[f] = a
                            v1[f] = (a + b) * 0.5
                            v2[f] = (a - b) * 0.5
                            v3[f] = -b
                    elif i == 2:  # (g0 - g1) / 2
                        for f in range(f_count):
                            a, b = (g00[f] - g10[f]) * 0.5, (g01[f] - g11[f]) * 0.5
                            v0[f] = a
                            v1[f] = (a + b) * 0.5
                            v2[f] = (a - b) * 0.5
                            v3[f] = -b
                    else:  # row g1, its sign flipped but for column 3
                        for f in range(f_count):
                            a, b = g10[f], g11[f]
                            v0[f] = -a
                            v1[f] = -(a + b) * 0.5
                            v2[f] = -(a - b) * 0.5
                            v3[f] = b
    return D
