"""Winograd F(2x2, 3x3) and the convolutions that end in their 2x2 max pool, against the
direct formulas in float64:

    y[n, f, p, q]  = b[f] + sum_{c, i, j} W[f, c, i, j] * xpad[n, c, p*sh + i, q*sw + j]
    dx[n, c, h, w] = sum_{f, i, j} dy[n, f, h + top - i, w + left - j] * W[f, c, i, j]

(lamina.kernels.winograd, lamina.kernels.fused, and conv2d's choice of them)."""

import signal
from contextlib import contextmanager

import numpy as np
import pytest

import lamina.kernels.conv as conv
import lamina.kernels.fused as fused
from lamina.kernels import (
    SAMPLE_COLUMNS_MAX_K,
    Pooled,
    Workspace,
    conv2d,
    conv2d_backward,
    conv2d_max_pool,
    conv2d_max_pool_backward,
    max_pool,
    max_pool_backward,
    winner_dtype,
    winograd_applies,
    winograd_conv2d,
    winograd_input_grad,
    winograd_input_grad_applies,
)
from lamina.kernels.conv import Deferred
from lamina.kernels.winograd import CHUNK, _plane_rows

VALID = ((0, 0), (0, 0))
SAME = ((1, 1), (1, 1))
ASYMMETRIC = ((0, 1), (2, 1))
POOL = ((2, 2), (2, 2))


# ---------------------------------------------------------------------------------------
# references, written from the formulas (float64, NaN propagating: einsum without BLAS)


def reference_conv(x, W, b, stride=(1, 1), padding=VALID):
    """y = b + the cross-correlation of zero-padded x with W, in float64."""
    x, W = np.asarray(x, np.float64), np.asarray(W, np.float64)
    xp = np.pad(x, ((0, 0), (0, 0), *padding))
    (kh, kw), (sh, sw) = W.shape[2:], stride
    h_out, w_out = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    patches = np.stack([np.stack([xp[:, :, i:i + sh * (h_out - 1) + 1:sh,
                                     j:j + sw * (w_out - 1) + 1:sw] for j in range(kw)], axis=2)
                        for i in range(kh)], axis=2)  # (N, C, kh, kw, H', W')
    y = np.einsum("fcij,ncijpq->nfpq", W, patches)
    if b is not None:
        y += np.asarray(b, np.float64)[:, None, None]
    return y


def reference_input_grad(dy, W, padding, x_hw):
    """dx of a stride-1 convolution: only the terms whose dy index is inside dy."""
    dy, W = np.asarray(dy, np.float64), np.asarray(W, np.float64)
    (top, _), (left, _) = padding
    (h, w), (h_out, w_out) = x_hw, dy.shape[2:]
    dx = np.zeros((dy.shape[0], W.shape[1], h, w))
    for i in range(W.shape[2]):
        h0, h1 = max(0, i - top), min(h, h_out + i - top)
        for j in range(W.shape[3]):
            w0, w1 = max(0, j - left), min(w, w_out + j - left)
            if h1 > h0 and w1 > w0:
                dx[:, :, h0:h1, w0:w1] += np.einsum(
                    "fc,nfhw->nchw", W[:, :, i, j],
                    dy[:, :, h0 + top - i:h1 + top - i, w0 + left - j:w1 + left - j])
    return dx


def reference_backward(x, W, dy, stride, padding):
    """dW, db, dx of any convolution: each dy entry times its receptive field, and back."""
    x, W, dy = (np.asarray(a, np.float64) for a in (x, W, dy))
    xp = np.pad(x, ((0, 0), (0, 0), *padding))
    dxp = np.zeros_like(xp)
    (kh, kw), (sh, sw), (h_out, w_out) = W.shape[2:], stride, dy.shape[2:]
    dW = np.empty_like(W)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * (h_out - 1) + 1, sh)
            cols = slice(j, j + sw * (w_out - 1) + 1, sw)
            dW[:, :, i, j] = np.einsum("nfpq,ncpq->fc", dy, xp[:, :, rows, cols])
            dxp[:, :, rows, cols] += np.einsum("fc,nfpq->ncpq", W[:, :, i, j], dy)
    (top, _), (left, _) = padding
    dx = dxp[:, :, top:top + x.shape[2], left:left + x.shape[3]]
    return dW, dy.sum(axis=(0, 2, 3)), dx


