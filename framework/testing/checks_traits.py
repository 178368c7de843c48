"""The conformance checks of the declarations the graph runner acts on.

A layer that declares ``monotone_elementwise`` (relu) and is read only by one that
declares ``max_selecting`` (maxpool2d) runs after it instead of before: exact only
when both declarations hold. Each check runs only on a layer that makes its
declaration, and tests it against a reference partner written here: a max pool over
pairs of entries for the elementwise layer, and relu and x**3 for the pool. Inputs
are multiples of 1/4, so windows hold ties, the case where the order could matter.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import check, fail, fresh_copy, rng
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
