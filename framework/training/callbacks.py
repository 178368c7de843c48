"""Hooks of the training loop: what happens around each epoch, as objects.

:func:`lamina.training.trainer.fit` runs the epochs; everything a particular use of
the loop adds is a :class:`Callback`: ``lamina train`` passes
:func:`run_callbacks` (write a checkpoint, print the epoch's line, stop early), and
:class:`lamina.Model` passes early stopping and the user's own. So the command line
and the Python API train with one loop.

A callback receives the :class:`~lamina.training.trainer.Session` (``run``): its
``network``, ``optimizer``, ``history`` (one record per epoch: ``epoch``, ``lr``,
``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``),
``epoch`` (epochs completed) and ``extra`` (the loop's bookkeeping:
``best_val_loss``, ``best_epoch``, ``stale_epochs``). Setting ``run.stop_training``
ends training after the current epoch.

``Model.fit`` also takes callbacks written for Keras: an object that does not
subclass :class:`Callback` has its hooks called as Keras calls them
(``on_epoch_end(epoch, logs)``, the epoch counted from 0 and ``logs`` a dict of
floats, lamina.training.history.logs), with its ``model`` the :class:`lamina.Model`
(``self.model.stop_training = True`` stops). :func:`checked_callbacks` checks every
callback's hooks before the first epoch, so a hook lamina would call with arguments
it cannot take, or one it would never call, is refused by name instead of failing
mid-run or being silently skipped.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..inputs import InputError, received
from .history import logs

if TYPE_CHECKING:
    from .trainer import Session

Log = Callable[[str], None]


def to_stderr(message: str) -> None:
    """Where diagnostics go by default: stderr, apart from results on stdout."""
    print(message, file=sys.stderr, flush=True)


def silent(message: str) -> None:
    """A log that says nothing (quiet ranks of a distributed run, fit(verbose=0))."""
    del message


class Callback:
    """Per-epoch hooks; override the ones you need (each does nothing by default)."""

    def on_train_begin(self, run: Session) -> None:
        """Before the first epoch this call trains (a resumed run has epochs behind it)."""

    def on_epoch_begin(self, run: Session) -> None:
        """Before each epoch (``run.epoch`` epochs are done)."""

    def on_epoch_end(self, run: Session, record: dict[str, Any]) -> None:
        """After an epoch: ``record`` is its entry in ``run.history``."""

    def on_train_end(self, run: Session) -> None:
        """After the last epoch, or after a callback stopped training."""


class EarlyStopping(Callback):
    """Stop when the validation loss has not improved for ``patience`` epochs.

    ``patience=None`` reads ``training.early_stopping_patience`` from the run's config
    (and never stops when that is unset). The count lives in ``run.extra`` and is saved
    with each checkpoint, so a resumed run stops where the uninterrupted one would.
    """

    def __init__(self, patience: int | None = None, log: Log | None = None):
        self.patience = patience
        self.log = log

    def _patience(self, run: Session) -> int | None:
        if self.patience is not None:
            return self.patience
        return run.config.training.early_stopping_patience

    def _check(self, run: Session) -> None:
        patience = self._patience(run)
        if patience is not None and run.extra.get("stale_epochs", 0) >= patience:
            run.stop_training = True
            if self.log is not None:
                self.log(f"early stopping: no better validation loss for {patience} epochs")

    def on_train_begin(self, run: Session) -> None:
        self._check(run)

    def on_epoch_end(self, run: Session, record: dict[str, Any]) -> None:
        self._check(run)


class Checkpointing(Callback):
    """Write the run directory's checkpoint after every epoch (and the best epoch's
    weights when the validation loss improved); see :mod:`lamina.training.runs`."""

    def on_epoch_end(self, run: Session, record: dict[str, Any]) -> None:
        from .trainer import checkpoint

        checkpoint(run)


class EpochLog(Callback):
    """Print one line per epoch (``epoch 3/15  loss 0.0853  acc 0.9738 ...``)."""

    def __init__(self, log: Log):
        self.log = log

    def on_epoch_end(self, run: Session, record: dict[str, Any]) -> None:
        from .trainer import format_record

        self.log(format_record(record, run.config.training.epochs))


def run_callbacks(log: Log) -> list[Callback]:
    """What ``lamina train`` does around each epoch, in order: checkpoint, print the
    epoch's line, then decide whether to stop early."""
    return [Checkpointing(), EpochLog(log), EarlyStopping(log=log)]


# -- checking the callbacks a user passes ---------------------------------------------
#: lamina's hooks and the arguments the loop passes them
HOOKS = {"on_train_begin": ("run",), "on_epoch_begin": ("run",),
         "on_epoch_end": ("run", "record"), "on_train_end": ("run",)}
#: the same hooks on a Keras-style callback, called as Keras calls them
KERAS_HOOKS = {"on_train_begin": ("logs",), "on_epoch_begin": ("epoch", "logs"),
               "on_epoch_end": ("epoch", "logs"), "on_train_end": ("logs",)}
#: Keras hooks lamina's loop has no moment for: defined, they would never be called
NEVER_CALLED = ("on_batch_begin", "on_batch_end", "on_train_batch_begin",
                "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin",
                "on_test_batch_end", "on_predict_begin", "on_predict_end",
                "on_predict_batch_begin", "on_predict_batch_end")