def assert_close(got, want, rtol):
    """Equal within ``rtol`` relative to each entry or to the largest entry of ``want``."""
    scale = np.nanmax(np.abs(want)) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def integers(rng, low, high, shape):
    return rng.integers(low, high + 1, shape).astype(np.float64)


def has_ties(pooled_input):
    """Whether some 2x2 window of the conv output holds its maximum twice (so the test
    of the winners sees the tie rule at work)."""
    h, w = pooled_input.shape[2] // 2 * 2, pooled_input.shape[3] // 2 * 2
    windows = pooled_input[:, :, :h, :w].reshape(*pooled_input.shape[:2], h // 2, 2, w // 2, 2)
    top = windows.max(axis=(3, 5), keepdims=True)
    return bool(((windows == top).sum(axis=(3, 5)) > 1).any())


# ---------------------------------------------------------------------------------------
# 1. winograd_conv2d against the direct sum

# (N, C, F, H, W, padding, bias): valid, same and asymmetric padding; odd and even
# output sizes (a partial last tile); one sample, one chunk, chunk boundaries crossed
WINOGRAD_CASES = [
    (1, 4, 3, 6, 6, VALID, True),          # 4x4 out: whole tiles
    (1, 4, 3, 7, 8, SAME, True),           # 7x8 out: partial last tile row
    (CHUNK, 4, 3, 6, 7, ASYMMETRIC, False),  # 5x8 out, no bias
    (CHUNK + 3, 32, 64, 9, 9, SAME, True),   # 9x9 out, two chunks (8 + 3)
    (2 * CHUNK + 1, 5, 7, 6, 5, ((2, 2), (0, 2)), True),  # 8x5, three chunks (8 + 8 + 1)
    (3, 32, 64, 13, 13, VALID, False),       # 11x11 out, the reference layer's shape
]


@pytest.mark.parametrize(("n", "c", "f", "h", "w", "padding", "bias"), WINOGRAD_CASES)
def test_winograd_conv2d_matches_the_direct_sum(n, c, f, h, w, padding, bias):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((n, c, h, w))
    W = rng.standard_normal((f, c, 3, 3))
    b = rng.standard_normal(f) if bias else None
    want = reference_conv(x, W, b, padding=padding)
    work = Workspace()
    y = winograd_conv2d(x, W, b, padding, work)
    assert y.shape == want.shape and y.dtype == np.float64
    assert_close(y, want, 1e-12)
    y32 = winograd_conv2d(x.astype(np.float32), W.astype(np.float32),
                          None if b is None else b.astype(np.float32), padding, work)
    assert y32.shape == want.shape and y32.dtype == np.float32
    assert_close(y32, want, 1e-5)


def test_winograd_conv2d_accepts_a_view():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 5, 9, 8))[::2, :, ::-1]
    W = rng.standard_normal((3, 5, 3, 3))
    assert_close(winograd_conv2d(x, W, None, SAME, Workspace()),
                 reference_conv(np.ascontiguousarray(x), W, None, padding=SAME), 1e-12)


# ---------------------------------------------------------------------------------------
# 2. pool=True: the 2x2 max pool of the convolution, winners as max_pool chooses them

# (N, C, F, H, W, padding): even and odd conv outputs (floor drops a row / a column)
POOL_CASES = [
    (2, 4, 3, 6, 6, VALID),                 # 4x4 -> 2x2
    (CHUNK + 3, 5, 4, 7, 8, SAME),          # 7x8 -> 3x4: last row dropped
    (2 * CHUNK + 1, 4, 6, 6, 7, ASYMMETRIC),  # 5x8 -> 2x4
    (3, 32, 16, 9, 10, ((2, 1), (1, 0))),   # 10x9 -> 5x4: last column dropped
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n", "c", "f", "h", "w", "padding"), POOL_CASES)
def test_winograd_pool_equals_max_pool_of_the_conv_on_integers(n, c, f, h, w, padding, dtype):
    rng = np.random.default_rng(12)
    x, W, b = integers(rng, -3, 3, (n, c, h, w)), integers(rng, -2, 2, (f, c, 3, 3)), \
        integers(rng, -2, 2, f)
    conv_out = reference_conv(x, W, b, padding=padding)
    assert has_ties(conv_out)
    want = max_pool(conv_out, *POOL)
    got = winograd_conv2d(x.astype(dtype), W.astype(dtype), b.astype(dtype), padding,
                          Workspace(), pool=True)
    assert isinstance(got, Pooled)
    assert got.y.dtype == dtype and got.winner.dtype == winner_dtype((2, 2))
    np.testing.assert_array_equal(got.y, want.y)
    np.testing.assert_array_equal(got.winner, want.winner)


@pytest.mark.parametrize(("n", "c", "f", "h", "w", "padding"), POOL_CASES)
def test_winograd_pool_equals_max_pool_of_the_conv_on_floats(n, c, f, h, w, padding):
    rng = np.random.default_rng(13)
    x, W = rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, 3, 3))
    b = rng.standard_normal(f)
    want = max_pool(reference_conv(x, W, b, padding=padding), *POOL)
    got = winograd_conv2d(x, W, b, padding, Workspace(), pool=True)
    assert_close(got.y, want.y, 1e-12)
    np.testing.assert_array_equal(got.winner, want.winner)
    got32 = winograd_conv2d(x.astype(np.float32), W.astype(np.float32), b.astype(np.float32),
                            padding, Workspace(), pool=True)
    assert_close(got32.y, want.y, 1e-5)


