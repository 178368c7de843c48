"""The training loop.

One generator, seeded from ``training.seed``, drives everything random in a run,
in this order: parameter initialisation, the validation split, then for every
epoch the shuffle (unless ``training.shuffle`` is false) and, per step, the
dropout masks: with the batch on shards (:class:`lamina.runtime.parallel.ShardedStep`)
one seed per step, from which each shard's generator is reseeded; with the batch
whole, the masks themselves. Its
state is saved with every checkpoint, so a resumed run draws exactly the numbers
the uninterrupted run would have drawn and ends with bit-identical weights.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..config import NetworkConfig
from ..errors import PASSED_THROUGH, PluginError, StateError, TrainingError
from ..graph import Network
from ..plan import Plan
from ..registry import Registry
from ..runtime.parallel import ShardedStep, loss_value, plugin_failed, probabilities
from ..schedules import learning_rate
from . import runs
from .callbacks import Callback, Log, run_callbacks, to_stderr
from .runs import Checkpoint, shown

T = TypeVar("T")


@dataclass
class Data:
    """Arrays a run trains and validates on: x (N, *input_shape), y (N,) class indices
    for a classification loss, (N, C) target rows for a value loss."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray


@dataclass(repr=False)
class Session:
    """Everything a run is made of, built identically for a new run and a resumed one."""

    config: NetworkConfig
    network: Network
    loss: Any
    optimizer: Any
    rng: np.random.Generator
    run_dir: Path | None  # None: trained in memory (lamina.Model), nothing written
    step: ShardedStep  # runs the training steps and predictions, shard by shard
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0  # epochs completed
    saved: int = 0  # epochs in the last checkpoint written (or restored)
    #: the network's state at the best epoch so far (by validation loss), if any
    best_state: dict[str, np.ndarray] | None = None
    stop_training: bool = False  # set by a callback: end after the current epoch
    weights: str | None = None  # which trained weights it holds, when not the last epoch's
    #: the last epoch's state, kept when training ended with the best epoch's instead
    last_state: dict[str, np.ndarray] | None = None
    #: how messages name the loss and optimizer plugins, with their providers (by kind)
    who: dict[str, str] = field(default_factory=dict)


    def __repr__(self) -> str:  # what a callback that prints its run shows: no arrays
        where = f"run_dir={shown(self.run_dir)}" if self.run_dir is not None else "in memory"
        lr = getattr(self.optimizer, "lr", None)
        rate = f" lr {lr:.3g}" if isinstance(lr, float) else ""
        return (f"<lamina training session: epoch {self.epoch} of "
                f"{self.config.training.epochs}, {len(self.network.nodes)} layers, "
                f"{self.config.optimizer.type}{rate}, {where}>")


def make_session(plan: Plan, registry: Registry, run_dir: Path | None, *,
                 comm: Any = None) -> Session:
    """Network, loss and optimizer of a checked plan; the generator seeded and used to init.

    The plan's config has its run settings resolved (the shard count among them), and
    it is what the run directory records: a resumed run splits its batches as the run
    did, whatever the default is by then. ``comm`` (an MPI communicator,
    lamina.runtime.distributed) makes this process one rank of a distributed run."""
    config = plan.config
    rng = np.random.default_rng(config.training.seed)
    network = Network(config, registry, rng)
    entries = {"loss": registry.entry("loss", config.loss.type),
               "optimizer": registry.entry("optimizer", config.optimizer.type)}
    loss = _constructed(entries["loss"], config.loss.config)
    optimizer = _constructed(entries["optimizer"], config.optimizer.config)
    step = ShardedStep(network, loss, rng, shards=config.training.shards, comm=comm,
                       loss_who=entries["loss"].who)
    return Session(config, network, loss, optimizer, rng,
                   Path(run_dir) if run_dir is not None else None, step,
                   who={kind: entry.who for kind, entry in entries.items()})


def _constructed(entry: Any, config: Any) -> Any:
    """An instance of a loss or optimizer plugin; its constructor's failure names it."""
    try:
        return entry.cls(config)
    except PASSED_THROUGH:
        raise
    except BaseException as exc:
        raise plugin_failed(entry.who, exc, "in its constructor") from exc


