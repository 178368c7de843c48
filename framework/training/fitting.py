"""Training a :class:`lamina.Model`: ``fit`` (epochs, as ``lamina train`` runs them)
and ``train_step`` (one batch, for a loop of your own), with what they keep between
calls and how ``verbose`` is read.

:class:`Fitting` is the part of ``Model`` that trains; it reads the model's state
(``_plan``, ``_session``, ``_comm``, ``_split``, ``registry``) and its array checks
(``_inputs``, ``_labels``), and is not used on its own.

The validation split is drawn once per model, from the run's generator right
after initialisation (as ``lamina train`` draws it), and reused by every later
``fit`` on as many samples with the same fraction: ``fit(epochs=1)`` twice is
``fit(epochs=2)``, and no sample validated on is ever trained on. A call that
changes the fraction or the number of samples draws a new split, and says so with
a warning, since samples validated on before may then be trained on.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, ConfigIssue
from ..inputs import InputError, received
from ..runtime.distributed import ending_every_rank_on_failure, on_every_rank, same_on_every_rank
from .history import History

#: Keras's verbose levels: 0 silent, 1 a progress bar and a line per epoch, 2 a line
#: per epoch; "auto" is 1
VERBOSE = {0: (False, False), 1: (True, True), 2: (False, True), "auto": (True, True)}


def verbosity(verbose: Any) -> tuple[bool, bool]:
    """(show a progress bar, print a line per epoch) for ``fit(verbose=...)``."""
    if isinstance(verbose, numbers.Integral):  # True/False and NumPy integers too
        verbose = int(verbose)
    if not isinstance(verbose, int | str) or verbose not in VERBOSE:
        raise InputError(f"verbose must be 0 (silent), 1 (a progress bar and a line per "
                         f"epoch), 2 (a line per epoch) or 'auto' (1), received "
                         f"{received(verbose)}")
    return VERBOSE[verbose]


class ValidationSplit:
    """The positions of a model's training and validation samples, drawn once."""

    def __init__(self, *, unknown: bool = False) -> None:
        self.key: tuple[int, float] | None = None
        self.index: tuple[np.ndarray, np.ndarray] | None = None
        self.unknown = unknown  # a loaded model validated on a split not stored with it

    def data(self, run: Any, fraction: float, x: np.ndarray, y: np.ndarray) -> Any:
        """The :class:`~lamina.training.trainer.Data` of ``x``, ``y`` split by
        ``fraction`` (checked by the caller: the split can be made)."""
        from ..data import split
        from .trainer import Data

        key = (len(x), fraction)
        if self.key != key:
            if self.key is not None:
                _warn_redrawn(self.key, key)
            elif self.unknown and fraction > 0:
                warnings.warn(
                    "fit() draws a validation split for this loaded model: the split it was "
                    "trained with is not stored, so samples validated on before may now be "
                    "trained on and the other way round; pass validation_data=(x_val, y_val) "
                    "to control what is validated on", UserWarning, stacklevel=3)
            if fraction == 0:
                index = (np.arange(len(x)), np.arange(0))
            else:
                (train, _), (val, _) = split(np.arange(len(x)), np.arange(len(x)),
                                             fraction=fraction, rng=run.rng,
                                             name="validation_split")
                index = (train, val)
            self.key, self.index = key, index
        train, val = self.index
        return Data(x[train], y[train], x[val], y[val])


def _warn_redrawn(before: tuple[int, float], now: tuple[int, float]) -> None:
    (n0, f0), (n1, f1) = before, now
    if f0 == 0 and f1 == 0:
        return  # nothing was or is validated on
    if f0 == 0:
        what = ("the samples now held out were trained on before, so the validation loss "
                "will look better than it is")
    elif f1 == 0:
        what = "samples validated on before are now trained on"
    else:
        what = "samples validated on before may now be trained on"
    warnings.warn(f"fit() draws a new validation split: the last fit split {n0} samples with "
                  f"validation_split={f0}, this one {n1} with {f1}; {what}. Pass "
                  "validation_data=(x_val, y_val) to fix what is validated on",
                  UserWarning, stacklevel=4)


def weights_changed(run: Any, label: str) -> None:
    """The network's weights were changed outside ``fit`` (``set_weights``,
    ``train_step``): they are what ``save`` writes and ``load`` gives back, so the best
    epoch so far (``restore_best``'s and ``Model.load``'s default) no longer stands
    for them and is forgotten; ``label`` is what ``model.weights`` says."""
    run.last_state = run.best_state = None
    for key in ("best_epoch", "best_val_loss"):
        run.extra.pop(key, None)
    run.extra["stale_epochs"] = 0
    run.weights = label


