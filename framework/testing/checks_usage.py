"""The conformance checks of how the runner uses a layer beyond one call on its examples.

:mod:`lamina.testing.checks_layer` calls a fresh layer once on the author's examples.
The runner does more: one instance runs for a whole run, in eval mode between
training steps; a run is saved and loaded and goes on; the sharded step runs
replicas in threads at once; a user passes views of their arrays; a layer meets
every input rank it accepts, and values far from the examples' scale. Each check
here holds a layer to one of those, with inputs the suite makes from the author's
examples rather than the examples alone (as PyTorch's OpInfo samples do). That one
instance meets batches of every size (a short last batch, a single prediction) is
held by the gradient, float32 and input_grad=False checks themselves, which also run
on a layer that has already run on another batch size (:func:`lamina.testing.
checks_layer.situations`).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from typing import Any

import numpy as np

from lamina.errors import ShapeError

from .base import check, fail, fresh_copy
from .checks_layer import GRADIENT_FIX, gradient_problems
from .checks_training import FLOAT32_FIX, float32_problems
from .harness import (
    arrays_of,
    backward,
    build,
    close,
    copy_values,
    draw_inputs,
    flag,
    forward,
    input_shapes,
    max_diff,
    multi,
    shared_keys,
    upstream,
)

#: training steps before a layer's values are copied into a fresh one, and after, and
#: the batch size of each step (an epoch's last batch is short)
CONTINUATION_STEPS = (2, 2)
CONTINUATION_BATCHES = (3, 2, 4, 1)
#: the largest input magnitudes checked, for a layer defined on the whole line
LARGE_MAGNITUDES = (1e2, 1e4)
#: samples per replica and rounds in the threads check: a shard's worth of work per call
THREAD_BATCH = 32
THREAD_ROUNDS = 8


def _step(layer: Any, xs: list[np.ndarray], *, lr: float = 0.1) -> dict[str, Any]:
    """One training step on ``layer``: forward, backward, p -= lr * grad; what it gave."""
    y = forward(layer, xs, training=True)
    dxs = backward(layer, upstream(y), len(xs))
    grads = {k: v.copy() for k, v in layer.grads().items()}
    for key in shared_keys(layer):
        layer.params()[key] -= lr * layer.grads()[key]
    return {"y": y, "dx": dxs, "grads": grads}


@check
def check_eval_changes_nothing(plugin: type, example: Any) -> None:
    """An eval-mode forward leaves every array of the layer as it was, and its output on
    an input does not depend on what else was run before: ``predict`` and validation
    run eval forwards between training steps, in any order."""
    layer, _ = build(plugin, example)
    xs = draw_inputs(plugin, example)
    forward(layer, xs, training=True)  # running statistics away from their start
    before = {what: {k: v.copy() for k, v in arrays.items()}
              for what, arrays in arrays_of(layer).items() if what != "grads"}
    y = forward(layer, xs, training=False)
    changed = [f"{what}()[{key!r}] by up to {max_diff(arrays[key], before[what][key]):.3g}"
               for what, arrays in arrays_of(layer).items() if what in before
               for key in arrays if not np.array_equal(arrays[key], before[what][key])]
    if changed:
        fail("forward(training=False) to leave params() and state() unchanged",
             f"it changed {', '.join(changed)}",
             "Update running statistics only when training is true: predict and validation "
             "run eval forwards, and a prediction must not move the model")
    forward(layer, draw_inputs(plugin, example, seed=8), training=False)
    again = forward(layer, xs, training=False)
    if not np.array_equal(y, again):
        fail("forward(training=False) on an input to give the same output when another "
             "input ran in eval mode in between",
             f"outputs differing by up to {max_diff(y, again):.3g}",
             "Keep nothing from one eval forward for the next: an image's prediction must "
             "not depend on what was predicted before it")


@check
def check_continuation(plugin: type, example: Any) -> None:
    """After some training steps, a fresh layer given the first one's params() and
    state() goes on exactly as the first one does: outputs, gradients and state bit for
    bit. This is a resumed run (and a saved and loaded model) continuing like one that
    never stopped."""
    stochastic = flag(plugin, example, "stochastic")
    first, _ = build(plugin, example, seed=0)

    def batch(step: int) -> list[np.ndarray]:  # a new batch every step, of changing size
        return draw_inputs(plugin, example, n=CONTINUATION_BATCHES[step], seed=100 + step)

    def reseed(layer: Any, step: int) -> None:  # as the sharded step does every step
        if stochastic:
            layer.rng.bit_generator.state = np.random.PCG64([17, step]).state

    before, after = CONTINUATION_STEPS
    for step in range(before):
        reseed(first, step)
        _step(first, batch(step))
    loaded, _ = build(plugin, example, seed=1)
    copy_values(first, loaded)
    for step in range(before, before + after):
        results = []
        for layer in (first, loaded):
            reseed(layer, step)
            results.append({**_step(layer, batch(step)),
                            "state": {k: v.copy() for k, v in layer.state().items()}})
        a, b = results
        differ = ["output"] if not np.array_equal(a["y"], b["y"]) else []
        differ += [f"input gradient {i}" for i, (u, v) in enumerate(zip(a["dx"], b["dx"],
                                                                      strict=True))
                   if not np.array_equal(u, v)]
        differ += [f"grads()[{k!r}]" for k in a["grads"]
                   if not np.array_equal(a["grads"][k], b["grads"][k])]
        differ += [f"state()[{k!r}]" for k in a["state"]
                   if not np.array_equal(a["state"][k], b["state"][k])]
        if differ:
            fail(f"a layer given another's params() and state() after {before} training "
                 f"steps to go on exactly as that one does (step {step + 1})",
                 f"different {', '.join(differ)}",
                 "Keep everything a later step depends on in params() or state() (declared "
                 "in param_specs(), trainable=False for state): a flag or count kept "
                 "elsewhere on the instance is lost when a run is saved and loaded")


def other_rank_shapes(plugin: type, example: Any) -> list[Any]:
    """Input shapes of ranks the plugin's examples do not use but compute_output_shape
    accepts (one per rank): the shape with trailing or leading axes dropped, or small
    axes added; for a multi-input layer, every input alike."""
    shapes = input_shapes(plugin, example)
    covered = {len(input_shapes(plugin, ex)[0]) for ex in plugin.examples()}
    base = shapes[0]
    candidates = [base[:k] for k in range(len(base) - 1, 0, -1)]
    candidates += [base[k:] for k in range(1, len(base))]
    candidates += [(*base, 3), (*base, 3, 4)]  # no axis of 2: normalising over two
    # entries is degenerate (always +-1), which float32 cannot follow
    found: dict[int, Any] = {}
    layer = plugin(dict(example.config))
    for candidate in candidates:
        rank = len(candidate)
        if rank in covered or rank in found:
            continue
        arg = tuple(candidate for _ in shapes) if multi(plugin) else candidate
        try:
            layer.compute_output_shape(arg)
        except ShapeError:
            continue
        found[rank] = arg
    return list(found.values())


@check
def check_input_ranks(plugin: type, example: Any) -> None:
    """Every input rank compute_output_shape accepts, not only the examples' ranks, gives
    the shape it promises, the right gradient and agreeing float32 results: a network
    may feed the layer any of them."""
    training = not flag(plugin, example, "stochastic")
    for shape in other_rank_shapes(plugin, example):
        ranked = dataclasses.replace(example, input_shape=shape)
        layer, out_shape = build(plugin, ranked)
        xs = draw_inputs(plugin, ranked)
        y = forward(fresh_copy(layer), xs, training=training)
        where = f"on inputs of shape {shape} (a rank compute_output_shape accepts)"
        if y.shape[1:] != tuple(out_shape):
            fail(f"{where}: forward to give the per-sample shape {tuple(out_shape)} build() "
                 "returned", f"shape {y.shape[1:]}")
        bad = gradient_problems(layer, xs)
        if bad:
            fail(f"{where}: backward() to agree with float64 finite differences",
                 " | ".join(bad), f"{GRADIENT_FIX}; or refuse the rank in "
                 "compute_output_shape (raise ShapeError) if the layer is not meant for it")
        low, _ = build(plugin, ranked, dtype=np.float32)
        wrong = float32_problems(low, fresh_copy(layer),
                                 draw_inputs(plugin, ranked, dtype=np.float32), training)
        if wrong:
            fail(f"{where}: float32 results to agree with float64", ", ".join(wrong),
                 FLOAT32_FIX)


def _views(a: np.ndarray) -> dict[str, np.ndarray]:
    """The same values as ``a`` in other memory layouts, as users' arrays come."""
    strided = np.empty((*a.shape, 2), dtype=a.dtype)[..., 0]
    strided[...] = a
    views = {"a strided view": strided, "a Fortran-ordered copy": np.asfortranarray(a)}
    if a.ndim >= 2:
        views["a transposed view"] = np.ascontiguousarray(np.swapaxes(a, 0, -1)).swapaxes(0, -1)
    return views


