"""What Python callers hand a :class:`lamina.Model`, checked before any layer sees it.

A notebook passes arrays and settings that a config file never holds: a single
image without its batch axis, channels last, raw 0-255 pixels, one-hot labels, a
path that is not one (callbacks are checked by lamina.training.callbacks). Each is
refused here with an :class:`InputError` that says what was received and what to
pass. Settings
(``batch_size``, ``seed``...) are not checked here: they follow the rule every
config value follows (:mod:`lamina.config.strict`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LaminaError


class InputError(LaminaError, ValueError, TypeError):
    """An argument given to a :class:`Model` does not fit: arrays that do not fit its
    network (shape, dtype, labels), or an argument of the wrong type (a config that is
    neither a name, a path nor a dict; a callback without the hooks lamina calls). It is both a
    ``ValueError`` and a ``TypeError``, as NumPy's ``AxisError`` is both, so either
    ``except`` catches it."""


def checked_samples(x: Any, name: str, expected: tuple[int, ...], dtype: np.dtype
                    ) -> np.ndarray:
    """``x`` as a (N, *expected) array of ``dtype``, or an InputError saying what was
    received and what to pass."""
    try:
        x = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} cannot be read as an array ({exc}); pass a NumPy array "
                         f"of shape (N, {_dims(expected)})") from None
    shape = x.shape
    if shape == expected:
        raise InputError(f"{name} has shape {shape}: one sample without the batch axis; "
                         f"pass {name}[None] (shape {(1, *expected)})")
    if len(shape) == len(expected) + 1 and shape[1:] == expected:
        pass
    elif len(expected) == 3 and len(shape) == 4 and shape[1:] == (*expected[1:], expected[0]):
        raise InputError(f"{name} has shape {shape}: channels last; this network takes "
                         f"channels first, (N, {_dims(expected)}): pass "
                         f"{name}.transpose(0, 3, 1, 2)")
    elif len(expected) == 3 and expected[0] == 1 and shape[1:] == expected[1:]:
        raise InputError(f"{name} has shape {shape}: no channel axis; this network takes "
                         f"(N, {_dims(expected)}): pass {name}[:, None]")
    elif len(expected) == 3 and expected[0] == 1 and shape == expected[1:]:
        raise InputError(f"{name} has shape {shape}: one image without batch and channel "
                         f"axes; pass {name}[None, None] (shape {(1, *expected)})")
    else:
        raise InputError(f"{name} has shape {shape}; this network takes (N, "
                         f"{_dims(expected)}): N samples of shape {expected}")
    if x.dtype.kind in "ui":
        top = int(x.max()) if x.size else 0
        raise InputError(
            f"{name} holds integers ({x.dtype}, up to {top}); the network computes in "
            f"{dtype.name} on the scale it was trained on (lamina loads images as "
            f"{dtype.name} in [0, 1]): pass {name}.astype('{dtype.name}') / 255 for 0-255 "
            "pixels")
    if x.dtype.kind != "f":
        raise InputError(f"{name} has dtype {x.dtype}; pass floating-point values "
                         f"({dtype.name})")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{name} holds NaN or infinite values "
                         f"({int(np.sum(~np.isfinite(x)))} of {x.size}); pass finite numbers")
    limit = float(np.finfo(dtype).max)
    largest = max(float(x.max()), -float(x.min())) if x.size else 0.0  # no |x| copy
    if largest > limit:
        raise InputError(f"{name} holds values beyond {dtype.name}'s range (up to "
                         f"{largest:.3g}); pass values the network's {dtype.name} can hold")
    x = x.astype(dtype, copy=False)
    if x.size and float(x.max()) > 2.0 and float(x.min()) >= 0.0 and float(x.max()) <= 255:
        warnings.warn(f"{name} looks like 0-255 pixels (max {float(x.max()):g}); lamina "
                      f"loads images in [0, 1]: pass {name} / 255 if they are",
                      stacklevel=_caller_level())
    return x


def checked_labels(y: Any, n: int, name: str, classes: int, *, loss: str = "",
                   value_losses: Sequence[str] = ()) -> np.ndarray:
    """Class indices (n,) of ``classes`` classes, as int64, or an InputError. ``loss``
    (the model's classification loss) and ``value_losses`` (the registered losses that
    take real-valued targets) name the way out when ``y`` holds real numbers."""
    try:
        y = np.asarray(y)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} cannot be read as an array ({exc}); pass one class "
                         f"index per sample, shape ({n},)") from None
    if y.ndim == 2 and y.shape == (n, classes):
        if _distributions(y):
            raise InputError(f"{name} has shape {y.shape}: one-hot rows; pass class indices, "
                             f"{name}.argmax(axis=1)")
        raise InputError(f"{name} has shape {y.shape}: rows of real numbers, not one-hot rows; "
                         f"{_classification(loss, classes, value_losses)}")
    if y.shape != (n,):
        raise InputError(f"{name} has shape {y.shape}; pass one class index per sample, "
                         f"shape ({n},)")
    whole = y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    if whole and (not y.size or np.abs(y).max() < 2**62):
        y = y.astype(np.int64)
    if y.dtype.kind == "f" and not whole:
        raise InputError(f"{name} holds real numbers ({y.dtype}), not class indices; "
                         f"{_classification(loss, classes, value_losses)}")
    if y.dtype.kind not in "ui":
        raise InputError(f"{name} has dtype {y.dtype}; pass integer class indices 0 to "
                         f"{classes - 1}")
    if n and (y.min() < 0 or y.max() >= classes):
        raise InputError(f"{name} holds class {int(y.min() if y.min() < 0 else y.max())}; "
                         f"this network has {classes} classes: indices 0 to {classes - 1}")
    return y.astype(np.int64, copy=False)


def _distributions(y: np.ndarray) -> bool:
    """Rows of non-negative numbers summing to 1: one-hot rows or soft labels."""
    if not (y.dtype.kind in "uif" or y.dtype == np.bool_) or not np.all(np.isfinite(y)):
        return False
    return bool(np.all(y >= 0) and np.allclose(y.sum(axis=1, dtype=np.float64), 1.0,
                                                atol=1e-6))


def _classification(loss: str, classes: int, value_losses: Sequence[str]) -> str:
    which = f"this model's loss, {loss}," if loss else "this model's loss"
    values = (f" (the registered ones: {', '.join(value_losses)})" if value_losses else "")
    return (f"{which} is a classification loss, taking class indices 0 to {classes - 1}; for "
            f"real-valued targets give the model a value loss{values}, such as "
            "\"loss\": {\"type\": \"mse\"}")


def checked_targets(y: Any, n: int, name: str, outputs: int, *, forms: tuple[str, ...],
                    loss: str, dtype: np.dtype) -> np.ndarray:
    """The targets of a value loss (``forms`` from :data:`lamina.loss.VALUE_TARGETS`) as
    (n, outputs) rows of ``dtype``, (n,) taken as (n, 1) for one output; or an
    InputError saying what was received and what to pass (class indices for several
    outputs: how to one-hot them)."""
    from .errors import DataError
    from .loss import as_target_rows

    try:
        y = np.asarray(y)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} cannot be read as an array ({exc}); pass rows of targets, "
                         f"shape ({n}, {outputs})") from None
    if y.ndim == 0 or len(y) != n:
        raise InputError(f"{name} has shape {y.shape}; pass one row of targets per sample of "
                         f"x, shape ({n}, {outputs})" + (f" or ({n},)" if outputs == 1 else ""))
    try:
        return as_target_rows(y, n, outputs, dtype, accept=forms,
                              who=f"this model's loss, {loss},")
    except DataError as error:
        raise InputError(f"{name}: {error}") from None


def checked_batch_size(batch_size: Any) -> int:
    if type(batch_size) is not int or batch_size < 1:
        raise InputError(f"batch_size must be a whole number >= 1 (an int), received "
                         f"{received(batch_size)}")
    return batch_size


def checked_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, received {received(value)}")
    return value


def checked_class_names(names: Any, classes: int) -> list[str]:
    if names is None:
        return [str(i) for i in range(classes)]
    if isinstance(names, str) or not isinstance(names, Sequence) \
            or not all(isinstance(name, str) for name in names):
        raise InputError(f"class_names must be a list of {classes} strings, one per class, "
                         f"received {received(names)}")
    if len(names) != classes:
        raise InputError(f"class_names has {len(names)} names; the network has {classes} "
                         "classes")
    return list(names)


def checked_path(path: Any, what: str) -> Path:
    if not isinstance(path, str | Path):
        raise InputError(f"path must be {what} (a str or pathlib.Path), received "
                         f"{received(path)}")
    if "\x00" in str(path):
        raise InputError(f"path {str(path)!r} holds a NUL byte, which no file name can; "
                         f"give {what}")
    return Path(path)


def received(value: Any) -> str:
    """A value for a message: its type, and its repr cut short."""
    text = repr(value)
    text = text if len(text) <= 60 else f"{text[:60]}..."
    return f"{type(value).__name__} {text}"


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(d) for d in shape)


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside lamina, so that a warning points at
    the caller's line, however deep in lamina it was raised."""
    import sys

    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level
