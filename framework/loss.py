"""The loss contract: what a loss plugin writes, what it declares, what lamina relies on.

A loss plugin subclasses :class:`Loss` and writes ``name``, ``Config`` (frozen,
unknown keys forbidden) and

- ``compute(z, y) -> float``: the mean loss over the batch for logits ``z`` (N, C)
  and target rows ``y`` (N, C) in the logits' dtype; keeps what ``backward`` needs
  in ``self.cache``;
- ``backward() -> dz``: (N, C), the gradient of that mean loss with respect to ``z``;
- ``predict_proba(z) -> (N, C)``: probabilities (a classification loss: rows summing
  to 1), or the predictions a value loss makes (``mse``: the outputs themselves);
- ``examples()``: configs and class (or output) counts the conformance suite exercises;
- ``traits`` (:class:`LossTraits`): which forms of target it accepts.

A loss is one of two kinds, by the targets it declares. A *classification* loss takes
class indices (N,), one-hot rows or soft labels (N, C), and ``compute`` receives rows
of a probability distribution; training feeds it class indices, and reports accuracy.
A *value* loss takes real-valued rows (N, C) (``"values"``: any finite numbers, as
``mse``; ``"multilabel"``: independent entries in [0, 1], as ``binary_cross_entropy``),
or (N,) when C == 1; training feeds it those rows, and reports MSE and MAE.
:attr:`LossTraits.classifies` tells them apart.

:meth:`Loss.forward` is the template callers use: it checks the logits and turns
the targets into the rows ``compute`` receives, rejecting a form the loss does not
declare with a :class:`~lamina.errors.DataError` that says what to pass.
:func:`as_target_rows` is the same conversion, public for loss authors who need it
elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from .errors import BackwardBeforeForwardError, DataError, PluginError
from .layer import LayerConfig, make_config

#: the forms of target a classification loss can accept: class indices (N,), one-hot rows
#: (N, C), and soft labels (N, C), rows of non-negative numbers summing to 1
CLASS_TARGETS: tuple[str, ...] = ("indices", "one_hot", "soft")
#: the forms of target a value loss can accept: ``"values"``, rows (N, C) of any finite
#: numbers, and ``"multilabel"``, rows (N, C) of independent entries in [0, 1] (0/1 labels
#: or probabilities); either as (N,) when C == 1
VALUE_TARGETS: tuple[str, ...] = ("values", "multilabel")
#: every form of target a loss can declare
TARGET_FORMS: tuple[str, ...] = CLASS_TARGETS + VALUE_TARGETS
_FORM_NAMES = {"indices": "class indices", "one_hot": "one-hot rows", "soft": "soft labels",
               "values": "real-valued rows", "multilabel": "multilabel rows"}
#: what a message about real-valued targets given to a classification loss suggests
VALUE_LOSSES_HINT = ("for real-valued targets use a value loss (the built-in mse, or "
                     "binary_cross_entropy for independent 0/1 labels)")


@dataclass(frozen=True)
class LossTraits:
    """The declarations of a loss; the conformance suite holds it to each of them."""

    #: the forms of target accepted, which make the loss one of two kinds: a
    #: classification loss declares a subset of :data:`CLASS_TARGETS` holding
    #: ``"indices"`` (training feeds class indices); a value loss a subset of
    #: :data:`VALUE_TARGETS` (training feeds real-valued rows). Any other form is
    #: rejected. A loss that accepts ``"soft"`` uses the whole distribution, not only
    #: its largest entry
    targets: tuple[str, ...] = CLASS_TARGETS
    #: the loss is plain softmax cross-entropy on the logits: the suite then also
    #: compares it with an unfused reference. ``None``: decided from
    #: ``predict_proba`` (a row softmax means yes); a softmax-based loss that is not
    #: plain cross-entropy (label smoothing, focal) sets ``False``. A value loss is
    #: never softmax cross-entropy
    softmax_cross_entropy: bool | None = None

    def __post_init__(self) -> None:
        forms = tuple(self.targets)
        unknown = [form for form in forms if form not in TARGET_FORMS]
        if unknown or not forms:
            raise TypeError(f"LossTraits.targets must be a subset of {TARGET_FORMS}, received "
                            f"{self.targets!r}")
        classes = [form for form in forms if form in CLASS_TARGETS]
        values = [form for form in forms if form in VALUE_TARGETS]
        if classes and values:
            raise TypeError(
                f"LossTraits.targets mixes class forms {tuple(classes)} with value forms "
                f"{tuple(values)}: a loss is either a classification loss (targets from "
                f"{CLASS_TARGETS} including 'indices': training feeds class indices) or a "
                f"value loss (targets from {VALUE_TARGETS}: training feeds real-valued rows), "
                "not both")
        if classes and "indices" not in forms:
            raise TypeError("LossTraits.targets must include 'indices' for a classification "
                            "loss: lamina trains it on class indices (a value loss declares "
                            f"targets from {VALUE_TARGETS})")
        if self.softmax_cross_entropy not in (None, True, False):
            raise TypeError("LossTraits.softmax_cross_entropy must be True, False or None")
        if values and self.softmax_cross_entropy:
            raise TypeError("LossTraits.softmax_cross_entropy=True declares plain softmax "
                            f"cross-entropy, a classification loss; a value loss (targets "
                            f"{forms}) leaves it None or False")
        object.__setattr__(self, "targets", forms)

    @property
    def classifies(self) -> bool:
        """True for a classification loss (class targets; lamina reports accuracy and
        predicts classes), False for a value loss (real-valued targets; lamina reports
        MSE and MAE)."""
        return "indices" in self.targets


@dataclass(frozen=True)
class LossReference:
    """Values worked out by hand for a loss: the mean ``value`` and gradient ``dz`` of the
    logits ``z`` (N, C) against ``targets`` (any form the loss accepts), and optionally
    the ``proba`` it predicts, each within ``tolerance`` (``check_loss_reference_values``)."""

    z: Any
    targets: Any
    value: float
    dz: Any
    proba: Any = None
    tolerance: float = 1e-6


@dataclass(frozen=True)
class LossExample:
    """One configuration the conformance suite runs a loss with; ``reference`` holds
    values worked out by hand for it (:class:`LossReference`)."""

    config: dict[str, Any]
    #: C, the columns of the logits: classes (a value loss: outputs)
    n_classes: int
    id: str = ""
    reference: LossReference | None = None


def as_logits(logits: Any, who: str = "the loss") -> np.ndarray:
    """``logits`` as a floating (N, C) array with N, C >= 1 (integers become float64)."""
    z = np.asarray(logits)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise DataError(
            f"{who} expects logits of shape (N, C) with N, C >= 1, received an array of shape "
            f"{z.shape}; the last layer should be a dense layer with one unit per class"
        )
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float64)
    return z


def target_form(targets: np.ndarray) -> str:
    """``"indices"`` for a 1-D array, ``"one_hot"`` for rows of zeros and a single one,
    otherwise ``"soft"`` (whether the rows are valid distributions is checked apart)."""
    if targets.ndim == 1:
        return "indices"
    ones = targets == 1
    if np.all(ones | (targets == 0)) and np.all(ones.sum(axis=1) == 1):
        return "one_hot"
    return "soft"


def as_target_rows(targets: Any, n_samples: int, n_classes: int, dtype: Any = np.float64, *,
                   accept: tuple[str, ...] = CLASS_TARGETS, who: str = "the loss") -> np.ndarray:
    """Targets as (N, C) rows in ``dtype``, checked against the forms in ``accept``.

    For a classification loss (class forms): class indices (N,) become one-hot rows;
    one-hot and soft rows (N, C) are checked (finite, non-negative, summing to 1 within
    float rounding) and cast. For a value loss (``accept`` within
    :data:`VALUE_TARGETS`): rows (N, C), or (N,) when C == 1, of finite numbers that
    ``dtype`` can hold, in [0, 1] when only ``"multilabel"`` is accepted. A form not in
    ``accept``, a wrong shape or dtype, or an index out of range raises
    :class:`DataError` saying what was received and what to pass."""
    accept = tuple(accept)
    if accept and all(form in VALUE_TARGETS for form in accept):
        return _value_rows(np.asarray(targets), n_samples, n_classes, dtype, accept, who)
    t = np.asarray(targets)
    forms = [f"class indices of shape ({n_samples},) with an integer dtype and values in "
             f"[0, {n_classes})"] if "indices" in accept else []
    rows = [_FORM_NAMES[form] for form in ("one_hot", "soft") if form in accept]
    if rows:
        forms.append(f"{' or '.join(rows)} of shape ({n_samples}, {n_classes}), non-negative "
                     "and summing to 1")
    rule = f"{who} expects targets as {', or '.join(forms)}"
    if t.ndim == 1:
        if "indices" not in accept:
            raise DataError(f"{rule}; received class indices, which it does not take")
        if t.shape[0] != n_samples:
            raise DataError(f"{rule}; received {t.shape[0]} indices for {n_samples} logit rows")
        if not np.issubdtype(t.dtype, np.integer):
            if _whole_numbers(t):
                raise DataError(
                    f"{rule}; received class indices of dtype {t.dtype}, convert them with "
                    ".astype(int) (a float array is ambiguous and is not accepted as "
                    f"indices), or, if they are values to fit, {VALUE_LOSSES_HINT}")
            raise DataError(
                f"{rule}; received real numbers of dtype {t.dtype}: {who} is a "
                f"classification loss, taking class indices; {VALUE_LOSSES_HINT}")
        if t.size and (t.min() < 0 or t.max() >= n_classes):
            raise DataError(
                f"{rule}; received indices from {t.min()} to {t.max()}, check that the last "
                f"layer has one unit per class ({n_classes} now)"
            )
        y = np.zeros((n_samples, n_classes), dtype=dtype)
        y[np.arange(n_samples), t] = 1
        return y
    if t.ndim != 2 or t.shape != (n_samples, n_classes):
        raise DataError(f"{rule}; received an array of shape {t.shape}")
    if not (np.issubdtype(t.dtype, np.number) or t.dtype == np.bool_):
        raise DataError(f"{rule}; received an array of dtype {t.dtype}")
    if not np.all(np.isfinite(t)):
        raise DataError(f"{rule}; received NaN or infinite values")
    # Rows that are no distribution are most often real-valued targets: say which loss
    # takes them.
    hint = f" ({who} is a classification loss; {VALUE_LOSSES_HINT})"
    if np.any(t < 0):
        raise DataError(f"{rule}; received negative values (smallest {t.min()}){hint}")
    # Float32 soft labels made by a softmax are off 1 by a few ulps per class.
    eps = np.finfo(t.dtype).eps if np.issubdtype(t.dtype, np.floating) else 0.0
    tolerance = max(1e-6, 4 * n_classes * float(eps))
    row_sums = t.sum(axis=1, dtype=np.float64)
    worst = int(np.argmax(np.abs(row_sums - 1.0)))
    if abs(row_sums[worst] - 1.0) > tolerance:
        raise DataError(f"{rule}; received row {worst} summing to {row_sums[worst]:.8g}{hint}")
    form = target_form(t)
    if form not in accept:
        raise DataError(f"{rule}; received {_FORM_NAMES[form]}, which it does not take: pass "
                        "class indices (targets.argmax(axis=1) if that is what you mean)")
    return t.astype(dtype, copy=False)


def _whole_numbers(t: np.ndarray) -> bool:
    return bool(np.issubdtype(t.dtype, np.floating) and np.all(np.isfinite(t))
                and np.all(t == np.round(t)))


def _value_rows(t: np.ndarray, n_samples: int, n_outputs: int, dtype: Any,
                accept: tuple[str, ...], who: str) -> np.ndarray:
    """The targets of a value loss as (N, C) rows: see :func:`as_target_rows`."""
    unit = "values" not in accept  # multilabel only: each entry a probability
    what = "numbers in [0, 1] (0/1 labels or probabilities)" if unit else "finite numbers"
    one = f", or ({n_samples},) as the network has one output" if n_outputs == 1 else ""
    rule = f"{who} expects targets as rows of {what}, shape ({n_samples}, {n_outputs}){one}"
    if t.ndim == 1 and n_outputs == 1 and t.shape[0] == n_samples:
        t = t[:, None]  # one value per sample for the one output
    if t.ndim == 1:
        if t.shape[0] != n_samples:
            raise DataError(f"{rule}; received {t.shape[0]} values for {n_samples} logit rows")
        if np.issubdtype(t.dtype, np.integer):
            raise DataError(
                f"{rule}; received class indices (a 1-D array of integers), which it does not "
                f"take: it is a value loss, fitting each of the {n_outputs} outputs; one-hot "
                f"them with np.eye({n_outputs})[y] if you mean to regress onto one-hot rows")
        raise DataError(f"{rule}; received a 1-D array, one value per sample, for "
                        f"{n_outputs} outputs; pass rows ({n_samples}, {n_outputs})")
    if t.shape != (n_samples, n_outputs):
        raise DataError(f"{rule}; received an array of shape {t.shape}")
    if not (np.issubdtype(t.dtype, np.number) or t.dtype == np.bool_) \
            or np.issubdtype(t.dtype, np.complexfloating):
        raise DataError(f"{rule}; received an array of dtype {t.dtype}")
    if not np.all(np.isfinite(t)):
        raise DataError(f"{rule}; received NaN or infinite values")
    if t.size and unit and (t.min() < 0 or t.max() > 1):
        raise DataError(f"{rule}; received values from {float(t.min()):.4g} to "
                        f"{float(t.max()):.4g}, outside [0, 1]: each entry is read as the "
                        "probability that its output is 1; for other real-valued targets use "
                        "a loss that takes any values (such as mse)")
    if t.size and np.issubdtype(np.dtype(dtype), np.floating):
        limit = float(np.finfo(dtype).max)
        largest = max(float(t.max()), -float(t.min()))
        if largest > limit:
            raise DataError(f"{rule}; received values up to {largest:.3g} in magnitude, "
                            f"beyond what {np.dtype(dtype).name} (the logits' dtype) holds")
    return t.astype(dtype, copy=False)


class LossConfig(LayerConfig):
    """Base of every loss plugin's config: frozen, unknown keys forbidden (as a layer's)."""


class Loss(ABC):
    """The base class of every loss plugin; see the module docstring for the contract."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = LossConfig
    traits: ClassVar[LossTraits] = LossTraits()

    def __init__(self, config: BaseModel | dict[str, Any] | None = None, /, **kwargs: Any):
        self.config = make_config(self.Config, config, kwargs)
        self.cache: Any = None

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        """The mean loss of ``logits`` (N, C) against ``targets`` in any accepted form."""
        who = f"loss {self.name!r}"
        z = as_logits(logits, who)
        y = as_target_rows(targets, *z.shape, z.dtype, accept=self.traits.targets, who=who)
        value = self.compute(z, y)
        if not isinstance(value, float | np.floating) and not (
                isinstance(value, np.ndarray) and value.ndim == 0):
            raise PluginError(f"{who}: compute() returned {type(value).__name__} "
                              f"{np.shape(value)}; expected the batch mean as a float")
        return float(value)

    # -- what a plugin writes ---------------------------------------------------------
    @abstractmethod
    def compute(self, z: np.ndarray, y: np.ndarray) -> float:
        """The mean loss of logits ``z`` (N, C) against target rows ``y`` (N, C):
        distributions for a classification loss, real-valued rows for a value loss."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute()")

    @abstractmethod
    def backward(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement backward()")

    @abstractmethod
    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement predict_proba()")

    @classmethod
    @abstractmethod
    def examples(cls) -> list[LossExample]:
        raise NotImplementedError(f"{cls.__name__} must list examples() for the conformance suite")

    def cached(self) -> Any:
        if self.cache is None:
            raise BackwardBeforeForwardError(
                f"loss {self.name!r}: backward() was called before forward(); "
                "run forward(logits, targets) first"
            )
        return self.cache