@check
def check_memory_layouts(plugin: type, example: Any) -> None:
    """x and dy as strided views, Fortran-ordered or transposed arrays give what the same
    values in C order give: users pass views (lamina's own messages advise transposing
    channels-last images), and slices of a batch are views."""
    training = not flag(plugin, example, "stochastic")
    pristine, _ = build(plugin, example)
    xs = draw_inputs(plugin, example)

    def run(x_args: list[np.ndarray], dy: np.ndarray | None) -> tuple:
        layer = fresh_copy(pristine)
        y = np.array(layer.forward(x_args if multi(plugin) else x_args[0],
                                   training=training), copy=True)
        if dy is None:
            return y, None, None
        dx = layer.backward(dy, input_grad=True)
        dxs = [np.array(d, copy=True) for d in (dx if multi(plugin) else [dx])]
        return y, dxs, {k: v.copy() for k, v in layer.grads().items()}

    y, _, _ = run([x.copy() for x in xs], None)
    dy = upstream(y)
    reference = run([x.copy() for x in xs], dy.copy())
    cases = [(f"x as {name}", [_views(x)[name] for x in xs], dy.copy())
             for name in _views(xs[0])]
    cases += [(f"dy as {name}", [x.copy() for x in xs], view)
              for name, view in _views(dy).items()]
    for what, x_args, dy_arg in cases:
        got = run(x_args, dy_arg)
        differ = [] if close(got[0], reference[0]) else ["output"]
        differ += [f"input gradient {i}" for i, (a, b) in enumerate(zip(got[1], reference[1],
                                                                       strict=True))
                   if not close(a, b)]
        differ += [f"grads()[{k!r}]" for k in reference[2] if not close(got[2][k],
                                                                         reference[2][k])]
        if differ:
            fail(f"{what} to give what the same values in C order give",
                 f"a different {', '.join(differ)}",
                 "Never write through ravel() or reshape() of an array you did not make "
                 "C-contiguous (they copy a view, and the write is lost): use "
                 "np.ascontiguousarray(x), or compute into new arrays")