def split_validation(session: Session, x: np.ndarray, y: np.ndarray) -> Data:
    """The seeded validation split, drawn from the run's generator after initialisation."""
    from ..data import split

    fraction = session.config.training.validation_split
    if fraction == 0:
        return Data(x, y, x[:0], y[:0])
    (tx, ty), (vx, vy) = split(x, y, fraction=fraction, rng=session.rng,
                               name="training.validation_split")
    return Data(tx, ty, vx, vy)


def check_fits(session: Session, ckpt: Checkpoint) -> None:
    """Raise StateError unless ``ckpt`` can be restored into ``session``: the network's
    arrays, the optimizer's state for these parameters, the generator's state. Nothing
    changes: a run directory is checked as a whole before anything runs."""
    session.network.check_state_dict(ckpt.params)
    if ckpt.best_params is not None:
        session.network.check_state_dict(ckpt.best_params)
    def probe_state() -> None:
        probe = type(session.optimizer)(session.optimizer.config)
        probe.load_state_dict(ckpt.optimizer)
        check = getattr(probe, "check_state", None)
        if check is not None:
            check(session.network.params(), session.network.grads())

    optimizer_call(session, "load_state_dict() (the checkpoint's optimizer state)",
                   probe_state)
    try:
        np.random.Generator(np.random.PCG64()).bit_generator.state = ckpt.rng_state
    except (TypeError, ValueError, KeyError) as exc:
        raise StateError(f"the generator state cannot be restored: {exc}") from exc


def restore(session: Session, ckpt: Checkpoint) -> None:
    """Put a freshly made session into the state a checkpoint recorded (checked with
    :func:`check_fits` first)."""
    session.network.load_state_dict(ckpt.params)
    optimizer_call(session, "load_state_dict()",
                   lambda: session.optimizer.load_state_dict(ckpt.optimizer))
    session.rng.bit_generator.state = ckpt.rng_state
    session.history = list(ckpt.history)
    session.extra = dict(ckpt.extra)
    session.best_state = ckpt.best_params  # loaded only when the run needs them
    session.epoch = session.saved = ckpt.epoch


def checkpoint(session: Session) -> None:
    """Save the session's state as its run directory's checkpoint."""
    _save(session)
    session.saved = session.epoch
    runs.write_metrics(session.run_dir, session.history)


def _save(session: Session) -> None:
    new_best = session.extra.get("best_epoch") == session.epoch
    runs.save_checkpoint(session.run_dir, Checkpoint(
        epoch=session.epoch,
        params=session.network.state_dict(),
        optimizer=optimizer_state(session),
        rng_state=session.rng.bit_generator.state,
        history=session.history,
        extra=session.extra,
        best_params=session.best_state if new_best else None,
    ))


def optimizer_call(session: Session, what: str, call: Callable[[], T]) -> T:
    """``call()``, a use of the optimizer plugin outside a step; its failure is named."""
    try:
        return call()
    except PASSED_THROUGH:
        raise
    except BaseException as exc:
        raise plugin_failed(session.who["optimizer"], exc, f"in {what}") from exc


def optimizer_state(session: Session) -> dict[str, np.ndarray]:
    """The optimizer's ``state_dict()`` for a checkpoint, checked: arrays by str keys."""
    state = optimizer_call(session, "state_dict()", session.optimizer.state_dict)
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise PluginError(f"{session.who['optimizer']} returned a {type(state).__name__} from "
                          "state_dict(); a checkpoint needs a dict of arrays by str keys. This "
                          "is a bug in the plugin; report it to its author")
    return state


# -- the loop -------------------------------------------------------------------------
def evaluate_arrays(session: Session, x: np.ndarray, y: np.ndarray,
                    batch_size: int = 250) -> tuple[float, np.ndarray]:
    """Mean loss of the network in eval mode, and its predicted classes (N,) for a
    classification loss, or its predictions (N, C) (the loss's ``predict_proba``) for a
    value loss.

    Batches of 250 keep the im2col buffers of a convnet small (a batch of 1,000
    needs ~140 MB for the reference network's second conv alone) at no cost in speed."""
    classifies = session.loss.traits.classifies
    total, predictions = 0.0, []
    for start in range(0, len(x), batch_size):
        logits = session.step.predict(x[start:start + batch_size])
        try:
            value = loss_value(session.loss, logits, y[start:start + batch_size],
                               session.who["loss"])
        except PASSED_THROUGH:
            raise
        except BaseException as exc:
            raise plugin_failed(session.who["loss"], exc) from exc
        total += value * len(logits)
        predictions.append(np.argmax(logits, axis=1) if classifies else
                           probabilities(session.loss, logits, session.who["loss"]))
    return total / max(len(x), 1), np.concatenate(predictions) if predictions else y[:0]