def nan_input(rng, shape):
    """Small integers with NaNs at a tile's corner, edge and interior, on the image border,
    and two in one window; the rest exact."""
    x = integers(rng, -3, 3, shape)
    n, c, h, w = shape
    for s, ch, r, q in [(0, 0, 0, 0), (0, 1, 1, 2), (1, 0, 3, 3), (1, 2, h - 1, w - 1),
                        (2, 0, 2, 5), (2, 0, 3, 5), (2, 3, h - 2, 0)]:
        x[s % n, ch % c, r, q] = np.nan
    return x


def test_winograd_pool_nan_wins_where_max_pool_of_the_conv_has_it():
    rng = np.random.default_rng(14)
    x = nan_input(rng, (3, 4, 9, 10))
    W, b = integers(rng, -2, 2, (5, 4, 3, 3)), integers(rng, -2, 2, 5)
    for padding in (VALID, SAME, ASYMMETRIC):
        want = max_pool(reference_conv(x, W, b, padding=padding), *POOL)
        assert np.isnan(want.y).any() and not np.isnan(want.y).all()
        for dtype in (np.float64, np.float32):
            got = winograd_conv2d(x.astype(dtype), W.astype(dtype), b.astype(dtype), padding,
                                  Workspace(), pool=True)
            np.testing.assert_array_equal(np.isnan(got.y), np.isnan(want.y))
            np.testing.assert_array_equal(got.y, want.y)  # NaNs in the same places
            np.testing.assert_array_equal(got.winner, want.winner)


# ---------------------------------------------------------------------------------------
# 3. winograd_input_grad against the adjoint sum


@pytest.mark.parametrize(("n", "c", "f", "h", "w", "padding"), [
    (2, 4, 5, 6, 7, VALID),
    (CHUNK + 1, 6, 4, 7, 8, SAME),
    (3, 32, 16, 9, 6, ((2, 1), (1, 2))),
    (1, 5, 6, 5, 5, ((2, 2), (2, 2))),
    (2, 4, 3, 8, 5, ASYMMETRIC),
])
def test_winograd_input_grad_matches_the_adjoint_sum(n, c, f, h, w, padding):
    rng = np.random.default_rng(15)
    (top, bottom), (left, right) = padding
    W = rng.standard_normal((f, c, 3, 3))
    dy = rng.standard_normal((n, f, h + top + bottom - 2, w + left + right - 2))
    want = reference_input_grad(dy, W, padding, (h, w))
    dx = winograd_input_grad(dy, W, padding, Workspace())
    assert dx.shape == (n, c, h, w) and dx.dtype == np.float64
    assert_close(dx, want, 1e-12)
    dx32 = winograd_input_grad(dy.astype(np.float32), W.astype(np.float32), padding, Workspace())
    assert dx32.dtype == np.float32
    assert_close(dx32, want, 1e-5)


