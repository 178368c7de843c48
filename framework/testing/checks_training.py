"""The conformance checks of what training relies on, beyond what a layer computes alone.

A layer that passes :mod:`lamina.testing.checks_layer` can still break a real run:
the runner trains in float32, optimizers and loaders write into the arrays the layer
handed out, the first layer's backward is told that no input gradient is needed, and
the sharded step reseeds the generator of a stochastic layer on every step. Each
check here holds a plugin to one of those reliances; docs/writing-a-plugin.md lists
which part of lamina each one protects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import check, fail, fresh_copy, rng
from .checks_layer import REUSE_FIX, situations
from .harness import (
    arrays_of,
    backward,
    build,
    close,
    copy_values,
    draw_inputs,
    flag,
    forward,
    max_diff,
    shared_keys,
    upstream,
)

#: largest |float32 - float64| allowed, relative to the largest float64 magnitude of the
#: array: a few hundred float32 roundings (eps = 1.2e-7) in the longest sum of a small
#: example stay below it, a gradient computed in half precision (eps = 9.8e-4) does not
FLOAT32_TOLERANCE = 3e-5


def _relative_error(low: np.ndarray, high: np.ndarray, floor: float = 0.0) -> float:
    scale = max(float(np.max(np.abs(high))) if high.size else 0.0, floor)
    return max_diff(low.astype(np.float64), high) / max(scale, np.finfo(np.float64).tiny)


@check
def check_float32_matches_float64(plugin: type, example: Any) -> None:
    """The same inputs and parameter values give the same outputs and gradients in float32
    as in float64, within float32 rounding, in training and in eval mode: lamina trains
    and predicts in float32 (a layer may compute eval mode another way: conv2d runs
    Winograd there), while the gradient check runs in float64."""
    # A stochastic layer may draw its mask differently per dtype: compare eval mode only.
    modes = (False,) if flag(plugin, example, "stochastic") else (True, False)
    for training in modes:
        for (where, low, xs), (_, high, _) in zip(
                situations(plugin, example, dtype=np.float32), situations(plugin, example),
                strict=True):
            wrong = float32_problems(low, high, xs, training)
            if wrong:
                fail(f"{where}float32 results to agree with float64 results on the same "
                     f"inputs and parameter values within {FLOAT32_TOLERANCE:g} of each "
                     f"array's largest magnitude (training={training})", ", ".join(wrong),
                     FLOAT32_FIX + (REUSE_FIX if where else ""))


FLOAT32_FIX = ("Compute in the input's dtype or wider, never narrower (no float16 casts), and "
               "avoid formulas that lose digits in float32 (tiny finite-difference steps, "
               "differences of large nearly equal numbers, exp of large numbers)")


def float32_problems(low: Any, high: Any, xs: list[np.ndarray], training: bool,
                     *, where_finite: bool = False) -> list[str]:
    """How a float32 layer ``low`` and a float64 twin ``high`` (given ``low``'s values)
    disagree on the float32 inputs ``xs``: forward, input and parameter gradients, within
    FLOAT32_TOLERANCE of each array's largest magnitude. Where float64 is finite float32
    must be. With ``where_finite`` (inputs far beyond the usual scale) float64 may
    overflow too, and float32 must be finite only where float64 is finite and within
    float32's range; gradients are compared against at least the scale of ``dy``, since
    far from the usual scale a gradient may cancel to nearly nothing (a normalisation
    over two features), where float32's rounding is all that is left."""
    copy_values(low, high)  # the float32 values, exactly, in both
    y_low = forward(low, xs, training=training)
    y_high = forward(high, [x.astype(np.float64) for x in xs], training=training)
    dy = upstream(y_high, np.float32)
    pairs = [("forward output", y_low, y_high)]
    dx_low = backward(low, dy, len(xs))
    dx_high = backward(high, dy.astype(np.float64), len(xs))
    pairs += [(f"input gradient {i}", a, b) for i, (a, b) in enumerate(zip(dx_low, dx_high,
                                                                            strict=True))]
    pairs += [(f"grads()[{k!r}]", g, high.grads()[k]) for k, g in low.grads().items()]
    wrong = []
    top = float(np.finfo(np.float32).max)
    # A gradient that is 0 in exact arithmetic (a bias before a normalisation, as a block
    # may hold) is rounding on both sides: it is compared against the gradients' scale.
    gradients = max((float(np.max(np.abs(b))) for _, _, b in pairs[1:]
                     if b.size and np.all(np.isfinite(b))), default=0.0)
    for what, a, b in pairs:
        representable = np.isfinite(b) & (np.abs(b) <= top) if where_finite else np.isfinite(b)
        lost = representable & ~np.isfinite(a)
        if np.any(lost):
            wrong.append(f"{what} not finite in float32 at {int(lost.sum())} entries where "
                         "float64 is (and float32 could hold it)")
            continue
        floor = 0.0
        if what != "forward output" and b.size and np.all(np.isfinite(b)) \
                and float(np.max(np.abs(b))) <= 1e-12 * gradients:
            floor = gradients
        if where_finite:
            a, b = np.where(representable, a, 0), np.where(representable, b, 0)
            floor = max(floor, float(np.abs(dy).max())) if what != "forward output" else 0.0
        err = _relative_error(a, b, floor)  # NaN, and a failure, where either is not finite
        if not err <= FLOAT32_TOLERANCE:
            wrong.append(f"{what} off by {err:.3g}")
    return wrong


@check
def check_arrays_stay_live(plugin: type, example: Any) -> None:
    """params(), grads() and state() hand out the same arrays through forward, backward and
    an optimizer step, and backward writes the gradients into them: training loops,
    optimizers and checkpoints keep and write these very arrays."""
    layer, _ = build(plugin, example)
    held = arrays_of(layer)
    xs = draw_inputs(plugin, example)
    for step in range(2):
        y = forward(layer, xs, training=True)
        backward(layer, upstream(y) * (step + 1), len(xs))
        for key in shared_keys(layer):
            layer.params()[key] -= 0.1 * layer.grads()[key]
        now = arrays_of(layer)
        for what, arrays in held.items():
            for key, array in arrays.items():
                if now[what].get(key) is not array:
                    fail(f"{what}()[{key!r}] to be the same array before and after forward(), "
                         "backward() and an in-place step",
                         "a different array" if key in now[what] else "the key gone",
                         "Write into the arrays lamina created: np.matmul(x.T, dy, "
                         f"out=self._grads[{key!r}]) or g[...] = value, never "
                         f"self._grads[{key!r}] = value; whoever holds the old array sees "
                         "stale values")


@check
def check_uses_current_params(plugin: type, example: Any) -> None:
    """After forward, backward, an in-place step and a load, the layer computes with the
    values its arrays hold now, exactly like a layer given those values before its first
    forward: optimizers and checkpoints change parameters only through those arrays."""
    layer, _ = build(plugin, example, seed=0)
    xs = draw_inputs(plugin, example)
    forward(layer, xs, training=False)  # a cache made in eval mode must not outlive a step
    y = forward(layer, xs, training=True)
    backward(layer, upstream(y), len(xs))
    for key in shared_keys(layer):
        layer.params()[key] -= 0.1 * layer.grads()[key]
    loaded, _ = build(plugin, example, seed=1)
    modes = (False,) if flag(plugin, example, "stochastic") else (False, True)

    def compare(when: str) -> None:
        reference, _ = build(plugin, example, seed=2)
        copy_values(layer, reference)
        for training in modes:
            a = forward(fresh_copy(layer), xs, training=training)
            b = forward(fresh_copy(reference), xs, training=training)
            if not close(a, b):
                fail(f"forward(training={training}) {when} to use the values params() and "
                     "state() hold now, as a layer given them before its first forward does",
                     f"outputs differing by up to {max_diff(a, b):.3g}",
                     "Read parameters from self._params (or self.params()) in every forward; "
                     "never keep a copy made at the first forward or at build time")

    compare("after forward, backward and an in-place step p -= 0.1 * grad")
    copy_values(loaded, layer)
    compare("after new values were copied into its arrays (a checkpoint load)")


@check
def check_backward_without_input_grad(plugin: type, example: Any) -> None:
    """``backward(dy, input_grad=False)`` fills exactly the parameter gradients that
    ``backward(dy)`` fills: the runner calls it so on the layers reading the network
    input, in every training step."""
    for where, pristine, xs in situations(plugin, example):
        wrong = input_grad_problems(pristine, xs)
        if wrong:
            fail(f"{where}backward(dy, input_grad=False) to fill every parameter gradient as "
                 "backward(dy) does", "; ".join(wrong),
                 INPUT_GRAD_FIX + (REUSE_FIX if where else ""))


INPUT_GRAD_FIX = ("input_grad=False only means dx is not needed: compute every parameter "
                  "gradient first, then return None")


def input_grad_problems(pristine: Any, xs: list[np.ndarray]) -> list[str]:
    """Where ``backward(dy, input_grad=False)`` on a copy of ``pristine`` fills other
    parameter gradients than ``backward(dy)`` on another copy does."""
    full, skip = fresh_copy(pristine), fresh_copy(pristine)
    y = forward(full, xs, training=True)
    forward(skip, xs, training=True)
    dy = upstream(y)
    backward(full, dy, len(xs))
    backward(skip, dy, len(xs), input_grad=False)
    wrong = []
    for key, grad in full.grads().items():
        other = skip.grads()[key]
        if not close(other, grad):
            wrong.append(f"grads()[{key!r}] " + ("left at zero (unwritten)" if not np.any(other)
                                                  else f"off by up to {max_diff(other, grad):.3g}"))
    return wrong


@check
def check_draws_from_build_generator(plugin: type, example: Any) -> None:
    """A stochastic layer draws only from ``self.rng``, the generator ``build`` received:
    the sharded step reseeds that generator on every step, which makes a run
    reproducible from its seed and a resumed run bit-identical."""
    generator = rng(5)
    layer = plugin(dict(example.config))
    layer.build(example.input_shape, generator, dtype=np.float64)
    xs = draw_inputs(plugin, example)
    saved = generator.bit_generator.state
    first = forward(layer, xs, training=True)
    generator.bit_generator.state = saved
    replay = forward(layer, xs, training=True)
    if not np.array_equal(first, replay):
        fail("forward(training=True) to repeat its output when the generator build() received "
             "is reset to the same state", f"outputs differing by up to "
             f"{max_diff(first, replay):.3g}",
             "Draw every random number from self.rng (set by build); do not derive a "
             "generator of your own from it, nor use numpy's global one")


@check
def check_training_deterministic(plugin: type, example: Any) -> None:
    """A layer that does not declare ``stochastic`` gives the same output on every training
    forward of the same input: the sharded step only reseeds generators for layers that
    declare it, so undeclared randomness would differ between shards and after a resume."""
    layer, _ = build(plugin, example)
    xs = draw_inputs(plugin, example)
    first = forward(layer, xs, training=True)
    second = forward(layer, xs, training=True)
    if not np.array_equal(first, second):
        fail("two forward(training=True) calls on the same input to give the same output "
             "(the layer does not declare stochastic)",
             f"outputs differing by up to {max_diff(first, second):.3g}",
             "Declare traits = LayerTraits(stochastic=True) and draw from self.rng, or remove "
             "the randomness")