@check
def check_large_inputs(plugin: type, example: Any) -> None:
    """Inputs far beyond the examples' scale, and the float settings at their bounds, give
    float32 results that are finite wherever float64's are and agree with them: lamina
    trains in float32, on activations no example bounds."""
    training = not flag(plugin, example, "stochastic")
    problems = []
    if tuple(example.input_range) == (-1.0, 1.0):  # defined on the whole line
        for magnitude in LARGE_MAGNITUDES:
            low, _ = build(plugin, example, dtype=np.float32)
            high, _ = build(plugin, example)
            xs = [x * np.float32(magnitude) for x in
                  draw_inputs(plugin, example, dtype=np.float32)]
            with np.errstate(all="ignore"):
                wrong = float32_problems(low, high, xs, training, where_finite=True)
            problems += [f"inputs up to {magnitude:g}: {w}" for w in wrong]
    # A setting at its bound may make the layer random again (a dropout example at rate 0
    # declares itself not stochastic): compared as the class declares, not the example.
    training = not plugin.traits.stochastic
    for key, value in _float_settings_at_bounds(plugin, example):
        bounded = dataclasses.replace(example, config={**example.config, key: value},
                                      extra={})
        low, _ = build(plugin, bounded, dtype=np.float32)
        high, _ = build(plugin, bounded)
        with np.errstate(all="ignore"):
            wrong = float32_problems(low, high, draw_inputs(plugin, bounded, dtype=np.float32),
                                     training, where_finite=True)
        problems += [f"{key}={value:g}: {w}" for w in wrong]
    if problems:
        fail("float32 results to be finite wherever float64's are, and to agree with them as "
             "in check_float32_matches_float64, at large inputs and at the settings' bounds",
             "; ".join(problems),
             "Rewrite the formula so that no intermediate overflows in float32 (exp of a "
             "large number: use log1p(exp(-|x|)) + max(x, 0), or np.logaddexp; divide "
             "before multiplying)")


def _float_settings_at_bounds(plugin: type, example: Any) -> list[tuple[str, float]]:
    """(key, value) for every float setting at each finite bound it declares (just inside
    an exclusive one), where the config accepts it. Integer settings are sizes, left
    alone: at their bounds they allocate."""
    schema = plugin.Config.model_json_schema()
    found = []
    for key, prop in schema.get("properties", {}).items():
        if prop.get("type") != "number":
            continue
        ends = [prop.get("maximum"), prop.get("minimum")]
        for bound, inward in (("exclusiveMaximum", -1), ("exclusiveMinimum", 1)):
            if bound in prop:
                edge = prop[bound]
                ends.append(edge + inward * max(abs(edge), 1.0) * 1e-6)
        for value in ends:
            if value is None or value == example.config.get(key, prop.get("default")):
                continue
            try:
                plugin.Config.model_validate({**example.config, key: value})
            except Exception:  # a cross-field rule refuses it: not a setting to try
                continue
            found.append((key, float(value)))
    return found