def test_input_grad_reference_is_the_adjoint_of_the_conv_reference():
    """<conv(x), dy> = <x, dx(dy)>: the two references agree with each other."""
    rng = np.random.default_rng(16)
    x, W = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3))
    for padding in (VALID, SAME, ASYMMETRIC):
        y = reference_conv(x, W, None, padding=padding)
        dy = rng.standard_normal(y.shape)
        dx = reference_input_grad(dy, W, padding, x.shape[2:])
        assert np.isclose(np.vdot(y, dy), np.vdot(x, dx), rtol=1e-12)
        np.testing.assert_allclose(reference_backward(x, W, dy, (1, 1), padding)[2], dx,
                                   rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------
# 4. conv2d / conv2d_backward when they choose Winograd


@pytest.fixture
def calls(monkeypatch):
    """Count the Winograd calls conv2d and conv2d_backward make."""
    counts = {"forward": 0, "input_grad": 0}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(conv, "winograd_conv2d", counting("forward", conv.winograd_conv2d))
    monkeypatch.setattr(conv, "winograd_input_grad",
                        counting("input_grad", conv.winograd_input_grad))
    return counts


@pytest.mark.parametrize(("padding", "winograd_dx"), [
    (SAME, True), (((2, 1), (1, 2)), True), (VALID, False), (ASYMMETRIC, False),
])
def test_conv2d_with_winograd_matches_the_reference(calls, padding, winograd_dx):
    rng = np.random.default_rng(17)
    x = rng.standard_normal((CHUNK + 2, 4, 7, 6))
    W, b = rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    stride = (1, 1)
    assert winograd_applies(W.shape, stride, padding)
    assert winograd_input_grad_applies(W.shape, stride, padding) == winograd_dx
    work = Workspace()
    y, cache = conv2d(x, W, b, stride, padding, work)
    assert isinstance(cache, Deferred) and cache.has_bias
    assert calls == {"forward": 1, "input_grad": 0}
    assert_close(y, reference_conv(x, W, b, stride, padding), 1e-12)
    dy = rng.standard_normal(y.shape)
    dW_want, db_want, dx_want = reference_backward(x, W, dy, stride, padding)
    dW, db = np.full_like(W, np.nan), np.full_like(b, np.nan)
    dx = conv2d_backward(dy, cache, W, dW, db, stride, padding, work)
    assert calls["input_grad"] == int(winograd_dx)
    assert dx.shape == x.shape
    for got, want in ((dW, dW_want), (db, db_want), (dx, dx_want)):
        assert_close(got, want, 1e-12)
    dW[...], db[...] = np.nan, np.nan
    assert conv2d_backward(dy, cache, W, dW, db, stride, padding, work, input_grad=False) is None
    assert_close(dW, dW_want, 1e-12)
    assert_close(db, db_want, 1e-12)
    # without a bias
    y0, cache0 = conv2d(x, W, None, stride, padding, work)
    assert isinstance(cache0, Deferred) and not cache0.has_bias
    assert_close(y0, reference_conv(x, W, None, stride, padding), 1e-12)
    dW[...] = np.nan
    assert conv2d_backward(dy, cache0, W, dW, None, stride, padding, work,
                           input_grad=False) is None
    assert_close(dW, dW_want, 1e-12)


# ---------------------------------------------------------------------------------------
# 5. when Winograd applies


@pytest.mark.parametrize(("weights", "stride", "padding", "forward", "input_grad"), [
    ((8, 4, 3, 3), (1, 1), SAME, True, True),
    ((8, 4, 3, 3), (1, 1), VALID, True, False),            # dx by Winograd needs p >= 1
    ((8, 4, 3, 3), (1, 1), ((1, 1), (1, 0)), True, False),  # ... on every side
    ((8, 4, 3, 3), (1, 1), ((2, 2), (2, 2)), True, True),
    ((8, 4, 3, 3), (1, 1), ((3, 1), (1, 1)), False, False),  # more than 2 zeros
    ((8, 4, 3, 3), (1, 1), ((1, 1), (1, 3)), False, False),
    ((8, 3, 3, 3), (1, 1), SAME, False, False),    # C*9 = 27 <= SAMPLE_COLUMNS_MAX_K
    ((3, 8, 3, 3), (1, 1), SAME, True, False),     # dy has F*9 = 27 channel rows
    ((8, 4, 3, 3), (2, 2), SAME, False, False),    # stride 2
    ((8, 4, 3, 3), (1, 2), SAME, False, False),
    ((8, 4, 5, 5), (1, 1), SAME, False, False),    # 5x5
    ((8, 16, 3, 1), (1, 1), SAME, False, False),   # 3x1
    ((8, 16, 1, 3), (1, 1), SAME, False, False),
    ((8, 16, 2, 2), (1, 1), ((0, 1), (0, 1)), False, False),
])
def test_winograd_applies_as_documented(weights, stride, padding, forward, input_grad):
    assert SAMPLE_COLUMNS_MAX_K == 32
    assert winograd_applies(weights, stride, padding) is forward
    assert winograd_input_grad_applies(weights, stride, padding) is input_grad


# ---------------------------------------------------------------------------------------
# 6. conv2d_max_pool and its backward on each of its three paths

# (path, x shape, filters, kernel, stride, padding)
FUSED_CASES = [
    ("winograd", (CHUNK + 1, 4, 7, 9), 5, (3, 3), (1, 1), SAME),
    ("winograd", (3, 6, 8, 7), 3, (3, 3), (1, 1), ASYMMETRIC),
    ("winograd", (2, 4, 6, 6), 4, (3, 3), (1, 1), VALID),
    ("single-channel", (3, 1, 9, 8), 6, (3, 3), (1, 1), VALID),
    ("single-channel", (2, 1, 7, 7), 4, (3, 3), (1, 1), SAME),
    ("single-channel", (2, 1, 6, 9), 3, (3, 3), (1, 1), ((2, 0), (0, 1))),
    ("direct", (2, 3, 8, 7), 4, (3, 3), (1, 1), SAME),
    ("direct", (2, 2, 7, 9), 3, (2, 2), (1, 1), ((0, 1), (0, 1))),
    ("direct", (3, 2, 9, 8), 5, (4, 4), (1, 1), ((1, 2), (1, 2))),  # C*kh*kw = 32 exactly
    ("direct", (2, 3, 7, 8), 2, (3, 3), (1, 1), ((2, 2), (0, 1))),
    ("fallback", (2, 3, 9, 9), 4, (3, 3), (2, 2), SAME),     # stride 2
    ("fallback", (2, 8, 9, 10), 4, (5, 5), (1, 1), ((2, 2), (2, 2))),  # 5x5, C*25 > 32
    ("fallback", (2, 4, 5, 6), 3, (3, 3), (1, 1), ((3, 3), (1, 1))),  # padding 3
]
FUSED_IDS = [f"{case[0]}-{i}" for i, case in enumerate(FUSED_CASES)]


@pytest.fixture
def route(monkeypatch):
    """Record which path conv2d_max_pool took."""
    taken = []

    def spy(label, function):
        def wrapper(*args, **kwargs):
            if label(args) is not None:  # run's other loops (channels_first) are no path
                taken.append(label(args))
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(fused, "winograd_conv2d",
                        spy(lambda args: "winograd", fused.winograd_conv2d))
    monkeypatch.setattr(fused, "conv2d", spy(lambda args: "fallback", fused.conv2d))
    names = {"conv3x3_pool_single_channel": "single-channel", "direct_conv_pool": "direct"}
    monkeypatch.setattr(fused, "run", spy(lambda args: names.get(args[0]), fused.run))
    return taken


def fused_inputs(rng, x_shape, filters, kernel, dtype, as_integers):
    w_shape = (filters, x_shape[1], *kernel)
    if as_integers:
        return (integers(rng, -3, 3, x_shape).astype(dtype),
                integers(rng, -2, 2, w_shape).astype(dtype),
                integers(rng, -2, 2, filters).astype(dtype))
    return (rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype),
            rng.standard_normal(filters).astype(dtype))


