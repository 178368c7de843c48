import copy
import pickle

import numpy as np
import pytest

import lamina.kernels.conv as conv
from lamina.kernels import (
    DepthwiseInput,
    GroupCaches,
    PixelRows,
    SampleColumns,
    Workspace,
    avg_pool,
    avg_pool_backward,
    conv2d,
    conv2d_backward,
    conv_output_size,
    grouped_conv2d,
    grouped_conv2d_backward,
    max_pool,
    max_pool_backward,
    pair,
    same_padding,
    sample_patches,
    winner_dtype,
)

# (x shape, filters, kernel, stride, padding): valid, padded, strided, asymmetric, an
# offset that reads padding only; each runs with both patch layouts
GEOMETRIES = [
    ((2, 3, 5, 4), 2, (3, 3), (1, 1), ((0, 0), (0, 0))),
    ((2, 2, 6, 7), 3, (3, 2), (2, 3), ((1, 1), (0, 2))),
    ((1, 2, 4, 4), 2, (5, 5), (1, 1), ((2, 2), (2, 2))),
    ((1, 1, 5, 5), 1, (3, 3), (3, 3), ((2, 2), (2, 2))),
    ((3, 1, 7, 6), 2, (3, 3), (2, 2), ((1, 1), (0, 1))),
]
LAYOUTS = {"sample-columns": 10_000, "pixel-rows": 0}  # SAMPLE_COLUMNS_MAX_K forcing each


def reference_patches(x, kernel, stride, padding):
    """patches[n, c, i, j, p, q] read from an explicitly padded copy of x."""
    xp = np.pad(x, ((0, 0), (0, 0), *padding))
    (kh, kw), (sh, sw) = kernel, stride
    h_out = (xp.shape[2] - kh) // sh + 1
    w_out = (xp.shape[3] - kw) // sw + 1
    patches = np.empty((*x.shape[:2], kh, kw, h_out, w_out))
    for i in range(kh):
        for j in range(kw):
            patches[:, :, i, j] = xp[:, :, i : i + sh * (h_out - 1) + 1 : sh,
                                     j : j + sw * (w_out - 1) + 1 : sw]
    return patches


def reference_conv(x, W, b, stride, padding, dy):
    """y, dW, db, dx by the sums of the derivation (einsum over the patches, then col2im
    as explicit adds onto a padded dx)."""
    patches = reference_patches(x, W.shape[2:], stride, padding)
    y = np.einsum("fcij,ncijpq->nfpq", W, patches) + b[:, None, None]
    dW = np.einsum("nfpq,ncijpq->fcij", dy, patches)
    db = dy.sum(axis=(0, 2, 3))
    dpatches = np.einsum("fcij,nfpq->ncijpq", W, dy)
    (top, bottom), (left, right) = padding
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + top + bottom, x.shape[3] + left + right))
    (kh, kw), (sh, sw), (h_out, w_out) = W.shape[2:], stride, dy.shape[2:]
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + sh * (h_out - 1) + 1 : sh,
                j : j + sw * (w_out - 1) + 1 : sw] += dpatches[:, :, i, j]
    return y, dW, db, dxp[:, :, top : top + x.shape[2], left : left + x.shape[3]]


