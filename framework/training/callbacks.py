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
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .trainer import Session

Log = Callable[[str], None]


def to_stderr(message: str) -> None:
    """Where diagnostics go by default: stderr, apart from results on stdout."""
    print(message, file=sys.stderr, flush=True)


def silent(message: str) -> None:
    """A log that says nothing (quiet ranks of a distributed run, fit(progress=False))."""
    del message


class Callback:
    """Per-epoch hooks; override the ones you need (each does nothing by default)."""

    def on_train_begin(self, run: Session) -> None:
        """Before the first epoch this call trains (a resumed run has epochs behind it)."""

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