def fused_backward_reference(x, W, dy, winner, conv_shape, stride, padding):
    """dy routed to the winners (max_pool_backward), then the convolution's backward."""
    d_conv = max_pool_backward(np.asarray(dy, np.float64), winner, conv_shape, *POOL)
    return reference_backward(x, W, d_conv, stride, padding)


@pytest.mark.parametrize(("path", "x_shape", "filters", "kernel", "stride", "padding"),
                         FUSED_CASES, ids=FUSED_IDS)
def test_conv2d_max_pool_on_integers_is_exact(route, path, x_shape, filters, kernel, stride,
                                              padding):
    rng = np.random.default_rng(18)
    x, W, b = fused_inputs(rng, x_shape, filters, kernel, np.float64, True)
    conv_out = reference_conv(x, W, b, stride, padding)
    want = max_pool(conv_out, *POOL)
    assert has_ties(conv_out)
    work = Workspace()
    y, cache = conv2d_max_pool(x, W, b, stride, padding, work)
    assert route == [path]
    assert cache.conv_shape == conv_out.shape
    np.testing.assert_array_equal(y, want.y)
    np.testing.assert_array_equal(cache.winner, want.winner)
    dy = integers(rng, -3, 3, y.shape)
    dW_want, db_want, dx_want = fused_backward_reference(x, W, dy, want.winner, conv_out.shape,
                                                         stride, padding)
    dW, db = np.full_like(W, np.nan), np.full_like(b, np.nan)
    dx = conv2d_max_pool_backward(dy, cache, W, dW, db, stride, padding, work)
    np.testing.assert_array_equal(dW, dW_want)
    np.testing.assert_array_equal(db, db_want)
    np.testing.assert_array_equal(dx, dx_want)
    # float32: the same integers, the same sums
    x32, W32, b32 = x.astype(np.float32), W.astype(np.float32), b.astype(np.float32)
    y32, cache32 = conv2d_max_pool(x32, W32, b32, stride, padding, Workspace())
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(y32, want.y)
    np.testing.assert_array_equal(cache32.winner, want.winner)


