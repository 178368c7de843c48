"""The conformance checks of the declarations the graph runner acts on.

A layer that declares ``monotone_elementwise`` (relu) and is read only by one that
declares ``max_selecting`` (maxpool2d) runs after it instead of before: exact only
when both declarations hold. A layer that declares ``fuses_max_pool`` (conv2d) ends in
the pool that follows it, in a fused chain: exact only when its ``forward_max_pool`` is
the pool of its forward (``check_fuses_max_pool``, against a reference pool written
here, on values where every sum is exact so that ties stay ties). Each check runs only
on a layer that makes its declaration, and tests it against a reference partner
written here: a max pool over pairs of entries for the elementwise layer, and relu and
x**3 for the pool. Inputs are multiples of 1/4, so windows hold ties, the case where
the order could matter.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lamina.layer import FUSED_POOL_WINDOWS

from .base import NotApplicable, check, fail, fresh_copy, rng
from .checks_usage import _views
from .harness import backward, build, draw_inputs, forward, max_diff

_FIX_MONOTONE = ("Declare monotone_elementwise only for one non-decreasing scalar function "
                 "applied to every entry, with no parameters and a zero gradient wherever it "
                 "is flat (relu's mask is x > 0, not x >= 0); otherwise leave it False")
_FIX_POOL = ("Declare max_selecting only for a layer whose every output is the first maximal "
             "entry of its window (in a fixed order) and whose backward routes the gradient "
             "to exactly that entry; otherwise leave it False")


def _quantized(plugin: type, example: Any) -> np.ndarray:
    """Inputs from the example's range rounded to multiples of 1/4: ties in every window."""
    x = draw_inputs(plugin, example)[0]
    lo, hi = example.input_range
    return np.clip(np.round(x * 4) / 4, lo, hi)