@check
def check_threads(plugin: type, example: Any) -> None:
    """Two instances running forward and backward at once in two threads, many times, on
    batches of realistic size, give what each gives alone: the sharded step runs one
    replica per shard in parallel threads."""
    a, _ = build(plugin, example, seed=0)
    b, _ = build(plugin, example, seed=1)
    inputs = (draw_inputs(plugin, example, n=THREAD_BATCH, seed=41),
              draw_inputs(plugin, example, n=THREAD_BATCH, seed=42))

    def one_step(layer: Any, xs: list[np.ndarray]) -> dict[str, Any]:
        return _step(layer, xs, lr=0.0)

    expected = [one_step(fresh_copy(layer), xs) for layer, xs in zip((a, b), inputs,
                                                                      strict=True)]
    copies = [[fresh_copy(layer) for _ in range(THREAD_ROUNDS)] for layer in (a, b)]
    got: list[list[dict]] = [[], []]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            barrier.wait()
            for layer in copies[k]:
                got[k].append(one_step(layer, inputs[k]))
        except BaseException as exc:  # reported below, in the checking thread
            errors.append(exc)

    # The two threads take turns line by line in the plugin's own code (A runs a line,
    # then B runs its line, then A...): running the same code in step, each finds what
    # the other wrote between two of its lines, every round, not once in a while. A
    # thread outside the plugin's code is waited for only briefly.
    mine = plugin_code(plugin)
    turns = Turns()

    def tracer_of(k: int):
        def tracer(frame, event, arg):
            if not mine(frame.f_globals.get("__name__", "")):
                return None  # not the plugin's code: no line events from this frame
            if event == "line":
                turns.take(k)
            return tracer
        return tracer

    threads = [threading.Thread(target=traced, args=(tracer_of(k), work, k, turns))
               for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    for k in range(2):
        for round_, result in enumerate(got[k]):
            differ = [] if np.array_equal(result["y"], expected[k]["y"]) else ["output"]
            differ += [f"input gradient {i}" for i, (u, v) in enumerate(
                zip(result["dx"], expected[k]["dx"], strict=True)) if not np.array_equal(u, v)]
            differ += [f"grads()[{key!r}]" for key in result["grads"]
                       if not np.array_equal(result["grads"][key], expected[k]["grads"][key])]
            if differ:
                fail("two instances running at once in two threads to give what each gives "
                     "alone", f"a different {', '.join(differ)} (instance {k + 1}, round "
                     f"{round_ + 1} of {THREAD_ROUNDS})",
                     "Keep every buffer on the instance (self), never in a module or on the "
                     "class: the sharded step runs replicas of the layer in parallel threads")


def plugin_code(plugin: type):
    """Whether code of a module (by name) is the plugin's own: its package's modules, or,
    for lamina's built-ins, the plugin's module (lamina's kernels are tested apart). A
    class defined in a notebook or script belongs to ``__main__``."""
    module = plugin.__module__
    top = module.split(".")[0]
    if top == "lamina":
        return lambda name: name == module
    return lambda name: name == top or name.startswith(top + ".")


class Turns:
    """Two threads taking turns: ``take(k)`` waits (briefly) until it is thread k's turn,
    then gives the next turn to the other thread."""

    def __init__(self, patience: float = 0.005):
        self._cond = threading.Condition()
        self._turn = 0
        self._done: set[int] = set()
        self._patience = patience

    def take(self, k: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._turn == k or (1 - k) in self._done,
                                timeout=self._patience)
            self._turn = 1 - k
            self._cond.notify_all()

    def finish(self, k: int) -> None:
        with self._cond:
            self._done.add(k)
            self._cond.notify_all()


def traced(tracer: Any, work: Any, k: int, turns: Turns) -> None:
    """``work(k)`` with ``tracer`` as this thread's trace function."""
    sys.settrace(tracer)
    try:
        work(k)
    finally:
        sys.settrace(None)
        turns.finish(k)


def applies(check: Any, plugin: type, example: Any) -> bool:
    """Whether a usage check has anything to run on ``example``: another input rank the
    layer accepts, large inputs (a layer defined on the whole line) or float settings
    with bounds. One that has not is left out, rather than reported as passed."""
    if check is check_input_ranks:
        return bool(other_rank_shapes(plugin, example))
    if check is check_large_inputs:
        return tuple(example.input_range) == (-1.0, 1.0) or bool(
            _float_settings_at_bounds(plugin, example))
    return True


USAGE_CHECKS = [check_eval_changes_nothing, check_continuation,
                check_input_ranks, check_memory_layouts, check_large_inputs, check_threads]