def train_epoch(session: Session, data: Data, *, progress: Any) -> tuple[float, float | None]:
    """One pass over the (shuffled) training set; returns (mean loss, accuracy), the
    accuracy None for a value loss."""
    batch_size = session.config.training.batch_size
    order = session.rng.permutation(len(data.train_x)) if session.config.training.shuffle \
        else np.arange(len(data.train_x))
    classifies = session.loss.traits.classifies
    seen = correct = 0
    loss_sum = 0.0
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        xb, yb = data.train_x[index], data.train_y[index]
        loss, logits = train_batch(session, xb, yb, f"at epoch {session.epoch + 1}, batch "
                                                    f"{start // batch_size + 1}")
        seen += len(index)
        loss_sum += loss * len(index)
        progress.update(len(index))
        if classifies:
            correct += int(np.sum(np.argmax(logits, axis=1) == yb))
            progress.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}",
                                 refresh=False)
        else:
            progress.set_postfix(loss=f"{loss_sum / seen:.4f}", refresh=False)
    return loss_sum / seen, correct / seen if classifies else None


def train_batch(session: Session, x: np.ndarray, y: np.ndarray, where: str
                ) -> tuple[float, np.ndarray]:
    """One optimizer step on the batch (x, y): forward in training mode, the loss and
    its gradient, backward, the optimizer's update. Returns (the batch's mean loss, the
    logits); a non-finite loss stops training before the update (``where`` says when)."""
    try:
        loss, logits = session.step.train_step(x, y)
    except PASSED_THROUGH:
        raise  # a layer's own failure arrives as a PluginError naming it
    except BaseException as exc:
        raise plugin_failed(session.who["loss"], exc) from exc
    if not math.isfinite(loss):
        raise stopped(session, f"the loss became {loss} {where}")
    # params() and grads() are read at every step: the optimizer gets the arrays the
    # layers hold now, whatever a layer did with them since the last step.
    try:
        session.optimizer.step(session.network.params(), session.network.grads())
    except PASSED_THROUGH:
        raise
    except BaseException as exc:
        raise plugin_failed(session.who["optimizer"], exc) from exc
    return loss, logits


def stopped(session: Session, what: str) -> TrainingError:
    """The error that ends a run whose numbers stopped being finite, saying which
    checkpoint survives: non-finite values are never saved. Over MPI every rank sees the
    same numbers and raises it together (``collective``): rank 0 reports it."""
    error = _stopped(session, what)
    error.collective = True
    return error


def _stopped(session: Session, what: str) -> TrainingError:
    if session.run_dir is None:
        return TrainingError(f"{what}; training stopped. Lower the learning rate or check "
                             "the data")
    where = shown(session.run_dir)
    if session.saved:
        kept = f"The last good checkpoint (epoch {session.saved}) is kept in {where}"
    else:
        kept = f"No checkpoint had been written, so {where} holds none"
    return TrainingError(f"{what}; training stopped. {kept}. Lower the learning rate (--lr) "
                         "or check the data")


def _check_weights(session: Session, epoch: int) -> None:
    """After an epoch's last step: every weight must be finite (a step can overflow with
    a finite loss before it), or nothing of the epoch is kept."""
    bad = [key for key, value in session.network.params().items()
           if not np.all(np.isfinite(value))]
    if bad:
        raise stopped(session, f"the weights became NaN or infinite at epoch {epoch} "
                               f"({', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''})")


#: an epoch's training loss this many times the best earlier one is reported as diverging
DIVERGENCE = 10.0


