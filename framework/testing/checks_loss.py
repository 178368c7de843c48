"""The conformance checks of a loss plugin.

Each check makes a fresh loss from the class and the example's config and feeds it
float64 logits (N, C) drawn from a seeded generator, with targets in each form the
loss declares (``traits.targets``): for a classification loss class indices (N,),
one-hot rows and soft labels (N, C); for a value loss real-valued rows (N, C) drawn
from N(0, 2^2) (``"values"``) and rows of independent entries in [0, 1]
(``"multilabel"``: uniform probabilities, and 0/1 labels).

The checks of class targets (one-hot rows against indices, soft labels counting whole)
and of a softmax run on classification losses only, as each runs only on a loss that
declares what it checks; on a value loss, ``check_loss_predict_proba`` holds its
predictions to their shape (and to [0, 1] for a loss that takes multilabel targets
only) rather than to rows summing to 1, and ``check_loss_rejects_undeclared_targets``
tries class indices (C > 1) and, for a multilabel loss, values outside [0, 1].

Two checks only make sense for a loss built on a softmax of the logits:
:func:`check_loss_unfused_reference` (the loss is softmax cross-entropy) and
:func:`check_loss_row_invariance`. They apply when the class declares
``softmax_cross_entropy=True`` in its :class:`lamina.LossTraits`, or, when it does not
say, when its ``predict_proba`` is the row softmax of the logits. A softmax-based loss
that is not plain cross-entropy (label smoothing, focal) declares ``False``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lamina.errors import BackwardBeforeForwardError, DataError
from lamina.loss import CLASS_TARGETS

from . import gradcheck
from .base import ConformanceError, check, describe_array, fail, rng
from .checks_training import FLOAT32_TOLERANCE

ROWS = 4


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def logits(example: Any, scale: float = 2.0) -> np.ndarray:
    return rng(21).normal(0.0, scale, size=(ROWS, example.n_classes))


def all_targets(example: Any, n: int = ROWS, seed: int = 23) -> dict[str, np.ndarray]:
    """Targets of every form, by the names of :data:`lamina.TARGET_FORMS`."""
    gen = rng(seed)
    c = example.n_classes
    indices = gen.integers(0, c, size=n)
    # The class forms are drawn first: they are what they were before value targets came.
    forms = {"indices": indices, "one_hot": np.eye(c)[indices],
             "soft": gen.dirichlet(np.ones(c), size=n)}
    forms["values"] = gen.normal(0.0, 2.0, size=(n, c))
    forms["multilabel"] = gen.uniform(0.0, 1.0, size=(n, c))
    return forms


def classifies(plugin: type) -> bool:
    return bool(plugin.traits.classifies)


def targets(plugin: type, example: Any, n: int = ROWS, seed: int = 23
            ) -> dict[str, np.ndarray]:
    """Targets of the forms ``plugin`` declares it accepts, by a label naming the form (a
    multilabel loss gets probabilities and 0/1 labels)."""
    forms = all_targets(example, n, seed)
    found = {form: t for form, t in forms.items() if form in accepted(plugin)}
    if "multilabel" in found:
        found["multilabel 0/1"] = (forms["multilabel"] < 0.5).astype(np.float64)
    return found


def main_targets(plugin: type, example: Any) -> np.ndarray:
    """The targets training feeds: class indices for a classification loss, else rows of
    the first form the value loss declares."""
    if classifies(plugin):
        return all_targets(example)["indices"]
    return targets(plugin, example)[accepted(plugin)[0]]


def undeclared_targets(plugin: type, example: Any) -> dict[str, np.ndarray]:
    """Targets of forms the loss must refuse: for a classification loss the class forms it
    leaves out; for a value loss class indices (when C > 1: with one output a 1-D array is
    one value per sample) and, when it takes multilabel rows only, values outside [0, 1]."""
    forms = all_targets(example)
    if classifies(plugin):
        return {form: forms[form] for form in CLASS_TARGETS if form not in accepted(plugin)}
    refused = {"indices": forms["indices"]} if example.n_classes > 1 else {}
    if "values" not in accepted(plugin):
        refused["values"] = forms["values"]
    return refused


def accepted(plugin: type) -> tuple[str, ...]:
    return tuple(plugin.traits.targets)


def richest_targets(plugin: type, example: Any) -> tuple[np.ndarray, np.ndarray]:
    """The most general targets a classification ``plugin`` accepts (soft labels, else
    one-hot rows, else indices) and the same targets as (N, C) rows."""
    forms = all_targets(example)
    for form in ("soft", "one_hot"):
        if form in accepted(plugin):
            return forms[form], forms[form]
    return forms["indices"], forms["one_hot"]


def new_loss(plugin: type, example: Any) -> Any:
    return plugin(dict(example.config))


def run(loss: Any, z: np.ndarray, t: np.ndarray) -> tuple[Any, np.ndarray]:
    value = loss.forward(z.copy(), t.copy())
    return value, np.array(loss.backward(), copy=True)


def softmax_based(plugin: type, example: Any) -> bool:
    if not classifies(plugin):
        return False  # a value loss compares each entry with its target, not a softmax
    declared = plugin.traits.softmax_cross_entropy
    if declared is not None:
        return bool(declared)
    z = logits(example)
    try:
        p = np.asarray(new_loss(plugin, example).predict_proba(z.copy()), dtype=np.float64)
    except Exception:  # check_loss_predict_proba reports it
        return False
    return p.shape == z.shape and np.allclose(p, softmax(z), rtol=1e-6, atol=1e-9)


@check
def check_loss_scalar(plugin: type, example: Any) -> None:
    z = logits(example)
    for form, t in targets(plugin, example).items():
        value = new_loss(plugin, example).forward(z.copy(), t.copy())
        if not isinstance(value, float | np.floating) or not np.isfinite(value):
            fail(f"forward(logits, {form}) to return a finite float (the batch mean)",
                 f"{value!r} of type {type(value).__name__}",
                 "Return float(loss) rather than an array")


@check
def check_loss_gradient_shape(plugin: type, example: Any) -> None:
    for dtype in (np.float32, np.float64):
        z = logits(example).astype(dtype)
        _, dz = run(new_loss(plugin, example), z, main_targets(plugin, example))
        if dz.shape != z.shape or dz.dtype != z.dtype:
            fail(f"backward() to return dL/dlogits like the logits, {describe_array(z)}",
                 describe_array(dz))


@check
def check_loss_predict_proba(plugin: type, example: Any) -> None:
    """Probabilities, rows summing to 1, for a classification loss; for a value loss the
    predictions, (N, C) and finite (in [0, 1] when it takes multilabel targets only)."""
    z = logits(example)
    p = np.asarray(new_loss(plugin, example).predict_proba(z.copy()))
    if p.shape != z.shape:
        fail(f"predict_proba to return shape {z.shape}", f"shape {p.shape}")
    if not classifies(plugin):
        if not np.issubdtype(p.dtype, np.floating) or not np.all(np.isfinite(p)):
            fail("predict_proba of a value loss to return finite floating-point predictions",
                 describe_array(p) if not np.issubdtype(p.dtype, np.floating) else
                 f"{int(np.sum(~np.isfinite(p)))} non-finite entries")
        if "values" not in accepted(plugin) and (p.min() < 0 or p.max() > 1):
            fail("predict_proba of a loss taking multilabel targets (entries in [0, 1]) to "
                 "give each entry's probability, in [0, 1]",
                 f"values from {p.min():.3g} to {p.max():.3g}",
                 "Return sigmoid(z), as the loss's forward reads the logits")
        return
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-9):
        fail("predict_proba rows to be non-negative and sum to 1",
             f"row sums {np.round(p.sum(axis=1), 6).tolist()} and minimum {p.min():.3g}")


@check
def check_loss_finite_at_large_logits(plugin: type, example: Any) -> None:
    signs = np.where(rng(25).random((ROWS, example.n_classes)) < 0.5, -1.0, 1.0)
    forms = {"indices": all_targets(example)["indices"]} if classifies(plugin) else \
        targets(plugin, example)
    for magnitude in (1e4, -1e4):
        z = signs * magnitude
        for form, t in forms.items():
            with np.errstate(all="ignore"):
                value, dz = run(new_loss(plugin, example), z, t)
            if not (np.isfinite(value) and np.all(np.isfinite(dz))):
                fail(f"a finite loss and gradient at logits of +-{abs(magnitude):g}"
                     + ("" if classifies(plugin) else f" ({form})"),
                     f"loss {value!r} and {int(np.sum(~np.isfinite(dz)))} non-finite gradient "
                     "entries",
                     "Shift each row by its max before exp (log-sum-exp), and compute log p as "
                     "z - logsumexp(z) rather than log(softmax(z))" if classifies(plugin) else
                     "Take exp of -|z| only: log(1 + exp(-z)) is max(-z, 0) + "
                     "log1p(exp(-|z|)), never log(sigmoid(z))")


@check
def check_loss_gradient(plugin: type, example: Any) -> None:
    z = logits(example)
    gen = rng(27)
    bad = []
    for form, t in targets(plugin, example).items():
        _, dz = run(new_loss(plugin, example), z, t)

        def evaluate(index: tuple[int, ...], delta: float, t=t) -> np.ndarray:
            shifted = z.copy()
            shifted[index] += delta
            return np.array([new_loss(plugin, example).forward(shifted, t.copy())])

        report = gradcheck.compare(f"dlogits ({form})", dz, evaluate, np.ones(1),
                                   gradcheck.sample_indices(z.shape, gen))
        if not report.ok:
            bad.append(report.describe())
    if bad:
        fail("backward() to agree with float64 central finite differences of forward()",
             " | ".join(bad), "Remember the 1 / N of the batch mean")


@check
def check_loss_unfused_reference(plugin: type, example: Any) -> None:
    z = logits(example)
    t, y = richest_targets(plugin, example)
    value, dz = run(new_loss(plugin, example), z, t)
    # Computed step by step, independently of the plugin: softmax, the mean negative
    # log-likelihood, then the chain rule through the softmax Jacobian diag(p) - p p^T.
    p = softmax(z)
    reference = -np.sum(y * np.log(p)) / ROWS
    dp = -y / p / ROWS
    dz_reference = p * (dp - np.sum(p * dp, axis=1, keepdims=True))
    if not np.isclose(value, reference, rtol=1e-10, atol=1e-12):
        fail(f"the loss to equal mean(-sum(y * log(softmax(z)))) = {reference:.12g}",
             f"{value!r}", "Or set softmax_cross_entropy = False on a loss that is not "
             "plain softmax cross-entropy")
    if not np.allclose(dz, dz_reference, rtol=1e-8, atol=1e-12):
        fail("backward() to equal the chain rule through softmax and the negative "
             "log-likelihood", f"a difference of up to {np.max(np.abs(dz - dz_reference)):.3g}",
             "The fused gradient is (softmax(z) - y) / N")


@check
def check_loss_row_invariance(plugin: type, example: Any) -> None:
    z = logits(example)
    shift = rng(29).uniform(-5.0, 5.0, size=(ROWS, 1))
    t, _ = richest_targets(plugin, example)
    value, dz = run(new_loss(plugin, example), z, t)
    shifted_value, shifted_dz = run(new_loss(plugin, example), z + shift, t)
    if not (np.isclose(value, shifted_value, rtol=1e-10, atol=1e-12)
            and np.allclose(dz, shifted_dz, rtol=1e-8, atol=1e-12)):
        fail("the loss and its gradient to be unchanged by adding a constant to each row "
             "of the logits (softmax is)",
             f"loss {value!r} -> {shifted_value!r}, gradient changed by up to "
             f"{np.max(np.abs(dz - shifted_dz)):.3g}")


@check
def check_loss_target_forms(plugin: type, example: Any) -> None:
    z = logits(example)
    forms = all_targets(example)
    value_i, dz_i = run(new_loss(plugin, example), z, forms["indices"])
    value_o, dz_o = run(new_loss(plugin, example), z, forms["one_hot"])
    if not (np.isclose(value_i, value_o, rtol=1e-12) and np.allclose(dz_i, dz_o, rtol=1e-12)):
        fail("class-index targets and their one-hot rows to give the same loss and gradient",
             f"loss {value_i!r} vs {value_o!r}, gradients differing by up to "
             f"{np.max(np.abs(dz_i - dz_o)):.3g}")


@check
def check_loss_backward_before_forward(plugin: type, example: Any) -> None:
    loss = new_loss(plugin, example)
    try:
        loss.backward()
    except BackwardBeforeForwardError:
        return
    except Exception as exc:
        raise ConformanceError(
            "expected backward() before forward() to raise lamina."
            f"BackwardBeforeForwardError; received {type(exc).__name__}: {exc}"
        ) from exc
    fail("backward() before forward() to raise lamina.BackwardBeforeForwardError",
         "no error", "Start backward() with `... = self.cached()`")


@check
def check_loss_soft_targets(plugin: type, example: Any) -> None:
    """A loss that accepts soft labels uses the whole distribution: moving a row halfway
    towards its argmax one-hot row (same argmax) changes the loss and the gradient."""
    z = logits(example)
    y = all_targets(example)["soft"]
    sharper = 0.5 * y + 0.5 * np.eye(example.n_classes)[np.argmax(y, axis=1)]
    value, dz = run(new_loss(plugin, example), z, y)
    value_s, dz_s = run(new_loss(plugin, example), z, sharper)
    if np.isclose(value, value_s, rtol=1e-9, atol=1e-12) or np.allclose(dz, dz_s, rtol=1e-9,
                                                                        atol=1e-12):
        fail("soft labels and the same labels moved halfway to their argmax (a different "
             "distribution, the same class) to give different losses and gradients",
             f"loss {value!r} and {value_s!r}, gradients differing by up to "
             f"{np.max(np.abs(dz - dz_s)):.3g}",
             "Compute the loss from every entry of the target rows (never from their "
             "argmax), or declare traits = LossTraits(targets=('indices', 'one_hot')) so "
             "that soft labels are rejected")


@check
def check_loss_rejects_undeclared_targets(plugin: type, example: Any) -> None:
    """A form of target the loss does not declare is an error, not a silent reading of it."""
    z = logits(example)
    for form, t in undeclared_targets(plugin, example).items():
        try:
            new_loss(plugin, example).forward(z.copy(), t.copy())
        except DataError:
            continue
        except Exception as exc:
            raise ConformanceError(
                f"expected targets as {form}, which the loss does not declare, to raise "
                f"lamina.DataError; received {type(exc).__name__}: {exc}. Subclass lamina.Loss "
                "(its forward() checks the form) or call lamina.as_target_rows"
            ) from exc
        fail(f"targets as {form}, which traits.targets {accepted(plugin)} leaves out, to be "
             "rejected with lamina.DataError", "a loss value",
             "Subclass lamina.Loss (its forward() checks the form) or call "
             "lamina.as_target_rows(..., accept=traits.targets)")


@check
def check_loss_float32_matches_float64(plugin: type, example: Any) -> None:
    """The loss and its gradient agree in float32 and float64 on the same logits."""
    z32 = logits(example).astype(np.float32)
    for form, t in targets(plugin, example).items():
        value32, dz32 = run(new_loss(plugin, example), z32, t)
        value64, dz64 = run(new_loss(plugin, example), z32.astype(np.float64), t)
        scale = max(float(np.max(np.abs(dz64))), np.finfo(np.float64).tiny)
        error_dz = float(np.max(np.abs(dz32.astype(np.float64) - dz64))) / scale
        error_value = abs(value32 - value64) / max(abs(value64), 1.0)
        if not (error_dz <= FLOAT32_TOLERANCE and error_value <= FLOAT32_TOLERANCE):
            fail(f"float32 loss and gradient to agree with float64 on the same logits ({form}) "
                 f"within {FLOAT32_TOLERANCE:g}",
                 f"the loss off by {error_value:.3g}, the gradient by {error_dz:.3g} of its "
                 "largest magnitude",
                 "Compute in the logits' dtype or wider and shift by the row max before exp"
                 if classifies(plugin) else "Compute in the logits' dtype or wider")


@check
def check_loss_instances_independent(plugin: type, example: Any) -> None:
    """Two instances used in turn each give what one alone gives: the sharded step runs one
    loss per shard, in parallel threads."""
    z = logits(example)
    other = logits(example, scale=3.0)[::-1].copy()
    t = main_targets(plugin, example)
    alone_value, alone_dz = run(new_loss(plugin, example), z, t)
    first, second = new_loss(plugin, example), new_loss(plugin, example)
    value = first.forward(z.copy(), t.copy())
    second.forward(other, t[::-1].copy())
    dz = np.array(first.backward(), copy=True)
    if value != alone_value or not np.array_equal(dz, alone_dz):
        fail("backward() of one loss instance to be unaffected by another instance's forward()",
             f"a gradient differing by up to {np.max(np.abs(dz - alone_dz)):.3g}",
             "Keep what forward() leaves for backward() on the instance (self.cache), never on "
             "the class or in a module")


#: rows of the batch the shard check splits, and the splits (sizes of consecutive parts):
#: odd, unequal, and down to single rows (N = 1)
SHARD_ROWS = 5
SPLITS = ((2, 3), (4, 1), (1, 1, 1, 1, 1))


@check
def check_loss_shard_decomposition(plugin: type, example: Any) -> None:
    """The loss and gradient of a batch equal the combination of its parts' weighted by
    their sizes, L = sum_i (n_i / N) L_i and dL/dz = (n_i / N) dL_i/dz on part i, for
    unequal parts down to single rows: the sharded step computes each shard's loss on
    its own rows and combines them so (and N = 1 is a batch the runner meets)."""
    gen = rng(31)
    z = gen.normal(0.0, 2.0, size=(SHARD_ROWS, example.n_classes))
    forms = targets(plugin, example, SHARD_ROWS, seed=33)
    # One instance for every batch, as the trainer keeps one loss for a whole run.
    loss = new_loss(plugin, example)
    for form, t in forms.items():
        value, dz = run(loss, z, t)
        for sizes in SPLITS:
            start, combined, parts = 0, 0.0, []
            for n in sizes:
                part_value, part_dz = run(loss, z[start:start + n], t[start:start + n])
                if part_dz.shape != (n, example.n_classes):
                    fail(f"backward() on a batch of {n} row{'s' if n != 1 else ''} ({form}) to "
                         f"give the gradient of its logits, shape {(n, example.n_classes)}",
                         f"shape {part_dz.shape}",
                         "Keep the batch axis: never squeeze() (a batch of one row is (1, C))")
                combined += n / SHARD_ROWS * part_value
                parts.append(n / SHARD_ROWS * part_dz)
                start += n
            joined = np.concatenate(parts)
            if not (np.isclose(combined, value, rtol=1e-10, atol=1e-12)
                    and joined.shape == dz.shape and np.allclose(joined, dz, rtol=1e-8,
                                                                 atol=1e-12)):
                fail(f"the loss of {SHARD_ROWS} rows ({form}) to equal its parts' of "
                     f"{list(sizes)} rows weighted by their sizes, and the gradient likewise "
                     "(how the sharded step combines shards)",
                     f"loss {value!r} against {combined!r}, gradients differing by up to "
                     f"{np.max(np.abs(joined - dz)) if joined.shape == dz.shape else 'shape'}",
                     "Average over the rows of the batch (divide by this call's N, never one "
                     "kept from an earlier call, nor a total that depends on which rows are "
                     "in it such as a sum of class weights), and do not squeeze(): a batch of "
                     "one row is (1, C)")


def loss_checks(plugin: type, example: Any) -> list:
    checks = [check_loss_scalar, check_loss_gradient_shape, check_loss_predict_proba,
              check_loss_finite_at_large_logits, check_loss_gradient]
    if "one_hot" in accepted(plugin):
        checks.append(check_loss_target_forms)
    checks.append(check_loss_float32_matches_float64)
    if "soft" in accepted(plugin):
        checks.append(check_loss_soft_targets)
    if undeclared_targets(plugin, example):
        checks.append(check_loss_rejects_undeclared_targets)
    if softmax_based(plugin, example):
        checks += [check_loss_unfused_reference, check_loss_row_invariance]
    checks += [check_loss_backward_before_forward, check_loss_instances_independent,
               check_loss_shard_decomposition]
    if example.reference is not None:
        from .checks_reference import check_loss_reference_values

        checks.append(check_loss_reference_values)
    return checks
