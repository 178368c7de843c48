"""The conformance checks of values worked out by hand.

Every other check compares a plugin with itself: a gradient with finite differences
of its own forward, float32 with its own float64, a shard with the whole batch. A
plugin that computes another formula than the one it documents (a momentum applied
the other way round, a variance divided by m - 1) is self-consistent and passes
them all. Only values the author works out from the derivation can tell, so an
example may carry them (:class:`lamina.Reference`, :class:`lamina.LossReference`,
:class:`lamina.OptimizerReference`) and these checks compare. Every built-in plugin
has one, taken from its page in docs/layers/ (or docs/losses/, docs/optimizers.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import check, fail
from .harness import backward, build, forward, multi

FIX = ("Work the values out again from the derivation; if they hold, the implementation "
       "computes another formula than the one documented")


def _as_list(value: Any, several: bool) -> list[np.ndarray]:
    return [np.asarray(v, dtype=np.float64) for v in (value if several else [value])]


def _differs(got: np.ndarray, want: Any, tolerance: float) -> bool:
    want = np.asarray(want, dtype=np.float64)
    return got.shape != want.shape or not np.allclose(got, want, rtol=tolerance,
                                                      atol=tolerance)


def _shown(a: Any) -> str:
    return np.array2string(np.asarray(a, dtype=np.float64), precision=8, threshold=20,
                           separator=", ")


@check
def check_reference_values(plugin: type, example: Any) -> None:
    """The layer computes the values worked out by hand for the example: eval output,
    and (when given) the training output, state, input and parameter gradients."""
    ref = example.reference
    several = multi(plugin)
    xs = _as_list(ref.x, several)
    tol = ref.tolerance

    def prepared() -> Any:
        layer, _ = build(plugin, example)
        for what, values in (("params", ref.params), ("state", ref.state)):
            arrays = getattr(layer, what)()
            for key, value in values.items():
                if key not in arrays or arrays[key].shape != np.shape(value):
                    fail(f"the reference's {what}[{key!r}] to fit the layer's "
                         f"{what}() (keys {sorted(arrays)})",
                         f"shape {np.shape(value)}" if key in arrays else "no such key",
                         "Fix the reference's keys and shapes")
                arrays[key][...] = value
        return layer

    wrong = []
    y = forward(prepared(), xs, training=False)
    if _differs(y, ref.y, tol):
        wrong.append(f"forward(training=False) gave {_shown(y)} where {_shown(ref.y)} was "
                     "worked out")
    training = ref.y_training is not None or ref.state_after or ref.dy is not None
    if training:
        layer = prepared()
        y = forward(layer, xs, training=True)
        if ref.y_training is not None and _differs(y, ref.y_training, tol):
            wrong.append(f"forward(training=True) gave {_shown(y)} where "
                         f"{_shown(ref.y_training)} was worked out")
        for key, want in ref.state_after.items():
            got = layer.state().get(key)
            if got is None or _differs(got, want, tol):
                wrong.append(f"state()[{key!r}] after the training forward was "
                             f"{_shown(got) if got is not None else 'missing'} where "
                             f"{_shown(want)} was worked out")
        if ref.dy is not None:
            dxs = backward(layer, np.asarray(ref.dy, dtype=np.float64), len(xs))
            if ref.dx is not None:
                for i, (got, want) in enumerate(zip(dxs, _as_list(ref.dx, several),
                                                    strict=True)):
                    if _differs(got, want, tol):
                        wrong.append(f"input gradient {i} was {_shown(got)} where "
                                     f"{_shown(want)} was worked out")
            for key, want in ref.grads.items():
                got = layer.grads().get(key)
                if got is None or _differs(got, want, tol):
                    wrong.append(f"grads()[{key!r}] was "
                                 f"{_shown(got) if got is not None else 'missing'} where "
                                 f"{_shown(want)} was worked out")
    if wrong:
        fail(f"the values worked out by hand for example {example.id!r}, within {tol:g}",
             "; ".join(wrong), FIX)


@check
def check_loss_reference_values(plugin: type, example: Any) -> None:
    """The loss computes the value, gradient (and probabilities) worked out by hand."""
    ref = example.reference
    z = np.asarray(ref.z, dtype=np.float64)
    loss = plugin(dict(example.config))
    value = loss.forward(z.copy(), np.asarray(ref.targets).copy())
    dz = np.array(loss.backward(), copy=True)
    wrong = []
    if not np.isclose(value, ref.value, rtol=ref.tolerance, atol=ref.tolerance):
        wrong.append(f"the loss was {float(value)!r} where {float(ref.value)!r} was worked out")
    if ref.dz is not None and _differs(dz, ref.dz, ref.tolerance):
        wrong.append(f"the gradient was {_shown(dz)} where {_shown(ref.dz)} was worked out")
    if ref.proba is not None:
        proba = np.asarray(plugin(dict(example.config)).predict_proba(z.copy()),
                           dtype=np.float64)
        if _differs(proba, ref.proba, ref.tolerance):
            wrong.append(f"predict_proba gave {_shown(proba)} where {_shown(ref.proba)} was "
                         "worked out")
    if wrong:
        fail(f"the values worked out by hand for example {example.id!r}, within "
             f"{ref.tolerance:g}", "; ".join(wrong), FIX)


@check
def check_optimizer_reference_values(plugin: type, example: Any) -> None:
    """The optimizer's steps end where the values worked out by hand say."""
    ref = example.reference
    params = {k: np.array(v, dtype=np.float64) for k, v in ref.params.items()}
    optimizer = plugin(dict(example.config))
    for grads in ref.grads:
        optimizer.step(params, {k: np.asarray(v, dtype=np.float64) for k, v in grads.items()})
    wrong = [f"{key} was {_shown(params[key])} where {_shown(want)} was worked out"
             for key, want in ref.expected.items() if _differs(params[key], want, ref.tolerance)]
    if wrong:
        fail(f"{len(ref.grads)} step(s) from the reference's parameters to end at the values "
             f"worked out by hand for example {example.id!r}, within {ref.tolerance:g}",
             "; ".join(wrong), FIX)