def test_pair_and_output_size():
    assert pair(3) == (3, 3) and pair([2, 5]) == (2, 5) and pair((4, 1)) == (4, 1)
    assert conv_output_size(28, 3, 1) == 26
    assert conv_output_size(11, 2, 2) == 5
    assert conv_output_size(7, 3, 2, 1, 1) == 4


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(5, 3, 1, (1, 1)), (5, 4, 1, (1, 2)), (7, 3, 2, (1, 1)), (6, 3, 2, (0, 1)),
     (6, 1, 2, (0, 0)), (2, 2, 1, (0, 1))],
)
def test_same_padding_matches_tensorflow(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    lo, hi = expected
    assert conv_output_size(size, kernel, stride, lo, hi) == -(-size // stride)


@pytest.mark.parametrize(("x_shape", "filters", "kernel", "stride", "padding"), GEOMETRIES)
def test_sample_patches_match_padded_reference_and_overwrite_buffer(x_shape, filters, kernel,
                                                                    stride, padding):
    x = np.random.default_rng(0).standard_normal(x_shape)
    expected = reference_patches(x, kernel, stride, padding)
    buffer = np.full(expected.shape, np.nan)  # a reused buffer may hold anything
    assert sample_patches(x, kernel, stride, padding, buffer) is buffer
    np.testing.assert_array_equal(buffer, expected)


def test_patch_rows_follow_the_weight_layout_hand_worked():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    patches = sample_patches(x, (2, 2), (1, 1), ((0, 0), (0, 0)), np.empty((1, 1, 2, 2, 2, 2)))
    # Row (i, j) holds x[p + i, q + j] for the four positions (p, q) in row-major order.
    np.testing.assert_array_equal(
        patches.reshape(4, 4), [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("x_shape", "filters", "kernel", "stride", "padding"), GEOMETRIES)
def test_conv2d_kernels_match_the_derivation(monkeypatch, layout, x_shape, filters, kernel,
                                             stride, padding):
    monkeypatch.setattr(conv, "SAMPLE_COLUMNS_MAX_K", LAYOUTS[layout])
    monkeypatch.setattr(conv, "winograd_applies", lambda *args: False)  # test_winograd.py
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape)
    W = rng.standard_normal((filters, x_shape[1], *kernel))
    b = rng.standard_normal(filters)
    work = Workspace()
    y, cache = conv2d(x, W, b, stride, padding, work)
    assert isinstance(cache, SampleColumns if layout == "sample-columns" else PixelRows)
    dy = rng.standard_normal(y.shape)
    dW, db = np.full_like(W, np.nan), np.full_like(b, np.nan)
    dx = conv2d_backward(dy, cache, W, dW, db, stride, padding, work)
    expected = reference_conv(x, W, b, stride, padding, dy)
    for got, want in zip((y, dW, db, dx), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # without a bias and without the input gradient
    y0, cache = conv2d(x, W, None, stride, padding, work)
    np.testing.assert_allclose(y0, y - b[:, None, None], rtol=1e-12, atol=1e-12)
    assert conv2d_backward(dy, cache, W, dW, None, stride, padding, work, input_grad=False) is None


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv2d_kernels_accept_views_and_keep_float32(monkeypatch, layout):
    monkeypatch.setattr(conv, "SAMPLE_COLUMNS_MAX_K", LAYOUTS[layout])
    monkeypatch.setattr(conv, "winograd_applies", lambda *args: False)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 7, 6)).astype(np.float32)[::2, :, ::-1]
    W = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    b = np.zeros(2, np.float32)
    y, cache = conv2d(x, W, b, (1, 1), ((1, 1), (1, 1)), Workspace())
    assert y.dtype == np.float32
    expected = reference_conv(np.ascontiguousarray(x, np.float64), W.astype(np.float64),
                              b.astype(np.float64), (1, 1), ((1, 1), (1, 1)),
                              np.zeros((2, 2, 7, 6)))[0]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


# (x shape, filters, groups, kernel, stride, padding): depthwise (one and two filters per
# channel), groups of two and of four channels; valid, padded, strided, asymmetric, and
# an offset that reads padding only
GROUPED = [
    ((2, 3, 5, 4), 3, 3, (3, 3), (1, 1), ((0, 0), (0, 0))),
    ((2, 2, 6, 7), 4, 2, (3, 2), (2, 3), ((1, 1), (0, 2))),
    ((1, 2, 4, 4), 2, 2, (5, 5), (1, 1), ((2, 2), (2, 2))),
    ((2, 4, 6, 5), 6, 2, (3, 3), (2, 1), ((1, 0), (1, 1))),
    ((3, 8, 5, 6), 4, 2, (3, 3), (1, 2), ((1, 1), (1, 1))),
    ((1, 4, 5, 5), 2, 2, (3, 3), (3, 3), ((2, 2), (2, 2))),
]


def reference_grouped_conv(x, W, b, groups, stride, padding, dy):
    """The derivation's sums (reference_conv) on each group's channels and filters."""
    cg, fg = x.shape[1] // groups, W.shape[0] // groups
    parts = [reference_conv(x[:, g * cg:(g + 1) * cg], W[g * fg:(g + 1) * fg],
                            b[g * fg:(g + 1) * fg], stride, padding, dy[:, g * fg:(g + 1) * fg])
             for g in range(groups)]
    return tuple(np.concatenate(arrays, axis=axis)
                 for arrays, axis in zip(zip(*parts, strict=True), (1, 0, 0, 1), strict=True))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("x_shape", "filters", "groups", "kernel", "stride", "padding"),
                         GROUPED)