def checked_callbacks(callbacks: Any, model: Any = None) -> list[Callback]:
    """``callbacks`` as the loop calls them, every hook checked before training starts:
    :class:`Callback` objects as they are, other objects with Keras's hooks wrapped
    (:class:`KerasStyle`). ``model`` is what a Keras-style callback sees as
    ``self.model``. Raises :class:`lamina.InputError` (a TypeError) naming the
    callback, the hook and the fix."""
    if isinstance(callbacks, Callback) or not isinstance(callbacks, Sequence) \
            or isinstance(callbacks, str):
        raise InputError(f"callbacks must be a list of callback objects, received "
                         f"{received(callbacks)}; pass [callback] for one")
    checked: list[Callback] = []
    for i, callback in enumerate(callbacks):
        where = f"callbacks[{i}] ({type(callback).__name__})"
        if isinstance(callback, Callback):
            _check_lamina_hooks(callback, where)
            checked.append(callback)
        else:
            checked.append(KerasStyle(callback, where, model))
    return checked


def _check_lamina_hooks(callback: Callback, where: str) -> None:
    for name, arguments in HOOKS.items():
        hook = getattr(callback, name, None)
        if getattr(type(callback), name, None) is getattr(Callback, name):
            continue  # not overridden
        parameters = _parameters(hook, where, name)
        if parameters[:1] == ["epoch"] or "logs" in parameters:
            raise InputError(
                f"{where}.{name} is written as Keras's ({', '.join(parameters)}), but "
                f"{type(callback).__name__} subclasses lamina's Callback, whose {name} "
                f"receives ({', '.join(arguments)}): take ({', '.join(arguments)}), or drop "
                f"the Callback base class and lamina calls {name}"
                f"({', '.join(KERAS_HOOKS[name])}) as Keras does")
        _check_takes(hook, arguments, where, name)


def _parameters(hook: Any, where: str, name: str) -> list[str]:
    if not callable(hook):
        raise InputError(f"{where}.{name} is {received(hook)}, not a method")
    try:
        return list(inspect.signature(hook).parameters)
    except (TypeError, ValueError):  # a builtin without a signature: tried when called
        return []


def _check_takes(hook: Any, arguments: tuple[str, ...], where: str, name: str) -> None:
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*arguments)
    except TypeError:
        raise InputError(f"{where}.{name}{signature} cannot take the arguments lamina passes: "
                         f"{name}({', '.join(arguments)}); change its parameters to "
                         f"({', '.join(arguments)})") from None


class KerasStyle(Callback):
    """A callback written for Keras, called as Keras calls it: ``on_epoch_begin(epoch,
    logs)`` and ``on_epoch_end(epoch, logs)`` with the epoch counted from 0 and
    ``logs`` the epoch's numbers by Keras's names, ``on_train_begin(logs)``,
    ``on_train_end(logs)`` (the last epoch's logs). Before training its
    ``set_model(model)`` is called if it has one, else its ``model`` attribute is set
    (unless it has one), so ``self.model.stop_training = True`` stops the run."""

    def __init__(self, callback: Any, where: str, model: Any):
        hooks = [name for name in KERAS_HOOKS if getattr(callback, name, None) is not None]
        if not hooks:
            raise InputError(
                f"{where} has none of the hooks lamina calls; subclass "
                "lamina.training.callbacks.Callback and override what you need "
                "(on_train_begin(run), on_epoch_begin(run), on_epoch_end(run, record), "
                "on_train_end(run)), or write Keras's on_epoch_end(epoch, logs)")
        never = [name for name in NEVER_CALLED if getattr(callback, name, None) is not None]
        if never:
            raise InputError(
                f"{where} defines {', '.join(never)}, which lamina never calls (its loop "
                "calls callbacks around the training and each epoch only: on_train_begin, "
                "on_epoch_begin, on_epoch_end, on_train_end); move that work to "
                "on_epoch_end or remove it")
        for name in hooks:
            _parameters(getattr(callback, name), where, name)
            _check_takes(getattr(callback, name), KERAS_HOOKS[name], where, name)
        self.callback, self.model = callback, model
        self._last: dict[str, float] = {}

    def _call(self, name: str, *arguments: Any) -> None:
        hook = getattr(self.callback, name, None)
        if hook is not None:
            hook(*arguments)

    def on_train_begin(self, run: Session) -> None:
        if hasattr(self.callback, "set_model"):
            self.callback.set_model(self.model)
        elif not hasattr(self.callback, "model"):
            self.callback.model = self.model
        self._last = logs(run.history[-1]) if run.history else {}
        self._call("on_train_begin", {})

    def on_epoch_begin(self, run: Session) -> None:
        self._call("on_epoch_begin", run.epoch, {})

    def on_epoch_end(self, run: Session, record: dict[str, Any]) -> None:
        self._last = logs(record)
        self._call("on_epoch_end", record["epoch"] - 1, dict(self._last))

    def on_train_end(self, run: Session) -> None:
        self._call("on_train_end", dict(self._last))