@pytest.mark.parametrize(("path", "x_shape", "filters", "kernel", "stride", "padding"),
                         FUSED_CASES, ids=FUSED_IDS)
def test_conv2d_max_pool_and_backward_match_the_reference(route, path, x_shape, filters, kernel,
                                                          stride, padding):
    rng = np.random.default_rng(19)
    x, W, b = fused_inputs(rng, x_shape, filters, kernel, np.float64, False)
    conv_out = reference_conv(x, W, b, stride, padding)
    want = max_pool(conv_out, *POOL)
    work = Workspace()
    y, cache = conv2d_max_pool(x, W, b, stride, padding, work)
    assert route == [path]
    assert_close(y, want.y, 1e-12)
    np.testing.assert_array_equal(cache.winner, want.winner)
    dy = rng.standard_normal(y.shape)
    expected = fused_backward_reference(x, W, dy, want.winner, conv_out.shape, stride, padding)
    dW, db = np.full_like(W, np.nan), np.full_like(b, np.nan)
    dx = conv2d_max_pool_backward(dy, cache, W, dW, db, stride, padding, work)
    for got, wanted in zip((dW, db, dx), expected, strict=True):
        assert_close(got, wanted, 1e-12)
    dW[...], db[...] = np.nan, np.nan
    assert conv2d_max_pool_backward(dy, cache, W, dW, db, stride, padding, work,
                                    input_grad=False) is None
    assert_close(dW, expected[0], 1e-12)
    assert_close(db, expected[1], 1e-12)
    # float32 against the float64 sums (the backward through float32's own winners)
    x32, W32, b32, dy32 = (a.astype(np.float32) for a in (x, W, b, dy))
    y32, cache32 = conv2d_max_pool(x32, W32, b32, stride, padding, Workspace())
    assert y32.dtype == np.float32
    assert_close(y32, want.y, 1e-5)
    dW32, db32 = np.empty_like(W32), np.empty_like(b32)
    dx32 = conv2d_max_pool_backward(dy32, cache32, W32, dW32, db32, stride, padding,
                                    Workspace())
    assert dW32.dtype == db32.dtype == dx32.dtype == np.float32
    expected32 = fused_backward_reference(x, W, dy32, cache32.winner, conv_out.shape, stride,
                                          padding)
    for got, wanted in zip((dW32, db32, dx32), expected32, strict=True):
        assert_close(got, wanted, 1e-5)


@pytest.mark.parametrize(("path", "x_shape", "filters", "kernel", "stride", "padding"),
                         [case for case in FUSED_CASES if case[4] == (1, 1)][::2])
def test_conv2d_max_pool_nan_wins_as_max_pool_of_the_conv(route, path, x_shape, filters, kernel,
                                                          stride, padding):
    rng = np.random.default_rng(20)
    x = nan_input(rng, x_shape)
    W, b = integers(rng, -2, 2, (filters, x_shape[1], *kernel)), integers(rng, -2, 2, filters)
    want = max_pool(reference_conv(x, W, b, stride, padding), *POOL)
    assert np.isnan(want.y).any()
    y, cache = conv2d_max_pool(x, W, b, stride, padding, Workspace())
    assert route == [path]
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want.y))
    np.testing.assert_array_equal(y, want.y)
    np.testing.assert_array_equal(cache.winner, want.winner)