def test_grouped_conv2d_kernels_match_the_derivation(monkeypatch, layout, x_shape, filters,
                                                     groups, kernel, stride, padding):
    monkeypatch.setattr(conv, "SAMPLE_COLUMNS_MAX_K", LAYOUTS[layout])
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape)
    W = rng.standard_normal((filters, x_shape[1] // groups, *kernel))
    b = rng.standard_normal(filters)
    work = [Workspace() for _ in range(groups)]
    y, cache = grouped_conv2d(x, W, b, groups, stride, padding, work)
    depthwise = x_shape[1] == groups
    assert isinstance(cache, DepthwiseInput if depthwise else GroupCaches)
    dy = rng.standard_normal(y.shape)
    dW, db = np.full_like(W, np.nan), np.full_like(b, np.nan)
    dx = grouped_conv2d_backward(dy, cache, W, dW, db, groups, stride, padding, work)
    expected = reference_grouped_conv(x, W, b, groups, stride, padding, dy)
    for got, want in zip((y, dW, db, dx), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # without a bias and without the input gradient
    y0, cache = grouped_conv2d(x, W, None, groups, stride, padding, work)
    np.testing.assert_allclose(y0, y - b[:, None, None], rtol=1e-12, atol=1e-12)
    dW[...] = np.nan
    assert grouped_conv2d_backward(dy, cache, W, dW, None, groups, stride, padding, work,
                                   input_grad=False) is None
    np.testing.assert_allclose(dW, expected[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_conv2d_kernels_accept_views_and_keep_float32(groups):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 4, 7, 6)).astype(np.float32)[::2, :, ::-1]
    W = rng.standard_normal((4, 4 // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    dy = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)[..., ::-1]
    work = [Workspace() for _ in range(groups)]
    y, cache = grouped_conv2d(x, W, b, groups, (1, 1), ((1, 1), (1, 1)), work)
    dW, db = np.empty_like(W), np.empty_like(b)
    dx = grouped_conv2d_backward(dy, cache, W, dW, db, groups, (1, 1), ((1, 1), (1, 1)), work)
    assert y.dtype == dW.dtype == db.dtype == dx.dtype == np.float32
    expected = reference_grouped_conv(np.asarray(x, np.float64), W.astype(np.float64),
                                      b.astype(np.float64), groups, (1, 1), ((1, 1), (1, 1)),
                                      np.asarray(dy, np.float64))
    for got, want in zip((y, dW, db, dx), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_workspace_reuses_a_buffer_until_shape_or_dtype_changes():
    work = Workspace()
    a = work.get("cols", (2, 3), np.float32)
    assert work.get("cols", (2, 3), np.float32) is a
    b = work.get("cols", (4, 3), np.float32)
    assert b is not a and b.shape == (4, 3)
    c = work.get("cols", (4, 3), np.float64)
    assert c is not b and c.dtype == np.float64
    assert len(work) == 1
    work.get("other", (1,), np.float32)
    assert len(work) == 2
    work.clear()
    assert len(work) == 0


def test_workspace_copies_start_empty():
    work = Workspace()
    work.get("cols", (1000,), np.float32)
    assert len(copy.deepcopy(work)) == 0
    assert len(pickle.loads(pickle.dumps(work))) == 0


# (x shape, pool, stride): tiling 2x2 (the compiled fast path) with odd edges, overlapping,
# gapped and rectangular windows (the general loops)
POOLS = [
    ((2, 3, 6, 8), (2, 2), (2, 2)),
    ((2, 2, 7, 5), (2, 2), (2, 2)),
    ((1, 2, 7, 6), (3, 3), (2, 2)),
    ((2, 1, 7, 8), (2, 2), (3, 3)),
    ((1, 2, 4, 7), (2, 3), (1, 3)),
    ((1, 1, 5, 5), (1, 1), (1, 1)),
]


def reference_pool(x, pool, stride):
    """Windows stacked on a last axis: first maximum and its row-major offset."""
    n, c, h, w = x.shape
    h_out, w_out = conv_output_size(h, pool[0], stride[0]), conv_output_size(w, pool[1], stride[1])
    windows = np.stack([x[:, :, i : i + stride[0] * (h_out - 1) + 1 : stride[0],
                          j : j + stride[1] * (w_out - 1) + 1 : stride[1]]
                        for i in range(pool[0]) for j in range(pool[1])], axis=-1)
    return windows.max(axis=-1), windows.argmax(axis=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "pool", "stride"), POOLS)
def test_max_pool_matches_reference_with_ties(x_shape, pool, stride, dtype):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, x_shape).astype(dtype)  # many ties
    y, winner = max_pool(x, pool, stride)
    y_ref, winner_ref = reference_pool(x, pool, stride)
    assert y.dtype == dtype and winner.dtype == winner_dtype(pool)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(winner, winner_ref)


@pytest.mark.parametrize(("x_shape", "pool", "stride"), POOLS)
def test_max_pool_backward_routes_dy_to_the_winners(x_shape, pool, stride):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, x_shape).astype(np.float64)
    _, winner = max_pool(x, pool, stride)
    dy = rng.standard_normal(winner.shape)
    expected = np.zeros(x_shape)
    n, c, p, q = np.indices(winner.shape)
    np.add.at(expected, (n, c, p * stride[0] + winner // pool[1],
                         q * stride[1] + winner % pool[1]), dy)
    out = max_pool_backward(dy, winner, x_shape, pool, stride)
    np.testing.assert_array_equal(out, expected)


def test_max_pool_fast_path_equals_the_general_loops():
    from lamina.kernels.jit import run

    rng = np.random.default_rng(6)
    x = rng.integers(0, 4, (3, 4, 9, 10)).astype(np.float32)
    fast = max_pool(x, (2, 2), (2, 2))
    y, winner = np.empty_like(fast.y), np.empty_like(fast.winner)
    run("max_pool", x, 2, 2, 2, 2, y, winner)
    np.testing.assert_array_equal(fast.y, y)
    np.testing.assert_array_equal(fast.winner, winner)


@pytest.mark.parametrize(("pool", "stride"), [((2, 2), (2, 2)), ((3, 2), (1, 2))])
def test_max_pool_a_nan_wins_its_window(pool, stride):
    x = np.arange(1.0, 1.0 + 2 * 6 * 6).reshape(1, 2, 6, 6)
    x[0, 0, 1, 0] = np.nan  # first pool window of channel 0, not its maximum by position
    y, winner = max_pool(x, pool, stride)
    assert np.isnan(y[0, 0, 0, 0])
    assert np.isfinite(y[0, 1]).all()
    assert x[0, 0].ravel()[winner[0, 0, 0, 0] // pool[1] * 6 + winner[0, 0, 0, 0] % pool[1]] != 1


def test_max_pool_accepts_views_and_reuses_the_winner_buffer():
    x = np.random.default_rng(7).standard_normal((4, 2, 8, 8))[::2, :, ::-1]
    buffer = np.empty((2, 2, 4, 4), np.uint8)
    y, winner = max_pool(x, (2, 2), (2, 2), winner=buffer)
    assert winner is buffer
    np.testing.assert_array_equal(y, reference_pool(np.ascontiguousarray(x), (2, 2), (2, 2))[0])


def test_missing_numba_is_a_kernel_error_with_the_fix(monkeypatch):
    import sys

    from lamina import KernelError
    from lamina.kernels import jit

    monkeypatch.setattr(jit, "_loops", None)
    monkeypatch.delitem(sys.modules, "lamina.kernels._loops", raising=False)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    with pytest.raises(KernelError, match=r"need Numba.*pip install 'numba>=0\.61'"):
        max_pool(np.zeros((1, 1, 2, 2)), (2, 2), (2, 2))


def test_failed_compile_is_a_kernel_error_naming_the_kernel():
    from lamina import KernelError

    # object arrays cannot be compiled: Numba's typing error becomes a one-line message
    x = np.zeros((1, 1, 4, 4), dtype=object)
    with pytest.raises(KernelError, match=r"Numba failed to compile lamina's kernel "
                                          r"max_pool_2x2 for \(object"):
        max_pool(x, (2, 2), (2, 2))


# (x shape, pool, stride, padding): the compiled 2x2 loop (even and cropped odd sizes)
# and the NumPy slices with paddings "same" never makes (wider on top, on one side only)
AVG_POOLS = [
    ((2, 3, 6, 8), (2, 2), (2, 2), ((0, 0), (0, 0))),
    ((2, 3, 7, 5), (2, 2), (2, 2), ((0, 0), (0, 0))),
    ((2, 2, 7, 5), (2, 2), (2, 2), ((1, 0), (0, 1))),
    ((1, 2, 5, 6), (3, 3), (1, 1), ((2, 1), (0, 2))),
    ((2, 1, 7, 7), (3, 2), (2, 3), ((1, 1), (1, 0))),
    ((1, 1, 4, 4), (2, 2), (3, 3), ((0, 0), (0, 0))),
]


def reference_avg_pool(x, pool, stride, padding, dy):
    """Window by window: the mean of the entries inside the image, dy / count back."""
    (ph, pw), (sh, sw), ((top, bottom), (left, right)) = pool, stride, padding
    h, w = x.shape[2:]
    h_out = (h + top + bottom - ph) // sh + 1
    w_out = (w + left + right - pw) // sw + 1
    y = np.zeros((*x.shape[:2], h_out, w_out))
    dx = np.zeros(x.shape)
    for p in range(h_out):
        for q in range(w_out):
            rows = slice(max(p * sh - top, 0), min(p * sh - top + ph, h))
            cols = slice(max(q * sw - left, 0), min(q * sw - left + pw, w))
            count = (rows.stop - rows.start) * (cols.stop - cols.start)
            y[:, :, p, q] = x[:, :, rows, cols].sum(axis=(2, 3)) / count
            dx[:, :, rows, cols] += (dy[:, :, p, q] / count)[:, :, None, None]
    return y, dx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "pool", "stride", "padding"), AVG_POOLS)
def test_avg_pool_leaves_the_padding_out_of_each_average(x_shape, pool, stride, padding, dtype):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(x_shape).astype(dtype)
    y = avg_pool(x, pool, stride, padding)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = avg_pool_backward(dy, x_shape, pool, stride, padding)
    y_ref, dx_ref = reference_avg_pool(x.astype(np.float64), pool, stride, padding,
                                       dy.astype(np.float64))
    assert y.dtype == dx.dtype == dtype and dx.shape == x_shape
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol)


def test_avg_pool_accepts_views():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 2, 8, 9))[::2, :, ::-1]
    for padding in (((0, 0), (0, 0)), ((1, 1), (0, 1))):
        y = avg_pool(x, (2, 2), (2, 2), padding)
        np.testing.assert_array_equal(y, avg_pool(x.copy(), (2, 2), (2, 2), padding))
        dy = rng.standard_normal(y.shape[::-1]).T  # a Fortran-order view
        np.testing.assert_array_equal(avg_pool_backward(dy, x.shape, (2, 2), (2, 2), padding),
                                      avg_pool_backward(dy.copy(), x.shape, (2, 2), (2, 2),
                                                        padding))
