"""The conformance checks of a layer plugin, one contract each.

Every check builds its own layer from the class and the example's config, draws
its own data from a generator seeded with :data:`~lamina.testing.base.SEED`,
and hands the layer copies, so that one broken contract fails one check: a layer
that mutates its input fails :func:`check_input_not_mutated` and nothing else.
Layers run in float64 except in :func:`check_dtype_preserved`. A multi-input layer
(``multi_input = True``) gets a list of arrays and must return a list of gradients.

Per example, ``Example.extra`` may override the class flags ``stochastic`` and
``batch_dependent`` (a dropout with rate 0 is not stochastic).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lamina.errors import BackwardBeforeForwardError

from . import gradcheck
from .base import ConformanceError, check, describe_array, fail, fresh_copy, rng

BATCH = 3
_DTYPES = (np.float32, np.float64)


# -- helpers: one place that knows single- versus multi-input --------------------------
def flag(plugin: type, example: Any, name: str) -> bool:
    return bool(example.extra.get(name, getattr(plugin, name, False)))


def input_shapes(plugin: type, example: Any) -> list[tuple[int, ...]]:
    if getattr(plugin, "multi_input", False):
        return [tuple(shape) for shape in example.input_shape]
    return [tuple(example.input_shape)]


def build(plugin: type, example: Any, *, dtype=np.float64, seed: int = 0):
    layer = plugin(dict(example.config))
    out_shape = layer.build(example.input_shape, rng(seed), dtype=dtype)
    return layer, out_shape


def draw_inputs(plugin: type, example: Any, *, dtype=np.float64, n: int = BATCH):
    lo, hi = (float(v) for v in example.input_range)
    # Keep the finite-difference stencil inside the range the layer is defined on.
    margin = 2 * gradcheck.STEP if hi - lo > 8 * gradcheck.STEP else 0.0
    gen = rng(7)
    return [gen.uniform(lo + margin, hi - margin, size=(n, *shape)).astype(dtype)
            for shape in input_shapes(plugin, example)]


def forward(layer: Any, xs: list[np.ndarray], *, training: bool) -> np.ndarray:
    """The layer's output on copies of ``xs``, itself copied (layers may reuse buffers)."""
    arg = [x.copy() for x in xs] if getattr(layer, "multi_input", False) else xs[0].copy()
    return np.array(layer.forward(arg, training=training), copy=True)


def backward(layer: Any, dy: np.ndarray, n_inputs: int) -> list[np.ndarray]:
    dx = layer.backward(dy.copy())
    if not getattr(layer, "multi_input", False):
        return [np.array(dx, copy=True)]
    if not isinstance(dx, list | tuple) or len(dx) != n_inputs:
        fail(f"backward() of a multi-input layer to return a list of {n_inputs} gradients",
             repr(type(dx)) if not isinstance(dx, list | tuple) else f"{len(dx)} gradients")
    return [np.array(d, copy=True) for d in dx]


def upstream(y: np.ndarray, dtype=np.float64) -> np.ndarray:
    return rng(11).uniform(-1.0, 1.0, size=y.shape).astype(dtype)


def shared_keys(layer: Any) -> list[str]:
    grads = layer.grads()
    return [k for k in layer.params() if k in grads and grads[k].shape == layer.params()[k].shape]


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1.0)
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=1e-12 * scale)


# -- the checks -------------------------------------------------------------------------
@check
def check_output_shape(plugin: type, example: Any) -> None:
    layer, out_shape = build(plugin, example)
    if not (isinstance(out_shape, tuple) and all(isinstance(d, int | np.integer)
                                                 for d in out_shape)):
        fail("build() to return the per-sample output shape as a tuple of ints",
             repr(out_shape))
    xs = draw_inputs(plugin, example)
    for training in (True, False):
        y = forward(layer, xs, training=training)
        if y.shape != (BATCH, *out_shape):
            fail(f"forward(training={training}) on a batch of {BATCH} to give shape "
                 f"{(BATCH, *out_shape)} (batch + the shape build() returned)",
                 f"shape {y.shape}",
                 "Make build() compute the output shape the way forward() does")


@check
def check_params_grads_match(plugin: type, example: Any) -> None:
    layer, _ = build(plugin, example)

    def compare(when: str) -> None:
        params, grads = layer.params(), layer.grads()
        if set(params) != set(grads):
            fail(f"params() and grads() {when} to have the same keys",
                 f"params {sorted(params)} and grads {sorted(grads)}",
                 "Register every parameter with add_param(), which creates its gradient")
        for key, p in params.items():
            g = grads[key]
            if g.shape != p.shape or g.dtype != p.dtype:
                fail(f"grads()[{key!r}] {when} to match its parameter, {describe_array(p)}",
                     describe_array(g))

    compare("after build")
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
        found |= {"forward output": y.dtype}
        found |= {f"backward output {i}": dx.dtype for i, dx in enumerate(dxs)}
        wrong = {what: str(got) for what, got in found.items() if got != want}
        if wrong:
            fail(f"every array to stay {want} when built with dtype={want.name} and fed "
                 f"{want.name} inputs", ", ".join(f"{k}: {v}" for k, v in wrong.items()),
                 "Create parameters with the dtype passed to build() and avoid float64 "
                 "constants that upcast (cast scalars with x.dtype.type(...))")