class Fitting:
    """``fit`` and ``train_step`` of :class:`lamina.Model`."""

    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int | None = None,
            batch_size: int | None = None,
            validation_data: tuple[np.ndarray, np.ndarray] | None = None,
            validation_split: float | None = None, shuffle: bool | None = None,
            seed: int | None = None, shards: int | None = None,
            early_stopping_patience: int | None = None, restore_best: bool | None = None,
            verbose: int | str = "auto", callbacks: Sequence[Any] = ()) -> History:
        """Train on ``x`` (N, *input_shape) and class indices ``y`` (N,) (for a value
        loss such as ``mse``: target rows (N, outputs), or (N,) for one output); returns
        the :class:`~lamina.training.history.History` of this call's epochs (a value loss
        records no accuracy).

        ``epochs`` more epochs; this and every other setting left out is the config's
        ``[training]`` value (``training.epochs``: 15 unless the config says). Validation
        is on ``validation_data`` or on a seeded ``validation_split`` of ``x``, drawn
        once per model (a warning says when another fraction or sample count draws a
        new one); 0 for none. ``shuffle=False`` takes the batches in the data's order.
        ``verbose`` is Keras's: 0 silent, 1 a progress bar and a line per epoch, 2 a
        line per epoch, ``"auto"`` 1. ``callbacks`` are
        :class:`lamina.training.callbacks.Callback` objects or Keras-style ones, checked
        before training starts. Early stopping (``early_stopping_patience``) is one;
        ``restore_best`` ends with the best validation epoch's weights. Calling ``fit``
        again continues training.
        """
        from ..data import split_sizes
        from .callbacks import EarlyStopping, EpochLog, checked_callbacks, silent
        from .trainer import Data, fit

        training = {key: value for key, value in (
            ("batch_size", batch_size), ("validation_split", validation_split),
            ("shuffle", shuffle), ("shards", shards),
            ("early_stopping_patience", early_stopping_patience),
            ("restore_best", restore_best)) if value is not None}

        def checked():
            """Every argument, on every rank, before the model changes at all."""
            plan = self._seeded_plan(seed)
            xs, val = self._inputs(x, "x"), None
            ys = self._labels(y, len(xs), "y")
            more = epochs if epochs is not None else plan.config.training.epochs
            plan.config.with_training(epochs=more)  # the rule a config's epochs obey
            # This call's settings over the model's config, as Keras applies fit's
            # arguments: a setting given to one call is not kept for the next.
            done = self._session.epoch if self._session is not None else 0
            config = plan.config.with_training(**training, epochs=done + more)
            if not len(xs):
                raise InputError("x holds no training samples; pass at least one")
            if validation_data is not None:
                if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
                    raise InputError(f"validation_data must be a pair (x_val, y_val), received "
                                     f"{received(validation_data)}")
                vx = self._inputs(validation_data[0], "validation_data[0]")
                val = (vx, self._labels(validation_data[1], len(vx), "validation_data[1]"))
            else:  # the split's sizes, checked without drawing it
                split_sizes(len(xs), config.training.validation_split, "validation_split")
            return plan, config, xs, ys, val, checked_callbacks(callbacks, self), \
                verbosity(verbose)

        plan, config, x, y, val, callbacks, (bar, lines) = on_every_rank(self._comm, checked)
        same_on_every_rank(self._comm, "fit", x.shape, y.shape, config.to_dict(),
                           None if val is None else (val[0].shape, val[1].shape))
        # Checked: from here on the model changes (its network is built on first use).
        self._plan = plan
        run = on_every_rank(self._comm, lambda: self._run)
        data = Data(x, y, *val) if val is not None else \
            self._split.data(run, config.training.validation_split, x, y)
        run.config = config
        self._use_shards(run)
        # Each call counts early stopping's patience afresh (the best epoch is kept).
        run.extra["stale_epochs"] = 0
        root = self._comm is None or self._comm.rank == 0
        log = print if lines and root else silent  # over MPI, rank 0 alone shows progress
        loop = [EarlyStopping(log=log), *([EpochLog(log)] if lines and root else []),
                *callbacks]
        before = run.epoch
        try:
            with ending_every_rank_on_failure(self._comm):
                fit(run, data, callbacks=loop, quiet=not (bar and root), log=log)
        except BaseException:
            # the network may be part-way through an epoch: say so rather than "last"
            run.weights = (f"epoch {run.epoch}, then part of epoch {run.epoch + 1} (fit() "
                           "stopped)")
            raise
        finally:
            run.step.close()
        return History(run.history[before:])

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One optimizer step on the batch ``x``, ``y`` (class indices, or target rows for a
        value loss; Keras's ``train_on_batch``),
        taken as ``fit`` takes each: the network in training mode (dropout drops), the
        loss and its gradient, backward, the optimizer's update at its current learning
        rate (``model.optimizer.lr``). Returns the batch's mean loss, from before the
        update. Epochs, shuffling, validation and schedules are the caller's loop's."""
        from .trainer import train_batch

        def checked():
            xs = self._inputs(x, "x")
            ys = self._labels(y, len(xs), "y")
            if not len(xs):
                raise InputError("x holds no samples; a step needs at least one")
            return self._run, xs, ys  # the arrays fit: the network may be built

        run, x, y = on_every_rank(self._comm, checked)
        same_on_every_rank(self._comm, "train_step", x.shape, y.shape)
        with ending_every_rank_on_failure(self._comm):
            loss, _ = train_batch(run, x, y, "in train_step()")
        weights_changed(run, f"epoch {run.epoch}, then train_step()")
        return loss

    def _seeded_plan(self, seed: Any):
        """The plan ``fit(seed=...)`` trains with (the model's own when ``seed`` is None);
        nothing of the model changes."""
        if seed is None:
            return self._plan
        self._plan.config.with_training(seed=seed)  # the rule a config's seed obeys
        if self._session is None:
            from ..plan import make_plan

            return make_plan(self._plan.config, self.registry, training={"seed": seed})
        if seed != self._session.config.training.seed:
            raise ConfigError([ConfigIssue("seed", (
                f"this model's network was already built with seed "
                f"{self._session.config.training.seed}; a seed only takes effect before the "
                f"network is first used (fit, predict, layers, get_weights...): pass "
                f"Model(..., seed={seed}) or fit(seed={seed}) on a new model"))])
        return self._plan

    def _use_shards(self, run) -> None:
        from ..plan import make_plan
        from ..runtime.parallel import ShardedStep

        # the shard count is resolved against the network (batch-dependent layers run whole)
        run.config = make_plan(run.config, self.registry).config
        if run.step.shards != run.config.training.shards:
            run.step.close()
            run.step = ShardedStep(run.network, run.loss, run.rng,
                                   shards=run.config.training.shards, comm=self._comm,
                                   loss_who=run.who.get("loss"))

