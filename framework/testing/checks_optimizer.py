"""The conformance checks of an optimizer plugin.

Every check runs the optimizer on the same small convex problem,

    f(p) = 1/2 sum_k sum_i a_ki (p_ki - p*_ki)^2,    grad_k = a_k * (p_k - p*_k)

over parameters named and shaped as a network's are (``conv2d_1.W``, ``dense_1.b``,
``batchnorm_1.gamma``...: weights, biases and normalisation scales, which settings
such as a decay exemption tell apart), with curvatures a in [0.5, 2] and a target p*
drawn from a seeded generator. What is checked is what training relies on: the
optimizer makes progress, updates the arrays it is given in place and keeps their
dtype, reads the learning rate a schedule sets (as if configured with it), every
setting it has changes something, and its state survives a checkpoint (an ``.npz``
file) bit for bit, while a state that does not fit is refused before anything
changes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from lamina.errors import LaminaError

from .base import ConformanceError, check, fail, rng

SHAPES = {"conv2d_1.W": (2, 1, 2, 2), "conv2d_1.b": (2,), "batchnorm_1.gamma": (2,),
          "batchnorm_1.beta": (2,), "dense_1.W": (3, 4), "dense_1.b": (4,)}
STEPS = 100
#: ``f`` after STEPS steps must be below this fraction of its start
PROGRESS = 0.5


@dataclass(frozen=True)
class Problem:
    start: dict[str, np.ndarray]
    target: dict[str, np.ndarray]
    curvature: dict[str, np.ndarray]

    def params(self, dtype: Any = np.float64) -> dict[str, np.ndarray]:
        """New arrays holding the starting point."""
        return {key: value.astype(dtype) for key, value in self.start.items()}

    def grads(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {key: (self.curvature[key] * (p - self.target[key])).astype(p.dtype)
                for key, p in params.items()}

    def value(self, params: dict[str, np.ndarray]) -> float:
        return float(sum(0.5 * np.sum(self.curvature[k] * (p - self.target[k]) ** 2)
                         for k, p in params.items()))


def problem() -> Problem:
    gen = rng(51)
    start = {k: gen.normal(0.0, 1.0, s) for k, s in SHAPES.items()}
    target = {k: gen.normal(0.0, 1.0, s) for k, s in SHAPES.items()}
    curvature = {k: gen.uniform(0.5, 2.0, s) for k, s in SHAPES.items()}
    return Problem(start, target, curvature)


def new_optimizer(plugin: type, example: Any) -> Any:
    return plugin(dict(example.config))


def run(optimizer: Any, task: Problem, params: dict[str, np.ndarray], steps: int) -> None:
    for _ in range(steps):
        optimizer.step(params, task.grads(params))


def _copies(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: value.copy() for key, value in params.items()}


def _differ(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


@check
def check_optimizer_reduces_loss(plugin: type, example: Any) -> None:
    task = problem()
    params = task.params()
    start = task.value(params)
    run(new_optimizer(plugin, example), task, params, STEPS)
    end = task.value(params)
    if not end < PROGRESS * start:
        fail(f"{STEPS} steps on the convex f(p) = 1/2 sum a (p - p*)^2 to bring f below "
             f"{PROGRESS:g} of its start {start:.6g}", f"f = {end:.6g} after them",
             "Move against the gradient (p -= lr * ...) and check the update's factors; if "
             "the example's lr is too small for this, give the example a larger one")


@check
def check_optimizer_in_place(plugin: type, example: Any) -> None:
    task = problem()
    params = task.params()
    held = dict(params)
    before = _copies(params)
    run(new_optimizer(plugin, example), task, params, 1)
    for key, array in held.items():
        if params[key] is not array:
            fail(f"step() to update params[{key!r}] in place", "a new array put in the dict",
                 "Write into the given arrays (p -= lr * g, np.subtract(p, d, out=p)): the "
                 "network's layers hold them and never see a new one")
        if np.array_equal(array, before[key]):
            fail(f"step() to change params[{key!r}] (its gradient is not zero)",
                 "the same values", "Update every parameter the dict holds")


@check
def check_optimizer_dtype_preserved(plugin: type, example: Any) -> None:
    task = problem()
    params = task.params(np.float32)
    optimizer = new_optimizer(plugin, example)
    run(optimizer, task, params, 3)
    wrong = {f"params[{k!r}]": str(v.dtype) for k, v in params.items() if v.dtype != np.float32}
    wrong |= {f"state_dict()[{k!r}]": str(np.asarray(v).dtype)
              for k, v in optimizer.state_dict().items()
              if np.ndim(v) > 0 and np.asarray(v).dtype != np.float32}
    if wrong:
        fail("float32 parameters and their per-parameter state to stay float32",
             ", ".join(f"{k}: {v}" for k, v in wrong.items()),
             "Create state with np.zeros_like(p) and compute in the parameter's dtype")


@check
def check_optimizer_lr_settable(plugin: type, example: Any) -> None:
    task = problem()
    full, tenth = new_optimizer(plugin, example), new_optimizer(plugin, example)
    tenth.lr = full.lr / 10
    moved = {}
    for name, optimizer in (("lr", full), ("lr / 10", tenth)):
        params = task.params()
        run(optimizer, task, params, 1)
        moved[name] = _differ(params, task.start)
    if not 0 < moved["lr / 10"] < 0.5 * moved["lr"]:
        fail("a first step after setting optimizer.lr to a tenth to move the parameters less "
             "than half as far (schedules set lr between steps)",
             f"moves of {moved['lr']:.3g} with lr and {moved['lr / 10']:.3g} with lr / 10",
             "Read self.lr in every step; never keep a copy of config.lr")


@check
def check_optimizer_lr_set_at_run_time(plugin: type, example: Any) -> None:
    """Setting ``optimizer.lr = v`` between steps gives, bit for bit, what an optimizer
    configured with ``lr = v`` gives: the schedules set ``lr`` during training, and every
    part of the update (a decay term too) must follow it."""
    task = problem()
    # the example's config, and each other setting moved once: a part of the update that
    # only acts when a setting is on (a weight decay off by default) is tried too
    configs = [dict(example.config)]
    configs += [{**example.config, key: values[0]}
                for key, values in setting_values(plugin, example).items() if key != "lr"]
    for config in configs:
        try:
            value = plugin(config).lr / 3
        except Exception:  # the config refuses this value (a cross-field rule)
            continue
        scheduled = plugin(config)
        scheduled.lr = value
        configured = plugin({**config, "lr": value})
        a, b = task.params(), task.params()
        run(scheduled, task, a, 5)
        run(configured, task, b, 5)
        if any(not np.array_equal(a[k], b[k]) for k in a):
            fail(f"5 steps after setting optimizer.lr = v to give bit for bit what an optimizer "
                 f"configured with lr = v gives (config {config})",
                 f"parameters differing by up to {_differ(a, b):.3g}",
                 "Read self.lr wherever the update uses the learning rate (a decoupled "
                 "weight decay too), never self.config.lr")


@check
def check_optimizer_settings_matter(plugin: type, example: Any) -> None:
    """Every setting, moved away from its value, changes the updates on the suite's
    problem (whose parameters are named and shaped as a network's), unless the class
    declares it inert with the reason (``inert_settings``): a setting that silently does
    nothing (names compared in another form than the runner's) is a bug a run never
    shows."""
    task = problem()
    reference = task.params()
    run(new_optimizer(plugin, example), task, reference, 5)
    inert = getattr(plugin, "inert_settings", {})
    idle = []
    for key, candidates in setting_values(plugin, example).items():
        if key == "lr" or key in inert:
            continue
        tried = []
        for value in candidates:
            try:
                optimizer = plugin({**example.config, key: value})
            except Exception:  # the config refuses this value (a cross-field rule)
                continue
            params = task.params()
            run(optimizer, task, params, 5)
            tried.append(repr(value))
            if any(not np.array_equal(params[k], reference[k]) for k in params):
                break
        else:
            if tried:
                idle.append(f"{key} = {' or '.join(tried)}")
    if idle:
        fail(f"every setting, changed, to change the updates of 5 steps on parameters named "
             f"{', '.join(SHAPES)}", f"no change from {'; '.join(idle)}",
             "Check how the setting reaches the update (parameter names arrive dotted, as "
             "'dense_1.b'); if it only matters on another kind of problem, declare it: "
             "inert_settings = {'setting': 'why'}")


def setting_values(plugin: type, example: Any) -> dict[str, list[Any]]:
    """For each setting of the config, values other than the example's to try: the other
    bool, the other choices, numbers inside the bounds, and for a list of names the
    forms a parameter's name may take (dotted names, keys, layer names, biases)."""
    schema = plugin.Config.model_json_schema()
    defs = schema.get("$defs", {})
    values: dict[str, list[Any]] = {}
    dotted = list(SHAPES)
    forms = [dotted, [k.split(".", 1)[1] for k in dotted],
             sorted({k.split(".", 1)[0] for k in dotted}),
             [k for k in dotted if not k.endswith(".W")],
             sorted({k.split(".", 1)[1] for k in dotted if not k.endswith(".W")})]
    for key, prop in schema.get("properties", {}).items():
        current = example.config.get(key, prop.get("default"))
        branch = prop
        if "$ref" in prop:
            branch = {**defs.get(prop["$ref"].rsplit("/", 1)[-1], {}), **prop}
        if "anyOf" in branch:  # an optional setting (float | None): its value's branch
            usable = [b for b in branch["anyOf"] if b.get("type") != "null"]
            branch = usable[0] if len(usable) == 1 else branch
        kind = branch.get("type")
        choices = [v for v in [*branch.get("enum", []), branch.get("const")] if v is not None]
        if kind == "boolean":
            found = [not current]
        elif choices:
            found = [v for v in choices if v != current]
        elif kind in ("number", "integer"):
            found = _numbers_within(branch, current, kind == "integer")
        elif kind == "array" and branch.get("items", {}).get("type") == "string":
            found = [f for f in forms if f != current]
        else:
            found = []
        if found:
            values[key] = found
    return values


def _numbers_within(prop: dict[str, Any], current: Any, integer: bool) -> list[Any]:
    lo = prop.get("minimum", prop.get("exclusiveMinimum"))
    hi = prop.get("maximum", prop.get("exclusiveMaximum"))
    base = current if isinstance(current, int | float) and not isinstance(current, bool) \
        else (lo if lo is not None else 0)
    # twice and half the value, a hundredth (a threshold this problem then reaches), and
    # the middle of the bounds
    candidates = [base * 2 if base else 1, base / 2 if base else 0.5,
                  base / 100 if base else 0.01]
    if lo is not None and hi is not None:
        candidates.append((lo + hi) / 2)
    found = []
    for value in candidates:
        value = round(value) if integer else float(value)
        if value == current or value in found:
            continue
        if ("minimum" in prop and value < prop["minimum"]) or \
                ("exclusiveMinimum" in prop and value <= prop["exclusiveMinimum"]) or \
                ("maximum" in prop and value > prop["maximum"]) or \
                ("exclusiveMaximum" in prop and value >= prop["exclusiveMaximum"]):
            continue
        found.append(value)
    return found


@check
def check_optimizer_state_roundtrip(plugin: type, example: Any) -> None:
    task = problem()
    params = task.params()
    original = new_optimizer(plugin, example)
    run(original, task, params, 3)
    saved = original.state_dict()
    snapshot = {key: np.array(value, copy=True) for key, value in saved.items()}
    buffer = io.BytesIO()
    try:
        np.savez(buffer, **saved)
        buffer.seek(0)
        with np.load(buffer, allow_pickle=False) as npz:
            restored = {key: npz[key] for key in npz.files}
    except Exception as exc:
        raise ConformanceError(
            "expected state_dict() to survive an .npz file (loaded with allow_pickle=False), "
            f"as checkpoints store it; received {type(exc).__name__}: {exc}. Return a dict of "
            "numeric NumPy arrays under string keys"
        ) from exc
    resumed = new_optimizer(plugin, example)
    resumed.load_state_dict(restored)
    twin = _copies(params)
    run(original, task, params, 4)
    run(resumed, task, twin, 4)
    if any(not np.array_equal(params[k], twin[k]) for k in params):
        fail("3 steps, state_dict() through an .npz file into a new optimizer, then 4 more "
             "steps to give bit for bit what 7 steps of one optimizer give",
             f"parameters differing by up to {_differ(params, twin):.3g}",
             "Save every piece of state (moments, step counts, lr) in state_dict() and "
             "restore all of it in load_state_dict()")
    changed = [key for key, value in saved.items()
               if not np.array_equal(np.asarray(value), snapshot[key])]
    if changed:
        fail("a saved state_dict() to stay as it was while the optimizer steps on",
             f"{changed} changed", "Return copies of the state arrays from state_dict()")


@check
def check_optimizer_rejects_bad_state(plugin: type, example: Any) -> None:
    task = problem()
    params = task.params()
    optimizer = new_optimizer(plugin, example)
    run(optimizer, task, params, 2)
    state = optimizer.state_dict()
    first = next(iter(params))
    cases = {f"without {key!r}": {k: v for k, v in state.items() if k != key} for key in state}
    cases["with an unexpected 'lamina_conformance_unknown'"] = {
        **state, "lamina_conformance_unknown": np.zeros(1)}
    cases[f"with an unexpected 'lamina_conformance_slot/{first}'"] = {
        **state, f"lamina_conformance_slot/{first}": np.zeros_like(params[first])}
    accepted = []
    for what, bad in cases.items():
        fresh, values = new_optimizer(plugin, example), _copies(params)
        try:
            fresh.load_state_dict(bad)
            fresh.step(values, task.grads(values))
        except LaminaError:
            if _differ(values, params) != 0:
                fail(f"a state {what}, once refused, to leave the parameters unchanged",
                     "parameters changed before the error",
                     "Check the whole state before updating any parameter")
            continue
        except Exception as exc:
            raise ConformanceError(
                f"expected a state {what} to be refused with lamina.StateError at "
                f"load_state_dict() or at the next step; received {type(exc).__name__}: {exc}"
                ". Subclass lamina.Optimizer, which checks states"
            ) from exc
        accepted.append(what)
    if accepted:
        fail("a state dict with a missing or foreign entry to be refused (lamina.StateError) "
             "at load_state_dict() or at the next step, before anything changes",
             f"it took the state {'; '.join(accepted)} and stepped on",
             "Check in load_state_dict() that every entry is one the optimizer keeps and "
             "none is missing (lamina.Optimizer does, from state_slots() and state_counters)")


OPTIMIZER_CHECKS = [check_optimizer_reduces_loss, check_optimizer_in_place,
                    check_optimizer_dtype_preserved, check_optimizer_lr_settable,
                    check_optimizer_lr_set_at_run_time, check_optimizer_settings_matter,
                    check_optimizer_state_roundtrip, check_optimizer_rejects_bad_state]


def optimizer_checks(plugin: type, example: Any) -> list:
    from .checks_reference import check_optimizer_reference_values

    reference = [check_optimizer_reference_values] if example.reference is not None else []
    return [*OPTIMIZER_CHECKS, *reference]
