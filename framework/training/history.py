"""What a ``fit`` call returns: the records of the epochs it trained, also read the
way Keras users read a history (``history.history["val_loss"]``).

A record is lamina's (one per epoch, as in a run's ``metrics.json``: ``epoch``
counted from 1, ``lr``, ``train_loss``, ``train_accuracy``, ``val_loss``,
``val_accuracy``, ``seconds``); :func:`logs` gives the same numbers under Keras's
names, which is what ``History.history`` lists and what a Keras-style callback
receives (lamina.training.callbacks). A value loss (mse) records no accuracy: its
records hold None there, and its logs and ``History.history`` leave ``accuracy`` and
``val_accuracy`` out, as Keras's do for a model compiled without that metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: lamina's record keys under Keras's names, in the order Keras lists them
KERAS_NAMES = {"train_loss": "loss", "train_accuracy": "accuracy", "val_loss": "val_loss",
               "val_accuracy": "val_accuracy", "lr": "lr", "seconds": "seconds"}


def logs(record: dict[str, Any]) -> dict[str, float]:
    """An epoch's record as Keras's ``logs``: ``loss``, ``accuracy`` (a classification
    loss), ``val_loss`` and ``val_accuracy`` (only when the epoch was validated), ``lr``,
    ``seconds``."""
    return {keras: record[ours] for ours, keras in KERAS_NAMES.items()
            if record.get(ours) is not None}


class History(Sequence):
    """The epochs one ``fit`` call trained, in order: a list of records (``history[-1]
    ["val_accuracy"]``), with ``history.history``, a dict of lists by Keras's names
    (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``, ``seconds``; the
    ``val_`` lists only when the call validated), and ``history.epoch``, the epochs'
    numbers as lamina counts them (from 1, continuing across ``fit`` calls).
    ``model.history`` holds every epoch the model trained."""

    def __init__(self, records: Sequence[dict[str, Any]]):
        self.records = [dict(record) for record in records]  # copies: later fits change nothing

    @property
    def epoch(self) -> list[int]:
        return [record["epoch"] for record in self.records]

    @property
    def history(self) -> dict[str, list[float]]:
        columns: dict[str, list[float]] = {}
        for record in self.records:
            for key, value in logs(record).items():
                columns.setdefault(key, []).append(value)
        return columns

    def __getitem__(self, index):
        return self.records[index]

    def __len__(self) -> int:
        return len(self.records)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return self.records == other.records
        return isinstance(other, list) and self.records == other

    __hash__ = None  # mutable records: not hashable, as a list is not

    def __repr__(self) -> str:
        if not self.records:
            return "History(no epochs trained)"
        last = logs(self.records[-1])
        shown = ", ".join(f"{key} {value:.4f}" for key, value in last.items()
                          if key not in ("lr", "seconds"))
        first, end = self.records[0]["epoch"], self.records[-1]["epoch"]
        span = f"epoch {end}" if first == end else f"epochs {first}-{end}"
        return f"History({span}; last: {shown})"
