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

import difflib
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
#: packages whose callback base classes define every Keras hook as a no-op: their own
#: definitions are not the user's (only what a subclass overrides counts)
_KERAS_PACKAGES = ("keras", "tf_keras", "tensorflow")


def checked_callbacks(callbacks: Any, model: Any = None) -> list[Callback]:
    """``callbacks`` as the loop calls them, every hook checked before training starts:
    :class:`Callback` objects as they are, other objects with Keras's hooks wrapped
    (:class:`KerasStyle`). ``model`` is what a Keras-style callback sees as
    ``self.model``. Raises :class:`lamina.InputError` (a TypeError) naming the
    callback, the hook and the fix. ``None`` is no callbacks."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or not isinstance(callbacks, Sequence) \
            or isinstance(callbacks, str):
        raise InputError(f"callbacks must be a list of callback objects, received "
                         f"{received(callbacks)}; pass [callback] for one")
    checked: list[Callback] = []
    for i, callback in enumerate(callbacks):
        where = f"callbacks[{i}] ({type(callback).__name__})"
        _check_hook_names(callback, where)
        if isinstance(callback, Callback):
            _check_hooks(callback, where, keras=False)
            checked.append(callback)
        else:
            checked.append(KerasStyle(callback, where, model))
    return checked


def _users(callback: Any, name: str) -> bool:
    """Whether ``name`` is defined on ``callback`` by the user: on the object, or by a
    class of its own (not lamina's Callback nor a Keras base class, whose hooks are
    no-ops)."""
    if name in getattr(callback, "__dict__", {}):
        return True
    for cls in type(callback).__mro__:
        if name in vars(cls):
            package = (cls.__module__ or "").split(".")[0]
            return cls is not Callback and package not in _KERAS_PACKAGES
    return False


def _check_hook_names(callback: Any, where: str) -> None:
    """A hook lamina never calls, or a misspelt one, would be skipped in silence."""
    known = (*HOOKS, *NEVER_CALLED)
    own = [name for name in dir(callback) if name.startswith("on_") and _users(callback, name)]
    never = [name for name in own if name in NEVER_CALLED]
    if never:
        raise InputError(
            f"{where} defines {', '.join(never)}, which lamina never calls (its loop calls "
            "callbacks around the training and each epoch only: on_train_begin, "
            "on_epoch_begin, on_epoch_end, on_train_end); move that work to on_epoch_end "
            "or remove it")
    for name in own:
        if name not in known:
            close = difflib.get_close_matches(name, HOOKS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise InputError(f"{where} defines {name}, which is not a hook lamina calls; "
                             f"{hint}the hooks are {', '.join(HOOKS)}")


def _check_hooks(callback: Any, where: str, keras: bool) -> list[str]:
    """Check that every hook the user defined takes what the loop passes it (Keras's
    arguments for a callback that does not subclass :class:`Callback`, lamina's
    otherwise) and is not written for the other convention; returns their names."""
    hooks, other = (KERAS_HOOKS, HOOKS) if keras else (HOOKS, KERAS_HOOKS)
    cls = type(callback).__name__
    defined = [name for name in hooks if _users(callback, name)]
    for name in defined:
        hook = getattr(callback, name)
        parameters = _parameters(hook, where, name)
        theirs = other[name]
        if parameters[:1] == [theirs[0]] or (theirs[-1] in parameters
                                             and theirs[-1] not in hooks[name]):
            written, called = ", ".join(parameters), ", ".join(hooks[name])
            if keras:
                raise InputError(
                    f"{where}.{name} is written as lamina's ({written}), but {cls} does not "
                    f"subclass lamina.Callback, so it is called as Keras calls it, "
                    f"{name}({called}): subclass lamina.Callback, or take ({called})")
            raise InputError(
                f"{where}.{name} is written as Keras's ({written}), but {cls} subclasses "
                f"lamina's Callback, whose {name} receives ({called}): take ({called}), or "
                f"drop the Callback base class and lamina calls {name}"
                f"({', '.join(theirs)}) as Keras does")
        _check_takes(hook, hooks[name], where, name)
    return defined


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
    ``on_train_end(logs)`` (the last epoch's logs). When ``fit`` checks it, its
    ``set_model(model)`` is called if it has one, else its ``model`` attribute is set
    (unless it holds something other than a lamina Model), so
    ``self.model.stop_training = True`` stops the run."""

    def __init__(self, callback: Any, where: str, model: Any):
        hooks = _check_hooks(callback, where, keras=True)
        if not hooks:
            raise InputError(
                f"{where} has none of the hooks lamina calls; subclass lamina.Callback and "
                "override what you need (on_train_begin(run), on_epoch_begin(run), "
                "on_epoch_end(run, record), on_train_end(run)), or write Keras's "
                "on_epoch_end(epoch, logs)")
        self.callback, self.hooks = callback, hooks
        self._last: dict[str, float] = {}
        try:
            if callable(getattr(callback, "set_model", None)):
                callback.set_model(model)
            elif getattr(callback, "model", None) is None or \
                    type(callback.model) is type(model):
                callback.model = model
        except Exception as exc:  # a read-only property, a set_model that fails
            raise InputError(f"{where} could not be given the model (self.model, as Keras "
                             f"gives it): {type(exc).__name__}: {exc}") from exc

    def _call(self, name: str, *arguments: Any) -> None:
        if name in self.hooks:
            getattr(self.callback, name)(*arguments)

    def on_train_begin(self, run: Session) -> None:
        self._last = logs(run.history[-1]) if run.history else {}
        self._call("on_train_begin", {})

    def on_epoch_begin(self, run: Session) -> None:
        self._call("on_epoch_begin", run.epoch, {})

    def on_epoch_end(self, run: Session, record: dict[str, Any]) -> None:
        self._last = logs(record)
        self._call("on_epoch_end", record["epoch"] - 1, dict(self._last))

    def on_train_end(self, run: Session) -> None:
        self._call("on_train_end", dict(self._last))