def fit(session: Session, data: Data, *, callbacks: list[Callback] | None = None,
        quiet: bool = False, log: Log = print, note: Log | None = None) -> list[dict]:
    """Train from ``session.epoch`` to the configured number of epochs; returns the history.

    ``callbacks`` run around each epoch (:mod:`lamina.training.callbacks`); the default
    is what ``lamina train`` does: checkpoint, print the epoch's line with ``log``, stop
    early. ``quiet`` hides the progress bar (on stderr); ``note`` receives warnings
    (default: stderr). With ``training.restore_best`` the network ends with the weights
    of the epoch with the best validation loss.
    """
    from tqdm import tqdm

    callbacks = run_callbacks(log) if callbacks is None else callbacks
    note = note if note is not None else to_stderr
    training = session.config.training
    session.stop_training = False
    session.weights = session.last_state = None  # from here on the network trains on
    for callback in callbacks:
        callback.on_train_begin(session)
    while session.epoch < training.epochs and not session.stop_training:
        for callback in callbacks:
            callback.on_epoch_begin(session)
        epoch = session.epoch
        session.optimizer.lr = learning_rate(training.schedule, session.config.optimizer.config.lr,
                                             epoch, training.epochs)
        started = time.perf_counter()
        # Redirected to a file, the bar is redrawn at most every 10 s rather than 10 times
        # a second, so a log stays readable.
        with tqdm(total=len(data.train_x), desc=f"epoch {epoch + 1}/{training.epochs}",
                  unit="sample", disable=quiet, leave=False, file=sys.stderr,
                  dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 10.0,
                  ) as progress:
            train_loss, train_acc = train_epoch(session, data, progress=progress)
        _check_weights(session, epoch + 1)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": session.optimizer.lr,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": None,
            "val_accuracy": None,
            "seconds": 0.0,
        }
        if len(data.val_x):
            val_loss, predicted = evaluate_arrays(session, data.val_x, data.val_y)
            if not math.isfinite(val_loss):
                raise stopped(session, f"the validation loss became {val_loss} at epoch "
                                       f"{epoch + 1}")
            record["val_loss"] = val_loss
            if session.loss.traits.classifies:
                record["val_accuracy"] = float(np.mean(predicted == data.val_y))
            _track_best(session, val_loss, epoch + 1)
        record["seconds"] = round(time.perf_counter() - started, 3)
        best = min((r["train_loss"] for r in session.history), default=None)
        if best is not None and train_loss > DIVERGENCE * best:
            note(f"warning: the training loss grew from {best:.4g} to {train_loss:.4g} at epoch "
                 f"{epoch + 1}: the run is diverging; a lower learning rate may help")
        session.history.append(record)
        session.epoch += 1
        for callback in callbacks:
            callback.on_epoch_end(session, record)
    if training.restore_best and session.best_state is not None \
            and session.extra.get("best_epoch") != session.epoch:
        session.last_state = session.network.state_dict()
        session.network.load_state_dict(session.best_state)
        best, loss = session.extra["best_epoch"], session.extra["best_val_loss"]
        session.weights = f"epoch {best} of {session.epoch} (best validation loss {loss:.4f})"
        log(f"restored the weights of epoch {best} (best validation loss {loss:.4f})")
    for callback in callbacks:
        callback.on_train_end(session)
    return session.history


def _track_best(session: Session, val_loss: float, epoch: int) -> None:
    """Remember the epoch with the lowest validation loss (its weights too) and count the
    epochs since it, for best-epoch checkpoints and early stopping."""
    best = session.extra.get("best_val_loss")
    if best is None or val_loss < best:
        session.extra.update(best_val_loss=val_loss, best_epoch=epoch, stale_epochs=0)
        session.best_state = session.network.state_dict()  # copies
    else:
        session.extra["stale_epochs"] = session.extra.get("stale_epochs", 0) + 1


def format_record(record: dict[str, Any], epochs: int) -> str:
    """An epoch's line: its losses, and its accuracies where there are (a classification
    loss)."""
    text = f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}"
    if record["train_accuracy"] is not None:
        text += f"  acc {record['train_accuracy']:.4f}"
    if record["val_loss"] is not None:
        text += f"  val_loss {record['val_loss']:.4f}"
        if record["val_accuracy"] is not None:
            text += f"  val_acc {record['val_accuracy']:.4f}"
    return text + f"  lr {record['lr']:.2e}  {record['seconds']:.1f}s"