def test_conv2d_max_pool_without_bias():
    rng = np.random.default_rng(21)
    for x_shape, kernel, stride in [((2, 4, 6, 7), (3, 3), (1, 1)), ((2, 1, 6, 7), (3, 3), (1, 1)),
                                    ((2, 2, 6, 7), (2, 2), (1, 1)), ((2, 2, 7, 7), (3, 3), (2, 2))]:
        x, W = rng.standard_normal(x_shape), rng.standard_normal((3, x_shape[1], *kernel))
        conv_out = reference_conv(x, W, None, stride, SAME)
        want = max_pool(conv_out, *POOL)
        work = Workspace()
        y, cache = conv2d_max_pool(x, W, None, stride, SAME, work)
        assert_close(y, want.y, 1e-12)
        dy = rng.standard_normal(y.shape)
        dW = np.full_like(W, np.nan)
        dx = conv2d_max_pool_backward(dy, cache, W, dW, None, stride, SAME, work)
        dW_want, _, dx_want = fused_backward_reference(x, W, dy, want.winner, conv_out.shape,
                                                       stride, SAME)
        assert_close(dW, dW_want, 1e-12)
        assert_close(dx, dx_want, 1e-12)


# ---------------------------------------------------------------------------------------
# 7. one Workspace across calls of other shapes; results are new arrays


def test_winograd_workspace_reuse_across_batch_sizes_and_shapes():
    rng = np.random.default_rng(22)
    W, b = rng.standard_normal((6, 4, 3, 3)), rng.standard_normal(6)
    work = Workspace()
    cases = [(CHUNK + 3, 7, 8), (2, 7, 8), (2 * CHUNK + 1, 7, 8), (CHUNK + 3, 7, 8),
             (CHUNK + 3, 5, 9), (2, 7, 8), (CHUNK + 3, 7, 8)]
    inputs = {(n, h, w): rng.standard_normal((n, 4, h, w)) for n, h, w in set(cases)}
    results = []
    for key in cases:
        x = inputs[key]
        for pool in (False, True):
            got = winograd_conv2d(x, W, b, SAME, work, pool=pool)
            want = reference_conv(x, W, b, padding=SAME)
            if pool:
                want = max_pool(want, *POOL)
                assert_close(got.y, want.y, 1e-12)
                np.testing.assert_array_equal(got.winner, want.winner)
                results.append((got.y, got.y.copy()))
                results.append((got.winner, got.winner.copy()))
            else:
                assert_close(got, want, 1e-12)
                results.append((got, got.copy()))
        dx = winograd_input_grad(reference_conv(x, W, None, padding=SAME), W, SAME, work)
        results.append((dx, dx.copy()))
    # every result is an array of its own: later calls on the workspace left it unchanged
    for array, snapshot in results:
        np.testing.assert_array_equal(array, snapshot)
    buffers = list(work._buffers.values())
    for array, _ in results:
        assert not any(np.shares_memory(array, buffer) for buffer in buffers)


def test_winograd_second_call_does_not_change_the_first_result():
    rng = np.random.default_rng(23)
    W = rng.standard_normal((3, 4, 3, 3))
    x1, x2 = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((2, 4, 6, 6))
    work = Workspace()
    first = winograd_conv2d(x1, W, None, VALID, work)
    kept = first.copy()
    second = winograd_conv2d(x2, W, None, VALID, work)
    assert first is not second and not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)
    first_pool = winograd_conv2d(x1, W, None, VALID, work, pool=True)
    kept_pool = first_pool.y.copy(), first_pool.winner.copy()
    winograd_conv2d(x2, W, None, VALID, work, pool=True)
    np.testing.assert_array_equal(first_pool.y, kept_pool[0])
    np.testing.assert_array_equal(first_pool.winner, kept_pool[1])


# ---------------------------------------------------------------------------------------
# 8. _plane_rows keeps the 16 planes off 4 KiB multiples


def distance_to_4k(nbytes):
    return min(nbytes % 4096, 4096 - nbytes % 4096)


