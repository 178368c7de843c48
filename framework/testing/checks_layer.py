"""The conformance checks of what a layer computes, one contract each.

Every check builds its own layer from the class and the example's config, draws
its own data from a seeded generator, and hands the layer copies, so that one
broken contract fails one check: a layer that mutates its input fails
:func:`check_input_not_mutated` and nothing else (:mod:`lamina.testing.harness`).
Layers run in float64 except in :func:`check_dtype_preserved`. A multi-input layer
gets a list of arrays and must return a list of gradients.

What training relies on beyond this is checked in :mod:`lamina.testing.checks_training`,
the declarations in :mod:`lamina.testing.checks_traits`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from lamina.errors import BackwardBeforeForwardError

from . import gradcheck
from .base import ConformanceError, check, describe_array, fail, fresh_copy, rng
from .harness import (
    BATCH,
    backward,
    build,
    close,
    draw_inputs,
    flag,
    forward,
    max_diff,
    multi,
    shared_keys,
    upstream,
)

_DTYPES = (np.float32, np.float64)
#: keys of params() and state(): a network names them <layer>.<key>, so a key must not
#: hold a dot (checkpoints and optimizer state would be ambiguous) or a slash
KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: a block's arrays are its layers', named through them (``conv2d_1.W``)
BLOCK_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)+$")


# -- the checks -------------------------------------------------------------------------
@check
def check_output_shape(plugin: type, example: Any) -> None:
    layer, out_shape = build(plugin, example)
    if not (isinstance(out_shape, tuple) and all(isinstance(d, int | np.integer)
                                                 for d in out_shape)):
        fail("build() to return the per-sample output shape as a tuple of ints",
             repr(out_shape))
    unbuilt = plugin(dict(example.config))
    inferred = unbuilt.compute_output_shape(layer.input_shape)
    if tuple(inferred) != tuple(out_shape):
        fail(f"compute_output_shape({layer.input_shape}) on a layer made from the config "
             f"alone to give {tuple(out_shape)}, what build() gave",
             repr(inferred), "Compute the shape from the config and the input shape only")
    if unbuilt.params() or unbuilt.state():
        fail("compute_output_shape() to allocate nothing (validate and summary call it)",
             f"arrays {sorted({**unbuilt.params(), **unbuilt.state()})} after the call",
             "Declare arrays in param_specs(); lamina creates them in build()")
    xs = draw_inputs(plugin, example)
    for training in (True, False):
        y = forward(layer, xs, training=training)
        if y.shape != (BATCH, *out_shape):
            fail(f"forward(training={training}) on a batch of {BATCH} to give shape "
                 f"{(BATCH, *out_shape)} (batch + the shape build() returned)",
                 f"shape {y.shape}",
                 "Make compute_output_shape() agree with what forward() returns")


@check
def check_params_grads_match(plugin: type, example: Any) -> None:
    layer, _ = build(plugin, example)

    def compare(when: str) -> None:
        params, grads = layer.params(), layer.grads()
        if set(params) != set(grads):
            fail(f"params() and grads() {when} to have the same keys",
                 f"params {sorted(params)} and grads {sorted(grads)}",
                 "Declare every parameter in param_specs(); build() creates its gradient")
        for key, p in params.items():
            g = grads[key]
            if g.shape != p.shape or g.dtype != p.dtype:
                fail(f"grads()[{key!r}] {when} to match its parameter, {describe_array(p)}",
                     describe_array(g))

    compare("after build")
    params, state = layer.params(), layer.state()
    pattern = BLOCK_KEY_PATTERN if hasattr(plugin, "block_class") else KEY_PATTERN
    bad = [k for k in [*params, *state] if not (isinstance(k, str) and pattern.match(k))]
    if bad:
        fail("params() and state() keys to be identifiers (letters, digits, underscores): "
             "the network names them <layer>.<key> in checkpoints and optimizer state",
             f"the keys {bad}", "Rename them, e.g. 'W', 'b', 'running_mean'")
    both = sorted(set(params) & set(state))
    if both:
        fail("params() and state() to have no key in common (a checkpoint holds both under "
             "one name each)", f"{both} in both", "Give the non-trainable array its own name")
    xs = draw_inputs(plugin, example)
    y = forward(layer, xs, training=True)
    backward(layer, upstream(y), len(xs))
    compare("after backward")


@check
def check_dtype_preserved(plugin: type, example: Any) -> None:
    for dtype in _DTYPES:
        want = np.dtype(dtype)
        layer, _ = build(plugin, example, dtype=dtype)
        xs = draw_inputs(plugin, example, dtype=dtype)
        y = forward(layer, xs, training=True)
        dxs = backward(layer, upstream(y, dtype), len(xs))
        found = {f"params()[{k!r}]": v.dtype for k, v in layer.params().items()}
        found |= {f"grads()[{k!r}]": v.dtype for k, v in layer.grads().items()}
        found |= {f"state()[{k!r}]": v.dtype for k, v in layer.state().items()}
        found |= {"forward output": y.dtype}
        found |= {f"backward output {i}": dx.dtype for i, dx in enumerate(dxs)}
        wrong = {what: str(got) for what, got in found.items() if got != want}
        if wrong:
            fail(f"every array to stay {want} when built with dtype={want.name} and fed "
                 f"{want.name} inputs", ", ".join(f"{k}: {v}" for k, v in wrong.items()),
                 "Compute in the dtype of the input (self.dtype) and avoid float64 "
                 "constants that upcast (cast scalars with x.dtype.type(...))")


@check
def check_input_not_mutated(plugin: type, example: Any) -> None:
    layer, _ = build(plugin, example)
    xs = draw_inputs(plugin, example)
    originals = [x.copy() for x in xs]
    arg = xs if multi(plugin) else xs[0]
    y = np.array(layer.forward(arg, training=True), copy=True)
    dy = upstream(y)
    dy_original = dy.copy()
    layer.backward(dy)
    layer.forward(arg, training=False)
    for i, (x, x0) in enumerate(zip(xs, originals, strict=True)):
        if not np.array_equal(x, x0):
            fail(f"input {i} to be unchanged by forward() and backward()",
                 f"an input changed by up to {max_diff(x, x0):.3g}",
                 "Compute into new arrays (np.maximum(x, 0), not np.maximum(x, 0, out=x))")
    if not np.array_equal(dy, dy_original):
        fail("the upstream gradient dy to be unchanged by backward()",
             f"dy changed by up to {max_diff(dy, dy_original):.3g}",
             "Use dx = dy * mask rather than dy *= mask")


@check
def check_gradient(plugin: type, example: Any) -> None:
    """backward() agrees with float64 finite differences, on a fresh layer and on one
    that has already run a training step on a batch of another size, at batch sizes 1
    and odd (:func:`situations`): one instance meets every batch size of a run."""
    for where, pristine, xs in situations(plugin, example):
        # a layer reused on another batch size is wrong everywhere or nowhere: fewer
        # elements tell
        bad = gradient_problems(pristine, xs, limit=REUSED_ELEMENTS if where else None)
        if bad:
            fail(f"{where}backward() to agree with float64 central finite differences of "
                 "sum(y * dy)", " | ".join(bad), GRADIENT_FIX + (REUSE_FIX if where else ""))


#: (samples of the training step a layer has run before, samples it is then checked on)
OTHER_BATCHES = ((2, 1), (1, 5))
#: elements per array the gradient check compares on a reused layer (100 on a fresh one)
REUSED_ELEMENTS = 20
REUSE_FIX = ("; keep no count or batch size from an earlier call (take them from the arrays "
             "of this one)")


def situations(plugin: type, example: Any, *, dtype=np.float64, seed: int = 0):
    """(where, layer, inputs) a contract is checked in: a fresh layer on the example's
    batch, then layers that have run a training step on another batch size, on a batch
    of 1 and an odd batch. ``where`` is "" for the first, else a phrase for messages."""
    layer, _ = build(plugin, example, dtype=dtype, seed=seed)
    yield "", layer, draw_inputs(plugin, example, dtype=dtype)
    for before, n in OTHER_BATCHES:
        used, _ = build(plugin, example, dtype=dtype, seed=seed)
        xs = draw_inputs(plugin, example, dtype=dtype, n=before, seed=31)
        backward(used, upstream(forward(used, xs, training=True), dtype), len(xs))
        for key in shared_keys(used):  # parameters away from how they started (ones...)
            used.params()[key] -= dtype(0.5) * used.grads()[key]
        yield (f"after a training step on {before} sample{'s' if before != 1 else ''}, on a "
               f"batch of {n}: ", used, draw_inputs(plugin, example, dtype=dtype, n=n))


GRADIENT_FIX = ("Check the derivation (signs, factors, transposes, broadcast axes summed) and "
                "that backward() uses the mask/statistics of the forward() it follows")


def gradient_problems(pristine: Any, xs: list[np.ndarray], *, limit: int | None = None
                      ) -> list[str]:
    """How ``pristine``'s backward on ``xs`` disagrees with float64 finite differences of
    its training forward (each evaluation starts from a copy of ``pristine``, so a layer
    that has already run keeps what it holds); empty when it agrees."""
    analytic = fresh_copy(pristine)
    y = forward(analytic, xs, training=True)
    dy = upstream(y)
    dxs = backward(analytic, dy, len(xs))
    grads = {k: analytic.grads()[k].copy() for k in shared_keys(analytic)}
    for i, (dx, x) in enumerate(zip(dxs, xs, strict=True)):
        if dx.shape != x.shape:
            return [f"the gradient of input {i} has shape {dx.shape}, its input {x.shape}"]

    def evaluate_input(i: int):
        def evaluate(index: tuple[int, ...], delta: float) -> np.ndarray:
            shifted = [x.copy() for x in xs]
            shifted[i][index] += delta
            return forward(fresh_copy(pristine), shifted, training=True)
        return evaluate

    def evaluate_param(key: str):
        def evaluate(index: tuple[int, ...], delta: float) -> np.ndarray:
            probe = fresh_copy(pristine)
            probe.params()[key][index] += delta
            return forward(probe, xs, training=True)
        return evaluate

    gen = rng(13)
    name = "dx" if len(xs) == 1 else "dx{}"
    cap = limit or gradcheck.MAX_ELEMENTS
    reports = [gradcheck.compare(name.format(i), dx, evaluate_input(i), dy,
                                 gradcheck.sample_indices(dx.shape, gen, cap))
               for i, dx in enumerate(dxs)]
    reports += [gradcheck.compare(f"d{key}", g, evaluate_param(key), dy,
                                  gradcheck.sample_indices(g.shape, gen, cap))
                for key, g in grads.items()]
    return [r.describe() for r in reports if not r.ok]


@check
def check_batch_independence(plugin: type, example: Any) -> None:
    # Stochastic layers draw masks per batch, so only their eval outputs can compare.
    training = not flag(plugin, example, "stochastic")
    pristine, _ = build(plugin, example)
    xs = draw_inputs(plugin, example)
    whole = fresh_copy(pristine)
    y = forward(whole, xs, training=training)
    dy = upstream(y)
    if training:
        dxs = backward(whole, dy, len(xs))
        keys = shared_keys(whole)
        grads = {k: whole.grads()[k].copy() for k in keys}
        summed = {k: np.zeros_like(g) for k, g in grads.items()}
    for n in range(BATCH):
        alone = fresh_copy(pristine)
        y_n = forward(alone, [x[n:n + 1] for x in xs], training=training)
        if not close(y_n[0], y[n]):
            fail(f"sample {n}'s output alone to equal its output within a batch of {BATCH}",
                 f"outputs differing by up to {max_diff(y_n[0], y[n]):.3g}",
                 "Do not mix samples (no statistics over axis 0), or declare "
                 "traits = LayerTraits(batch_dependent=True)")
        if not training:
            continue
        for i, dx_n in enumerate(backward(alone, dy[n:n + 1], len(xs))):
            if not close(dx_n[0], dxs[i][n]):
                fail(f"sample {n}'s input gradient alone to equal its gradient within the batch",
                     f"gradients differing by up to {max_diff(dx_n[0], dxs[i][n]):.3g}")
        for k in keys:
            summed[k] += alone.grads()[k]
    if training:
        for k in keys:
            if not close(summed[k], grads[k]):
                fail(f"the batch's gradient of {k!r} to be the sum of the per-sample gradients",
                     f"a difference of up to {max_diff(summed[k], grads[k]):.3g}",
                     "Sum parameter gradients over the batch axis (do not average: the loss "
                     "already divides by N)")


@check
def check_eval_deterministic(plugin: type, example: Any) -> None:
    layer, _ = build(plugin, example)
    xs = draw_inputs(plugin, example)
    first = forward(layer, xs, training=False)
    second = forward(layer, xs, training=False)
    if not np.array_equal(first, second):
        fail("two forward(training=False) calls on the same input to give the same output",
             f"outputs differing by up to {max_diff(first, second):.3g}",
             "Draw random numbers only when training, and update running statistics only "
             "when training")


@check
def check_training_flag(plugin: type, example: Any) -> None:
    layer, _ = build(plugin, example)
    xs = draw_inputs(plugin, example)
    first = forward(layer, xs, training=True)
    second = forward(layer, xs, training=True)
    if np.array_equal(first, second):
        fail("a stochastic layer to give different outputs in two forward(training=True) "
             "calls (a new mask each time)", "identical outputs",
             "Draw the mask from self.rng (the generator build() received) whenever training "
             "is true, or do not declare stochastic (Example.extra={'stochastic': False} for "
             "one example)")


@check
def check_backward_before_forward(plugin: type, example: Any) -> None:
    layer, out_shape = build(plugin, example)
    dy = rng(11).uniform(-1.0, 1.0, size=(BATCH, *out_shape))
    try:
        layer.backward(dy)
    except BackwardBeforeForwardError:
        return
    except Exception as exc:
        raise ConformanceError(
            "expected backward() before any forward() to raise "
            f"lamina.BackwardBeforeForwardError; received {type(exc).__name__}: {exc}. "
            "Start backward() with `... = self.cached()`"
        ) from exc
    fail("backward() before any forward() to raise lamina.BackwardBeforeForwardError",
         "no error", "Start backward() with `... = self.cached()`")


@check
def check_backward_twice(plugin: type, example: Any) -> None:
    layer, _ = build(plugin, example)
    xs = draw_inputs(plugin, example)
    dy = upstream(forward(layer, xs, training=True))
    first = backward(layer, dy, len(xs))
    grads = {k: g.copy() for k, g in layer.grads().items()}
    second = backward(layer, dy, len(xs))
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        if not np.array_equal(a, b):
            fail(f"a second backward(dy) to return the same input gradient {i}",
                 f"a difference of up to {max_diff(a, b):.3g}",
                 "Do not modify what forward() cached while running backward()")
    for k, g in layer.grads().items():
        if k in grads and not np.array_equal(g, grads[k]):
            fail(f"a second backward(dy) to leave grads()[{k!r}] unchanged (overwrite)",
                 f"a difference of up to {max_diff(g, grads[k]):.3g} (accumulated?)",
                 "Write gradients with out=... or g[...] = ..., never +=")


@check
def check_state_roundtrip(plugin: type, example: Any) -> None:
    source, _ = build(plugin, example, seed=0)
    target, _ = build(plugin, example, seed=1)
    xs = draw_inputs(plugin, example)
    for _ in range(2):  # move running statistics away from their initial values
        forward(source, xs, training=True)
    for what in ("params", "state"):
        src = getattr(source, what)() if hasattr(source, what) else {}
        dst = getattr(target, what)() if hasattr(target, what) else {}
        if set(src) != set(dst):
            fail(f"{what}() of two layers built from one config to have the same keys",
                 f"{sorted(src)} and {sorted(dst)}")
        for k, value in src.items():
            if dst[k].shape != value.shape:
                fail(f"{what}()[{k!r}] to have the same shape in two builds",
                     f"{value.shape} and {dst[k].shape}")
            dst[k][...] = value
    modes = (False,) if flag(plugin, example, "stochastic") else (False, True)
    for training in modes:
        a = forward(fresh_copy(source), xs, training=training)
        b = forward(fresh_copy(target), xs, training=training)
        if not np.allclose(a, b, rtol=1e-12, atol=0.0):
            fail(f"forward(training={training}) of a layer whose params() and state() were "
                 "copied into it to equal the original's",
                 f"outputs differing by up to {max_diff(a, b):.3g}",
                 "Keep everything forward() reads in the arrays params()/state() return (do "
                 "not cache derived copies), and declare running statistics in param_specs() "
                 "with trainable=False")


@check
def check_instances_independent(plugin: type, example: Any) -> None:
    """Two instances used in turn each compute what one used alone computes.

    Training runs one replica of every layer per shard, in parallel threads
    (lamina.runtime.parallel): state kept on the class or in a module, or randomness not
    drawn from the generator given to build(), would leak between the replicas."""
    alone, _ = build(plugin, example, seed=0)
    first, _ = build(plugin, example, seed=0)
    second, _ = build(plugin, example, seed=1)
    xs = draw_inputs(plugin, example)
    others = [x[::-1] * 0.5 for x in xs]  # other samples, inside the example's input range
    y_alone = forward(alone, xs, training=True)
    dy = upstream(y_alone)
    dx_alone = backward(alone, dy, len(xs))
    y = forward(first, xs, training=True)
    y_other = forward(second, others, training=True)
    dx = backward(first, dy, len(xs))
    backward(second, upstream(y_other), len(others))
    fix = ("Keep every buffer and cache on the instance (self), never on the class or in "
           "a module, and draw random numbers only from the generator build() received")
    if not close(y, y_alone):
        fail("forward() of an instance to be unaffected by another instance's forward()",
             f"outputs differing by up to {max_diff(y, y_alone):.3g}", fix)
    for i, (a, b) in enumerate(zip(dx, dx_alone, strict=True)):
        if not close(a, b):
            fail(f"backward() of an instance to return its own input gradient {i} after "
                 "another instance ran forward()",
                 f"a difference of up to {max_diff(a, b):.3g}", fix)
    for k, g in alone.grads().items():
        if not close(first.grads()[k], g):
            fail(f"grads()[{k!r}] of an instance to be unaffected by another instance",
                 f"a difference of up to {max_diff(first.grads()[k], g):.3g}", fix)


@check
def check_optimizer_step(plugin: type, example: Any) -> None:
    layer, _ = build(plugin, example)
    xs = draw_inputs(plugin, example)
    backward(layer, upstream(forward(layer, xs, training=True)), len(xs))
    unchanged = []
    for k in shared_keys(layer):
        before = layer.params()[k].copy()
        step = 0.1 * layer.grads()[k]
        live = layer.params()[k]
        live -= step
        if np.array_equal(layer.params()[k], before):
            why = ("its gradient is zero everywhere" if not np.any(step)
                   else "params() does not return the layer's live arrays")
            unchanged.append(f"{k!r} ({why})")
    if unchanged:
        fail("one plain gradient step p -= 0.1 * grad to change every trainable parameter",
             f"unchanged {', '.join(unchanged)}",
             "Write every gradient in backward(), and return the live arrays from params()")