@check
def check_input_not_mutated(plugin: type, example: Any) -> None:
    layer, _ = build(plugin, example)
    xs = draw_inputs(plugin, example)
    originals = [x.copy() for x in xs]
    arg = xs if getattr(plugin, "multi_input", False) else xs[0]
    y = np.array(layer.forward(arg, training=True), copy=True)
    dy = upstream(y)
    dy_original = dy.copy()
    layer.backward(dy)
    layer.forward(arg, training=False)
    for i, (x, x0) in enumerate(zip(xs, originals, strict=True)):
        if not np.array_equal(x, x0):
            fail(f"input {i} to be unchanged by forward() and backward()",
                 f"an input changed by up to {_max_diff(x, x0):.3g}",
                 "Compute into new arrays (np.maximum(x, 0), not np.maximum(x, 0, out=x))")
    if not np.array_equal(dy, dy_original):
        fail("the upstream gradient dy to be unchanged by backward()",
             f"dy changed by up to {_max_diff(dy, dy_original):.3g}",
             "Use dx = dy * mask rather than dy *= mask")


@check
def check_gradient(plugin: type, example: Any) -> None:
    pristine, _ = build(plugin, example)
    xs = draw_inputs(plugin, example)
    analytic = fresh_copy(pristine)
    y = forward(analytic, xs, training=True)
    dy = upstream(y)
    dxs = backward(analytic, dy, len(xs))
    grads = {k: analytic.grads()[k].copy() for k in shared_keys(analytic)}
    for i, (dx, x) in enumerate(zip(dxs, xs, strict=True)):
        if dx.shape != x.shape:
            fail(f"the gradient of input {i} to have its shape {x.shape}", f"shape {dx.shape}")

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
    reports = [gradcheck.compare(name.format(i), dx, evaluate_input(i), dy,
                                 gradcheck.sample_indices(dx.shape, gen))
               for i, dx in enumerate(dxs)]
    reports += [gradcheck.compare(f"d{key}", g, evaluate_param(key), dy,
                                  gradcheck.sample_indices(g.shape, gen))
                for key, g in grads.items()]
    bad = [r for r in reports if not r.ok]
    if bad:
        fail("backward() to agree with float64 central finite differences of sum(y * dy)",
             " | ".join(r.describe() for r in bad),
             "Check the derivation (signs, factors, transposes, broadcast axes summed) and "
             "that backward() uses the mask/statistics of the forward() it follows")


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
        if not _close(y_n[0], y[n]):
            fail(f"sample {n}'s output alone to equal its output within a batch of {BATCH}",
                 f"outputs differing by up to {_max_diff(y_n[0], y[n]):.3g}",
                 "Do not mix samples (no statistics over axis 0), or declare the layer "
                 "batch_dependent = True")
        if not training:
            continue
        for i, dx_n in enumerate(backward(alone, dy[n:n + 1], len(xs))):
            if not _close(dx_n[0], dxs[i][n]):
                fail(f"sample {n}'s input gradient alone to equal its gradient within the batch",
                     f"gradients differing by up to {_max_diff(dx_n[0], dxs[i][n]):.3g}")
        for k in keys:
            summed[k] += alone.grads()[k]
    if training:
        for k in keys:
            if not _close(summed[k], grads[k]):
                fail(f"the batch's gradient of {k!r} to be the sum of the per-sample gradients",
                     f"a difference of up to {_max_diff(summed[k], grads[k]):.3g}",
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
             f"outputs differing by up to {_max_diff(first, second):.3g}",
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
             "Draw the mask from the generator passed to build() whenever training is true, "
             "or set stochastic = False (Example.extra={'stochastic': False} for one example)")


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
                 f"a difference of up to {_max_diff(a, b):.3g}",
                 "Do not modify what forward() cached while running backward()")
    for k, g in layer.grads().items():
        if k in grads and not np.array_equal(g, grads[k]):
            fail(f"a second backward(dy) to leave grads()[{k!r}] unchanged (overwrite)",
                 f"a difference of up to {_max_diff(g, grads[k]):.3g} (accumulated?)",
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
                 f"outputs differing by up to {_max_diff(a, b):.3g}",
                 "Keep everything forward() reads in the arrays params()/state() return (do "
                 "not cache derived copies at build time), and register running statistics "
                 "with add_state()")


@check
def check_instances_independent(plugin: type, example: Any) -> None:
    """Two instances used in turn each compute what one used alone computes.

    Training runs one replica of every layer per shard, in parallel threads
    (lamina.parallel): state kept on the class or in a module, or randomness not
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
    if not _close(y, y_alone):
        fail("forward() of an instance to be unaffected by another instance's forward()",
             f"outputs differing by up to {_max_diff(y, y_alone):.3g}", fix)
    for i, (a, b) in enumerate(zip(dx, dx_alone, strict=True)):
        if not _close(a, b):
            fail(f"backward() of an instance to return its own input gradient {i} after "
                 "another instance ran forward()",
                 f"a difference of up to {_max_diff(a, b):.3g}", fix)
    for k, g in alone.grads().items():
        if not _close(first.grads()[k], g):
            fail(f"grads()[{k!r}] of an instance to be unaffected by another instance",
                 f"a difference of up to {_max_diff(first.grads()[k], g):.3g}", fix)


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


def layer_checks(plugin: type, example: Any) -> list:
    """The checks that apply to ``example`` of ``plugin``, in the order they run."""
    checks = [
        check_output_shape, check_params_grads_match, check_dtype_preserved,
        check_input_not_mutated, check_gradient,
    ]
    if not flag(plugin, example, "batch_dependent"):
        checks.append(check_batch_independence)
    checks.append(check_eval_deterministic)
    if flag(plugin, example, "stochastic"):
        checks.append(check_training_flag)
    checks += [check_backward_before_forward, check_backward_twice, check_state_roundtrip,
               check_instances_independent, check_optimizer_step]
    return checks