def _pairs_pool(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A reference max pool over consecutive pairs of each sample's entries, first maximum
    winning: ``(pooled (N, D // 2), winner offsets (N, D // 2))``."""
    n = values.shape[0]
    flat = values.reshape(n, -1)
    pairs = flat[:, : flat.shape[1] // 2 * 2].reshape(n, -1, 2)
    winner = np.argmax(pairs, axis=2)  # the first of tied maxima
    return np.take_along_axis(pairs, winner[..., None], axis=2)[..., 0], winner


def _pairs_unpool(dy: np.ndarray, winner: np.ndarray, like: np.ndarray) -> np.ndarray:
    """The reference pool's backward: each dy to its pair's winner, zeros elsewhere."""
    n = like.shape[0]
    routed = np.zeros((n, winner.shape[1], 2))
    np.put_along_axis(routed, winner[..., None], dy[..., None], axis=2)
    flat = np.zeros((n, like[0].size))
    flat[:, : routed.shape[1] * 2] = routed.reshape(n, -1)
    return flat.reshape(like.shape)


@check
def check_monotone_elementwise(plugin: type, example: Any) -> None:
    """``monotone_elementwise`` holds: no arrays, any shape kept, a non-decreasing function
    of each entry alone with a zero gradient where it is flat, and f(pool(x)) equal to
    pool(f(x)) in value and gradient."""
    layer, _ = build(plugin, example)
    if layer.params() or layer.state():
        fail("a monotone_elementwise layer to have no parameters or state (the runner moves "
             "it behind a pool)", f"arrays {sorted({**layer.params(), **layer.state()})}",
             _FIX_MONOTONE)
    for shape in [(5,), (2, 3, 4), tuple(example.input_shape)]:
        got = plugin(dict(example.config)).compute_output_shape(shape)
        if tuple(got) != shape:
            fail(f"a monotone_elementwise layer to keep any input shape: {shape}",
                 repr(got), _FIX_MONOTONE)

    # f on a grid of exact binary fractions over the example's range widened four times
    # on each side (0 and the integers included), the same values in three layouts.
    lo, hi = (float(v) for v in example.input_range)
    width = hi - lo
    grid = np.arange(math.floor((lo - 4 * width) * 16), math.ceil((hi + 4 * width) * 16) + 1) / 16
    gen = rng(31)
    order = gen.permutation(grid.size)
    kept = gen.random(grid.size) < 0.5
    x = np.stack([grid, grid[order], np.where(kept, grid, grid[0])])
    one, _ = build(plugin, example, input_shape=(grid.size,))
    with np.errstate(all="ignore"):
        y = forward(one, [x], training=True)
        slope = backward(one, np.ones_like(y), 1)[0][0]
    f = y[0]
    finite = np.isfinite(f)
    same = (np.array_equal(y[1], f[order], equal_nan=True)
            and np.array_equal(y[2][kept], f[kept], equal_nan=True)
            and np.array_equal(y[2][~kept], np.full((~kept).sum(), f[0]), equal_nan=True))
    if not same:
        fail("each output of a monotone_elementwise layer to depend on its own entry only "
             "(the same value gives the same output in any position and batch)",
             "outputs that change with the other entries", _FIX_MONOTONE)
    values, at = f[finite], grid[finite]
    falls = np.flatnonzero(np.diff(values) < 0)
    if falls.size:
        i = falls[0]
        fail("a monotone_elementwise layer to be non-decreasing",
             f"f({at[i]:g}) = {values[i]:.6g} > f({at[i + 1]:g}) = {values[i + 1]:.6g}",
             _FIX_MONOTONE)
    level = np.zeros(grid.size, dtype=bool)
    equal = finite[1:] & finite[:-1] & (f[1:] == f[:-1])
    level[1:] |= equal
    level[:-1] |= equal
    moving = np.flatnonzero(level & (slope != 0))
    if moving.size:
        i = moving[0]
        fail("a zero gradient wherever a monotone_elementwise layer is flat, the ends of a "
             "flat piece included (pool(f(x)) and f(pool(x)) route ties differently)",
             f"f'({grid[i]:g}) = {slope[i]:.6g} where f is flat", _FIX_MONOTONE)

    # Against a reference max pool over pairs: values and gradients, in both orders.
    x = _quantized(plugin, example)
    f_x = forward(fresh_copy(layer), [x], training=True)
    pool_f, winner_f = _pairs_pool(f_x)
    pooled, winner = _pairs_pool(x)
    if pooled.shape[1] == 0:
        return  # one entry per sample: nothing to pool
    after, _ = build(plugin, example, input_shape=pooled.shape[1:])
    f_pool = forward(after, [pooled], training=True)
    dy = rng(37).uniform(-1.0, 1.0, size=pool_f.shape)
    before = fresh_copy(layer)
    forward(before, [x], training=True)
    dx_f_first = backward(before, _pairs_unpool(dy, winner_f, x), 1)[0]
    dx_pool_first = _pairs_unpool(backward(after, dy, 1)[0], winner, x)
    if not (np.allclose(f_pool, pool_f, rtol=1e-12, atol=0)
            and np.allclose(dx_pool_first, dx_f_first, rtol=1e-12, atol=1e-15)):
        fail("f(pool(x)) to equal pool(f(x)), value and gradient, for a max pool over pairs "
             "of entries (the runner applies a monotone_elementwise layer after the pool)",
             f"values differing by up to {max_diff(f_pool, pool_f):.3g} and gradients by up "
             f"to {max_diff(dx_pool_first, dx_f_first):.3g}", _FIX_MONOTONE)


@check
def check_max_selecting(plugin: type, example: Any) -> None:
    """``max_selecting`` holds: pool(f(x)) equals f(pool(x)), value and gradient, for a
    function with a flat piece (relu) and a curved one (x**3), on inputs with ties."""
    layer, _ = build(plugin, example)
    x = _quantized(plugin, example)
    window = layer.max_pool_window()
    if window is not None:  # the windows it says it pools, which fused chains rely on
        pooled, where = reference_max_pool(x, window)
        probe = fresh_copy(layer)
        y = forward(probe, [x], training=True)
        dy = rng(41).uniform(-1.0, 1.0, size=pooled.shape)
        if y.shape != pooled.shape or not np.array_equal(y, pooled) or not np.allclose(
                backward(probe, dy, 1)[0], _routed(dy, where, x.shape), rtol=1e-12,
                atol=1e-15):
            fail(f"the max pool over the windows max_pool_window() gives, {window}: each "
                 "output its window's first maximum, the gradient routed to it",
                 f"an output of shape {y.shape} (the windows give {pooled.shape})"
                 if y.shape != pooled.shape else "other values or gradients",
                 "Return from max_pool_window() the (pool, stride) the layer computes, or "
                 "None when its windows are not such a pool (a fused chain ends in it)")
    references = {
        "relu": (lambda v: np.maximum(v, 0.0), lambda v: (v > 0).astype(v.dtype)),
        "x**3": (lambda v: v**3, lambda v: 3 * v**2),
    }
    for name, (f, df) in references.items():
        f_first, pool_first = fresh_copy(layer), fresh_copy(layer)
        y_f_first = forward(f_first, [f(x)], training=True)
        pooled = forward(pool_first, [x], training=True)
        y_pool_first = f(pooled)
        dy = rng(41).uniform(-1.0, 1.0, size=y_f_first.shape)
        dx_f_first = backward(f_first, dy, 1)[0] * df(x)
        dx_pool_first = backward(pool_first, dy * df(pooled), 1)[0]
        if not (np.allclose(y_f_first, y_pool_first, rtol=1e-12, atol=0)
                and np.allclose(dx_f_first, dx_pool_first, rtol=1e-12, atol=1e-15)):
            fail(f"pool(f(x)) to equal f(pool(x)) for f = {name}, value and gradient (the "
                 "runner applies a monotone layer after a max_selecting one)",
                 f"values differing by up to {max_diff(y_f_first, y_pool_first):.3g} and "
                 f"gradients by up to {max_diff(dx_f_first, dx_pool_first):.3g}", _FIX_POOL)


_FIX_FUSED = ("forward_max_pool(x, window) must return exactly the max pool of forward(x) "
              "(first maximum in row-major order, a NaN winning, partial windows dropped) "
              "and backward_max_pool(dy) what backward gives for dy routed to those "
              "winners, in training and eval, float32 and float64, for inputs and "
              "gradients in any memory layout, with the current parameters, a new array "
              "every call and the inputs left as they were; declare fuses_max_pool only "
              "then, and accept only windows you compute that way in fusable_max_pool")


def reference_max_pool(y: np.ndarray, window) -> tuple[np.ndarray, np.ndarray]:
    """The max pool lamina's runner stands for a fused chain's pool: over the last two
    axes, first maximum in row-major order winning, a NaN winning over numbers, partial
    windows dropped. Returns (pooled, flat index of each winner in y; for a window
    holding NaN, its first NaN, though which NaN takes the gradient is not checked)."""
    (ph, pw), (sh, sw) = window
    *lead, h, w = y.shape
    h_out, w_out = (h - ph) // sh + 1, (w - pw) // sw + 1
    pooled = np.empty((*lead, h_out, w_out), dtype=y.dtype)
    where = np.empty((*lead, h_out, w_out), dtype=np.intp)
    index = np.arange(y.size).reshape(y.shape)
    for p in range(h_out):
        for q in range(w_out):
            block = y[..., p * sh:p * sh + ph, q * sw:q * sw + pw].reshape(*lead, -1)
            ids = index[..., p * sh:p * sh + ph, q * sw:q * sw + pw].reshape(*lead, -1)
            nan = np.isnan(block)
            pick = np.where(nan.any(axis=-1), np.argmax(nan, axis=-1),
                            np.argmax(np.where(nan, -np.inf, block), axis=-1))
            pooled[..., p, q] = np.take_along_axis(block, pick[..., None], -1)[..., 0]
            where[..., p, q] = np.take_along_axis(ids, pick[..., None], -1)[..., 0]
    return pooled, where


def _dyadic(layer: Any, x: np.ndarray, seed: int = 43) -> np.ndarray:
    """Parameters and inputs set to multiples of 1/4 of at most a few units (in place for
    the layer): every sum of products is then exact in float64 and float32 alike,
    whatever the order or the algorithm, so fused and unfused paths must agree bit for
    bit, ties included."""
    gen = rng(seed)
    for value in layer.params().values():
        value[...] = gen.integers(-4, 5, size=value.shape) / 4
    return np.round(x * 4) / 4


def pools_to_fuse(plugin: type, example: Any) -> list:
    """The windows of :data:`lamina.layer.FUSED_POOL_WINDOWS` (the only ones the runner
    fuses) a ``fuses_max_pool`` layer of this example accepts and whose pool fits its
    output: what :func:`check_fuses_max_pool` tries."""
    layer = plugin(dict(example.config))
    shape = layer.compute_output_shape(tuple(example.input_shape))
    return [w for w in FUSED_POOL_WINDOWS if len(shape) >= 2 and shape[-2] >= w[0][0]
            and shape[-1] >= w[0][1] and layer.fusable_max_pool(w)]


def _channels_last(a: np.ndarray) -> np.ndarray:
    """``a`` (N, C, ...) with the same values, its channels innermost in memory: what a
    fused conv2d's output looks like."""
    if a.ndim < 3:
        return a.copy()
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)).transpose(
        0, a.ndim - 1, *range(1, a.ndim - 1))


def _routed(dy: np.ndarray, where: np.ndarray, shape: tuple) -> np.ndarray:
    routed = np.zeros(int(np.prod(shape)), dtype=dy.dtype)
    np.add.at(routed, where.ravel(), dy.ravel())
    return routed.reshape(shape)


class _Fused:
    """One fused pool of one layer, run and compared against the layer unfused."""

    def __init__(self, layer: Any, window: Any):
        self.layer, self.window = layer, window

    def expected(self, x: np.ndarray, dy: np.ndarray | None, training: bool):
        """The unfused layer's pooled output, winners, and (with ``dy``) its input and
        parameter gradients for dy routed to the winners."""
        plain = fresh_copy(self.layer)
        with np.errstate(invalid="ignore"):
            y = forward(plain, [x], training=training)
        pooled, where = reference_max_pool(y, self.window)
        if dy is None:
            return pooled, None, None
        dx = backward(plain, _routed(dy, where, y.shape), 1)[0]
        return pooled, dx, {k: v.copy() for k, v in plain.grads().items()}

    def run(self, layer: Any, x: np.ndarray, dy: np.ndarray | None, training: bool,
            what: str):
        """forward_max_pool (and backward_max_pool) on ``layer``: the results, checked to
        leave their inputs as they were."""
        x_in = x.copy() if x.flags.c_contiguous else x
        before = x_in.copy()
        with np.errstate(invalid="ignore"):
            got = layer.forward_max_pool(x_in, self.window, training=training)
        result = np.array(got, copy=True)
        if not np.array_equal(x_in, before, equal_nan=True):
            fail(f"forward_max_pool to leave its input unchanged ({what})",
                 "an input changed in place", _FIX_FUSED)
        if dy is None:
            return result, got, None, None
        dy_before = dy.copy()
        dx = np.array(layer.backward_max_pool(dy, input_grad=True), copy=True)
        if not np.array_equal(dy, dy_before):
            fail(f"backward_max_pool to leave dy unchanged ({what})", "dy changed in place",
                 _FIX_FUSED)
        return result, got, dx, {k: v.copy() for k, v in layer.grads().items()}

    def compare(self, got, expected, what: str, *, exact: bool) -> None:
        (y, _, dx, grads), (y_ref, dx_ref, grads_ref) = got, expected

        def same(a, b):
            if a.shape != b.shape:
                return False
            if exact:
                return np.array_equal(a, b, equal_nan=True)
            scale = max(float(np.nanmax(np.abs(b))) if b.size else 0.0, 1.0)
            return np.allclose(a, b, rtol=1e-5, atol=1e-5 * scale, equal_nan=True)

        if not same(y, y_ref):
            differ = (f"shape {y.shape}" if y.shape != y_ref.shape else "values differing by "
                      f"up to {max_diff(np.nan_to_num(y), np.nan_to_num(y_ref)):.3g}")
            fail(f"forward_max_pool(x, {self.window}) to equal the max pool of forward(x) "
                 f"({what})", differ, _FIX_FUSED)
        if dx_ref is not None and not (same(dx, dx_ref) and all(
                same(grads[k], v) for k, v in grads_ref.items())):
            fail(f"backward_max_pool(dy) for the window {self.window} to equal backward of "
                 f"dy routed to each window's first maximum ({what})",
                 f"input gradients differing by up to {max_diff(dx, dx_ref):.3g}"
                 if dx.shape == dx_ref.shape else f"dx of shape {dx.shape}", _FIX_FUSED)


@check
def check_fuses_max_pool(plugin: type, example: Any) -> None:
    """``fuses_max_pool`` holds, for every window the layer accepts: ``forward_max_pool``
    equals the max pool of ``forward`` (values; ties, a constant input, NaN) and
    ``backward_max_pool`` equals ``backward`` of the routed gradient (input and parameter
    gradients, with and without ``input_grad``), bit for bit on values whose sums are
    exact, in training and eval, in float64 and float32, for x and dy channels-last or
    in other layouts; the inputs are left unchanged, a second call leaves the first
    result as it was, and after a parameter step it uses the new parameters."""
    windows = pools_to_fuse(plugin, example)
    if not windows:
        raise NotApplicable("the layer fuses none of the pools tried "
                            f"({', '.join(map(str, FUSED_POOL_WINDOWS))}) in this example's "
                            "config or output shape", "no pool fused")
    for dtype in (np.float64, np.float32):
        layer, _ = build(plugin, example, dtype=dtype)
        x = _dyadic(layer, _quantized(plugin, example)).astype(dtype)
        flat = np.full_like(x, x.flat[0])  # a constant image: every window tied
        nan_x = x.copy()
        nan_x.flat[x.size // 2] = np.nan
        exact = dtype == np.float64
        for window in windows:
            fused = _Fused(layer, window)
            y_shape = fused.expected(x, None, True)[0].shape
            dy = (rng(47).integers(-4, 5, size=y_shape) / 4).astype(dtype)
            for training in (True, False):
                mode = f"{np.dtype(dtype).name}, training={training}"
                for inputs, what, with_dy in ((x, "inputs with ties", True),
                                              (flat, "a constant input", True),
                                              (nan_x, "an input holding NaN", False)):
                    grad = dy.copy() if with_dy else None
                    got = fused.run(fresh_copy(layer), inputs, grad, training, f"{what}, {mode}")
                    fused.compare(got, fused.expected(inputs, grad, training),
                                  f"{what}, {mode}", exact=exact)
                # memory layouts: x and dy channels-last (a fused conv2d's output) and others
                reference = fused.expected(x, dy.copy(), training)
                layouts = {"channels-last": (_channels_last(x), _channels_last(dy)),
                           **{name: (xv, dv) for (name, xv), dv in zip(
                               _views(x).items(), _views(dy).values(), strict=True)}}
                for name, (x_view, dy_view) in layouts.items():
                    got = fused.run(fresh_copy(layer), x_view, dy_view, training,
                                    f"x and dy as {name}, {mode}")
                    fused.compare(got, reference, f"x and dy as {name}, {mode}", exact=exact)
            # input_grad=False fills the same parameter gradients
            one = fresh_copy(layer)
            one.forward_max_pool(x.copy(), window, training=True)
            one.backward_max_pool(dy.copy(), input_grad=True)
            grads = {k: v.copy() for k, v in one.grads().items()}
            for value in one.grads().values():
                value[...] = np.nan
            one.backward_max_pool(dy.copy(), input_grad=False)
            if not all(np.array_equal(one.grads()[k], v) for k, v in grads.items()):
                fail("backward_max_pool(dy, input_grad=False) to fill the same parameter "
                     "gradients", "different gradients", _FIX_FUSED)
            # a second call on other inputs, after a parameter step: the first result
            # unchanged, the second computed with the new parameters
            two = fresh_copy(layer)
            first = two.forward_max_pool(x.copy(), window, training=True)
            kept = np.array(first, copy=True)
            for value in two.params().values():
                value += dtype(0.25)
            stepped = fresh_copy(two)
            got = fused.run(two, flat, dy.copy(), True, f"after a parameter step, {mode}")
            fused.compare(got, _Fused(stepped, window).expected(flat, dy.copy(), True),
                          f"a second call after a parameter step, {mode}", exact=exact)
            if not np.array_equal(first, kept, equal_nan=True):
                fail("forward_max_pool to return a new array on every call (a second call "
                     "changed the first result)", "a reused buffer", _FIX_FUSED)