@pytest.mark.parametrize("itemsize", [4, 8])
def test_plane_rows_never_fewer_and_off_4k_multiples(itemsize):
    # every channel count whose rows are not a multiple of 4 KiB (those: see below)
    counts = [k for k in range(1, 1100) if (k * itemsize) % 4096]
    pairs = [(c, f) for c in (1, 3, 4, 32, 64, 100, 256, 511, 513) for f in counts[::7]]
    for tiles in (1, 2, 36, 288, 289, 1000, 4096, 5000):
        for c, f in pairs:
            row_bytes = (c * itemsize, f * itemsize)
            rows = _plane_rows(tiles, row_bytes)
            assert tiles <= rows < tiles + 4096, (tiles, row_bytes, rows)
            for size in row_bytes:
                assert distance_to_4k(rows * size) >= 512, (tiles, row_bytes, rows)
    # the example of its docstring: 36 tiles of 8 samples, 32 float32 channels
    assert 288 * 128 % 4096 == 0 and _plane_rows(288, (128, 128)) > 288


class Hang(Exception):
    pass


@contextmanager
def hang_guard(seconds):
    """Raise Hang if the block runs for ``seconds`` (it should take microseconds): an
    endless loop fails the test instead of stalling the suite."""
    def stop(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("row_bytes", [(4096,), (8192, 256)])
def test_plane_rows_returns_for_rows_of_4k_multiples(row_bytes):
    """A row of a multiple of 4 KiB cannot be spaced off 4 KiB: it is left alone, and the
    other sizes still are."""
    with hang_guard(0.5):
        rows = _plane_rows(10, row_bytes)
    assert rows >= 10
    assert all(distance_to_4k(rows * size) >= 512 for size in row_bytes if size % 4096)


def test_conv2d_with_512_float64_filters_returns():
    rng = np.random.default_rng(24)
    x, W = rng.standard_normal((1, 4, 4, 4)), rng.standard_normal((512, 4, 3, 3))
    with hang_guard(1.0):
        y, _ = conv2d(x, W, None, (1, 1), SAME, Workspace())
    assert_close(y, reference_conv(x, W, None, padding=SAME), 1e-12)


def test_conv2d_in_training_builds_the_patches_backward_needs():
    """A training forward takes the product with the patch matrix backward needs anyway
    (measured faster than Winograd plus the patches built in backward); inference runs
    Winograd. Both give the reference values."""
    rng = np.random.default_rng(31)
    x, W, b = rng.standard_normal((2, 8, 6, 6)), rng.standard_normal((3, 8, 3, 3)), None
    for training, kind in ((True, conv.PixelRows), (False, conv.Deferred)):
        y, cache = conv2d(x, W, b, (1, 1), SAME, Workspace(), training=training)
        assert isinstance(cache, kind)
        assert_close(y, reference_conv(x, W, None, padding=SAME), 1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n", "c", "f", "hw", "padding"), [
    (1, 4, 3, (7, 6), VALID), (CHUNK + 3, 5, 7, (6, 9), SAME),
    (2 * CHUNK + 1, 32, 64, (13, 13), VALID), (3, 6, 2, (5, 5), ((2, 1), (0, 2)))])
def test_winograd_weight_grad_matches_the_direct_sum(dtype, n, c, f, hw, padding):
    """dW by Winograd F(3x3, 2x2) from a gradient that is 0 outside the [0, 2P) x [0, 2Q)
    rows and columns (a 2x2 pool's backward), channels-last, against the sum of the
    derivation; x C-ordered and channels-last."""
    from lamina.kernels import winograd_weight_grad

    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, c, *hw))
    (top, bottom), (left, right) = padding
    h_out, w_out = hw[0] + top + bottom - 2, hw[1] + left + right - 2
    d_rows = rng.standard_normal((n, h_out // 2 * 2, w_out // 2 * 2, f))
    dy = np.zeros((n, f, h_out, w_out))
    dy[:, :, : d_rows.shape[1], : d_rows.shape[2]] = d_rows.transpose(0, 3, 1, 2)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    want = np.zeros((f, c, 3, 3))
    for i in range(3):
        for j in range(3):
            want[:, :, i, j] = np.einsum("nfpq,ncpq->fc", dy, xp[:, :, i:i + h_out, j:j + w_out])
    for x_in in (x.astype(dtype), np.ascontiguousarray(x.transpose(0, 2, 3, 1)).astype(
            dtype).transpose(0, 3, 1, 2)):
        got = winograd_weight_grad(x_in, d_rows.astype(dtype), padding, Workspace())
        assert got.shape == want.shape and got.dtype == dtype
        assert_close(got, want, 1e-12 if dtype == np.float64 else 1e-5)
