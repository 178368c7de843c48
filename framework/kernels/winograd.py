"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 16 multiplications per 2x2 block
of outputs where the direct sum needs 36.

For each 2x2 block ("tile") of the output, the 4x4 patch d of the input it reads and each
filter's 3x3 kernel g (docs/layers/conv2d.md, "Winograd", derives the matrices):

    y_tile = A^T [ sum_c (G g_fc G^T) * (B^T d_c B) ] A        (* entry by entry)

so with U[k] = (G g G^T) laid out (C, F) and V[k] = (B^T d B) laid out (tiles, C) for each
of the 16 entries k, the sum over channels is 16 matrix products M[k] = V[k] @ U[k], and
the output transform A^T m A turns each tile's 16 sums into its four outputs. The input is
processed a few samples at a time (:data:`CHUNK`), zero-padded and channels-last, so that
V and M stay in the core's L2 cache between the transform and the products.

The transforms add and subtract (G has halves): float32 results differ from the direct
sum by rounding only, measured within 1e-5 relative on the reference network and checked
by the conformance suite against the direct formula (lamina.testing).

Two outputs: the convolution itself (:func:`winograd_conv2d`) and the 2x2 max pool of it
(``pool=True``): a tile *is* a pool window, so the pool costs four compares per tile, the
tiles a floor pool drops are never computed, and the convolution's output is never
written. The input gradient of a 3x3 stride-1 convolution is another one (the filters
flipped, channels and filters swapped, the padding 2 - p): :func:`winograd_input_grad`.
"""

from __future__ import annotations

import numpy as np

from lamina.kernels.geometry import Padding
from lamina.kernels.jit import run
from lamina.kernels.pool import Pooled, winner_dtype
from lamina.kernels.workspace import Workspace

#: samples per pass: 8 keeps V and M of a (32 -> 64)-channel 13x13 layer (~1.2 MB) in L2
CHUNK = 8


def _plane_rows(tiles: int, row_bytes: tuple[int, ...]) -> int:
    """Rows for V's and M's 16 planes of ``tiles`` rows: a few more when a plane would span
    a multiple of 4 KiB. The transforms read or write all 16 planes at once, and 16 streams
    4 KiB apart share the L1 cache's sets: 36 tiles of 8 samples (288 rows of 32 floats)
    took the input transform from 0.3 to 3.9 ms a shard. A row of a multiple of 4 KiB
    cannot be spaced that way and is left alone."""
    sizes = [size for size in row_bytes if size % 4096]
    for rows in range(tiles, tiles + 4096):
        if all(512 <= (rows * size) % 4096 <= 3584 for size in sizes):
            return rows
    return tiles


def transformed_weights(W: np.ndarray, work: Workspace, prefix: str = "") -> np.ndarray:
    """U (16, C, F) for W (F, C, 3, 3), kept in ``work`` with a copy of the W it came from:
    while the weights stay the same (inference, every shard of a training step after the
    first) comparing them, ~20 times cheaper than the transform, is all it costs."""
    f, c = W.shape[:2]
    source, U = work.find(prefix + "U.source"), work.find(prefix + "U")
    if (source is not None and U is not None and U.shape == (16, c, f) and U.dtype == W.dtype
            and source.shape == W.shape and np.array_equal(source, W)):
        return U
    U = run("winograd_weights", np.ascontiguousarray(W), work.get(prefix + "U", (16, c, f),
                                                                  W.dtype))
    work.get(prefix + "U.source", W.shape, W.dtype)[...] = W
    return U


def winograd_conv2d(x: np.ndarray, W: np.ndarray, b: np.ndarray | None, padding: Padding,
                    work: Workspace, *, pool: bool = False,
                    prefix: str = "") -> np.ndarray | Pooled:
    """y (N, F, H', W') = b + the cross-correlation of x (N, C, H, W) with W (F, C, 3, 3),
    zero-padded by ``padding``; with ``pool``, its 2x2 max pool with stride 2 (floor) as a
    :class:`Pooled` of channels-last memory seen as (N, F, H'/2, W'/2) (transposed views).
    x may have any memory layout (a channels-last one is read fastest). New arrays;
    ``work`` keeps the buffers (keys start with ``prefix``)."""
    n, c, h, w = x.shape
    f = W.shape[0]
    (top, bottom), (left, right) = padding
    h_out, w_out = h + top + bottom - 2, w + left + right - 2
    dtype = x.dtype
    if pool:
        tiles_h, tiles_w = h_out // 2, w_out // 2
    else:
        tiles_h, tiles_w = -(-h_out // 2), -(-w_out // 2)
    per_sample = tiles_h * tiles_w
    U = transformed_weights(W, work, prefix)
    bias = np.zeros(f, dtype) if b is None else b
    if pool:  # new arrays: the results are views of them
        y_last = np.empty((n * per_sample, f), dtype)
        k_last = np.empty((n * per_sample, f), winner_dtype((2, 2)))
    else:
        y = np.empty((n, f, h_out, w_out), dtype=dtype)
    for n0, s, V in _transformed_input(x, (tiles_h, tiles_w), padding, f * dtype.itemsize,
                                       work, prefix):
        M = work.get(f"{prefix}M{s}", (16, V.shape[1], f), dtype)
        np.matmul(V, U, out=M)
        if pool:
            kept = slice(n0 * per_sample, (n0 + s) * per_sample)
            run("winograd_output_pool", M, bias, y_last[kept], k_last[kept])
        else:
            y_tiles = work.get(f"{prefix}tiles{s}", (s, 2 * tiles_h, 2 * tiles_w, f), dtype)
            run("winograd_output", M, bias, tiles_h, tiles_w, y_tiles)
            run("crop_channels_first", y_tiles, n0, y)
    if not pool:
        return y
    # (N, F, tiles_h, tiles_w) views of the channels-last results, not copies
    return Pooled(y_last.reshape(n, tiles_h, tiles_w, f).transpose(0, 3, 1, 2),
                  k_last.reshape(n, tiles_h, tiles_w, f).transpose(0, 3, 1, 2))


def lies_channels_last(x: np.ndarray) -> bool:
    """Whether x (N, C, H, W) lies channels-last in memory (a fused conv2d's output): its
    (N, H, W, C) transpose is C-contiguous and x itself is not."""
    return not x.flags.c_contiguous and x.transpose(0, 2, 3, 1).flags.c_contiguous


def _transformed_input(x: np.ndarray, tiles: tuple[int, int], padding: Padding,
                       other_row_bytes: int, work: Workspace, prefix: str):
    """For each chunk of :data:`CHUNK` samples of x (N, C, H, W): (n0, s, V), V (16, rows, C)
    the transformed 4x4 input patches of its tiles (:func:`winograd_input`), zero-padded
    by ``padding``; rows past the s * tiles of the chunk are 0, there only to keep the
    planes apart (:func:`_plane_rows`, with ``other_row_bytes`` the row size of the planes
    the product writes). x is read as it lies when it lies channels-last."""
    n, c = x.shape[:2]
    (tiles_h, tiles_w), ((top, _), (left, _)), dtype = tiles, padding, x.dtype
    per_sample = tiles_h * tiles_w
    if lies_channels_last(x):
        pad, source = "pad_from_channels_last", x.transpose(0, 2, 3, 1)
    else:
        pad, source = "pad_channels_last", np.ascontiguousarray(x)
    for n0 in range(0, n, CHUNK):
        s = min(CHUNK, n - n0)
        rows = _plane_rows(s * per_sample, (c * dtype.itemsize, other_row_bytes))
        xp = work.get(f"{prefix}xp{s}", (s, 2 * tiles_h + 2, 2 * tiles_w + 2, c), dtype)
        V = work.get(f"{prefix}V{s}", (16, rows, c), dtype)
        V[:, s * per_sample:] = 0
        run(pad, source, n0, top, left, xp)
        run("winograd_input", xp, tiles_h, tiles_w, V)
        yield n0, s, V


#: A'^T of Winograd F(3x3, 2x2), the weight gradient's output transform
_WEIGHT_GRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, 0], [0, 1, 1, 1]])


def winograd_weight_grad(x: np.ndarray, d_rows: np.ndarray, padding: Padding,
                         work: Workspace) -> np.ndarray:
    """dW (F, C, 3, 3), a new array, of a 3x3 stride-1 convolution of x (N, C, H, W) whose
    output gradient, 0 outside rows and columns [0, 2P) x [0, 2Q), is ``d_rows`` (N, 2P, 2Q,
    F) channels-last (what a 2x2 pool's backward routes):

        dW[f, c, i, j] = sum_{n, p, q} dy[n, f, p, q] * x[n, c, p + i - top, q + j - left]

    by Winograd F(3x3, 2x2): each 2x2 block of dy (a pool window) and the 4x4 patch of x
    it reads, transformed, make 16 products (C, tiles)(tiles, F) summed over the batch,
    and A'^T M A' gives the 3x3 taps (docs/layers/conv2d.md, "Weight gradient")."""
    n, h_kept, w_kept, f = d_rows.shape
    c = x.shape[1]
    tiles_h, tiles_w = h_kept // 2, w_kept // 2
    per_sample, dtype = tiles_h * tiles_w, x.dtype
    d_rows = np.ascontiguousarray(d_rows)
    total = np.zeros((16, c, f), dtype)
    for n0, s, V in _transformed_input(x, (tiles_h, tiles_w), padding, f * dtype.itemsize,
                                       work, "dW."):
        D = work.get(f"dW.D{s}", (16, V.shape[1], f), dtype)
        D[:, s * per_sample:] = 0  # rows that only keep the planes apart
        run("winograd_grad_tiles", d_rows, n0, s, D)
        total += np.matmul(V.transpose(0, 2, 1), D, out=work.get("dW.M", (16, c, f), dtype))
    at = _WEIGHT_GRAD_AT.astype(dtype)
    taps = np.tensordot(np.tensordot(at, total.reshape(4, 4, c, f), axes=(1, 0)), at,
                        axes=(1, 1))  # (3, C, F, 3)
    return np.ascontiguousarray(taps.transpose(2, 1, 0, 3))


def winograd_input_grad(dy: np.ndarray, W: np.ndarray, padding: Padding,
                        work: Workspace) -> np.ndarray:
    """dx (N, C, H, W) of a 3x3 stride-1 convolution, a new array, from dy (N, F, H', W'):

        dx[n, c, h, w] = sum_{f, i, j} dy[n, f, h + top - i, w + left - j] * W[f, c, i, j]

    is the cross-correlation of dy with W[f, c, 2 - i, 2 - j] (filters flipped, channels and
    filters swapped) under padding 2 - p on each side, so :func:`winograd_conv2d` runs it."""
    (top, bottom), (left, right) = padding
    flipped = np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return winograd_conv2d(dy, flipped, None, ((2 - top, 2 - bottom), (2 - left, 2 - right)),
                           work, prefix="dx.")
