"""Start, resume and evaluate runs: what ``lamina train`` and ``lamina evaluate`` call.

Every command checks everything it depends on (the config, the run directory as a
whole, the data) before it writes anything: a command that fails leaves every file
as it found it. Training and resuming hold the run directory's lock (no second
process can train in it) and, once holding it, remove what a killed process left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import NetworkConfig
from ..errors import (
    CheckpointError,
    ConfigError,
    ConfigIssue,
    DataError,
    StateError,
)
from ..plan import Plan, make_plan
from ..registry import Registry
from ..runtime.distributed import (
    Comm,
    check_shards,
    ending_every_rank_on_failure,
    on_every_rank,
    on_root,
    root_first,
)
from . import runs
from .callbacks import EarlyStopping, silent, to_stderr
from .provenance import check_plugins_loaded, check_same_plugins, provenance, types_named
from .runs import Checkpoint, RunLock, shown
from .trainer import (
    Data,
    Session,
    check_fits,
    fit,
    make_session,
    restore,
    split_validation,
)

Log = Callable[[str], None]


def _load_data(session: Session, data_dir: str | None, note: Log, download: bool = True,
               ) -> tuple[Data, dict]:
    """The split training data and the files it came from. The loaded dataset itself
    (its unsplit training and its test arrays) is let go: training never reads them."""
    from ..data import load_dataset

    training = session.config.training
    dataset = load_dataset(training.dataset, data_dir=data_dir, limit=training.limit,
                           report=note, parts=("train",), download=download)
    _check_fits_dataset(session.config, session.network.output_shape, dataset)
    targets = dataset_targets(session, dataset.train_y, dataset.num_classes)
    return split_validation(session, dataset.train_x, targets), dataset.files


def dataset_targets(session: Session, labels: np.ndarray, classes: int) -> np.ndarray:
    """What the run's loss trains on for a dataset's class ``labels``: the labels for a
    classification loss; for a value loss their one-hot rows (N, classes) in the
    network's dtype ("mse on one-hot rows", docs/losses/mse.md)."""
    if session.loss.traits.classifies:
        return labels
    return np.eye(classes, dtype=session.network.dtype)[labels]


def _preflight(session: Session, data: Data) -> None:
    """Run the network once, in eval mode, on two training samples, before anything is
    written: a plugin that fails on real data, or a compiled kernel that cannot load
    (Numba missing or broken, a KernelError), stops the command with nothing changed.
    Eval mode draws no random numbers, so the run that follows is the same as without."""
    session.network.forward(data.train_x[:2], training=False)


def _check_fits_dataset(config: NetworkConfig, output_shape: tuple[int, ...], dataset) -> None:
    expected = tuple(config.input_shape)
    if dataset.input_shape != expected:
        raise ConfigError([ConfigIssue("model.input_shape", (
            f"{dataset.name} samples are shaped {dataset.input_shape}, the config expects "
            f"{expected}; set input_shape = {list(dataset.input_shape)}"
        ))], source=config.source)
    if output_shape != (dataset.num_classes,):
        raise ConfigError([ConfigIssue(config.nodes[-1].path, (
            f"the network's output is {output_shape}, but {dataset.name} has "
            f"{dataset.num_classes} classes; end the network with a dense layer of "
            f"{dataset.num_classes} units"
        ))], source=config.source)


def default_run_dir(config: NetworkConfig) -> Path:
    stem = Path(config.source).stem or "run"
    base = Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def start_run(
    config_source: str | Path, registry: Registry, *, overrides: dict[str, Any] | None = None,
    optimizer_lr: float | None = None, run_dir: str | Path | None = None,
    data_dir: str | None = None, quiet: bool = False, log: Log = print, download: bool = True,
    note: Log | None = None, comm: Comm | None = None,
) -> Path:
    """Train a new run of ``config_source`` into a new run directory; returns the directory.
    ``download=False`` looks for the dataset on disk only. ``log`` receives the results
    (the run directory, a line per epoch), ``note`` diagnostics (default: stderr).
    ``comm`` trains over MPI (lamina.runtime.distributed): rank 0 checks the config and
    writes the run directory, every rank trains its shards."""
    note = note if note is not None else to_stderr
    checked_plan: list[Plan] = []

    def checked() -> tuple[dict[str, Any], str]:
        plan = make_plan(config_source, registry, training=overrides, lr=optimizer_lr)
        path = Path(run_dir) if run_dir is not None else default_run_dir(plan.config)
        runs.check_new_run_dir(path)
        check_shards(plan.config, comm)
        checked_plan.append(plan)
        return plan.config.to_dict(), str(path)

    config, where = on_root(comm, checked)
    path = Path(where)
    session = _session_on_ranks(comm, checked_plan, config, registry, path)
    data, files = _load_data_on_ranks(session, data_dir, note, download, comm)
    on_every_rank(comm, lambda: _preflight(session, data))
    with ExitStack() as stack:

        def set_up() -> None:
            runs.create_run_dir(path)
            stack.enter_context(RunLock(path))
            runs.write_json(path / runs.CONFIG, session.config.to_dict())
            runs.write_json(path / runs.PROVENANCE, provenance(session, registry, files))

        on_root(comm, set_up)
        log(f"run directory: {shown(path)}")
        _fit(session, data, quiet, log, note)
    return path


def resume_run(
    run_dir: str | Path, registry: Registry, *, epochs: int | None = None,
    data_dir: str | None = None, quiet: bool = False, log: Log = print, download: bool = True,
    note: Log | None = None, comm: Comm | None = None,
) -> Path:
    """Continue a run from its last checkpoint (optionally to a larger number of epochs).

    A run killed before its first checkpoint starts again from its first epoch. Over MPI
    (``comm``) rank 0 reads the run directory and sends the others its config and
    checkpoint; a run resumes on any number of ranks that its shard count allows."""
    note = note if note is not None else to_stderr
    path = Path(run_dir)
    with ExitStack() as stack:

        checked_plan: list[Plan] = []

        def checked() -> tuple[dict[str, Any], Checkpoint | None]:
            _require_run_dir(path)
            stack.enter_context(RunLock(path))
            runs.check_run_files(path)
            plan, ckpt = _checked_run(path, registry, epochs=epochs)
            check_shards(plan.config, comm, resuming=True)
            if ckpt is not None and plan.config.training.restore_best:
                ckpt = _with_best(path, ckpt, note)
            checked_plan.append(plan)
            return plan.config.to_dict(), ckpt

        config, ckpt = on_root(comm, checked)
        session = _session_on_ranks(comm, checked_plan, config, registry, path)
        if ckpt is not None:
            on_every_rank(comm, lambda: _check_fits(session, ckpt, path))
        # Draws the split as the original run did.
        data, _ = _load_data_on_ranks(session, data_dir, note, download, comm)
        on_every_rank(comm, lambda: _preflight(session, data))
        if ckpt is not None:
            restore(session, ckpt)
        done = session.epoch >= session.config.training.epochs

        def clean_up() -> None:
            # Everything is checked: from here on the run directory may change.
            removed = runs.remove_leftovers(path)
            if removed:
                note(f"removed what an interrupted process left in {shown(path)}: "
                     f"{', '.join(removed)}")
            if epochs is not None and not done:
                runs.write_json(path / runs.CONFIG, session.config.to_dict())

        on_root(comm, clean_up)
        if done:
            log(f"{shown(path)} already completed {session.epoch} of "
                f"{session.config.training.epochs} epochs; nothing to do (pass --epochs N to "
                "train further)")
            return path
        log(f"resuming {shown(path)} after epoch {session.epoch}" if ckpt is not None else
            f"{shown(path)} has no checkpoint yet (it stopped in its first epoch): starting "
            "it again from its first epoch")
        _fit(session, data, quiet, log, note)
    return path


def _session_on_ranks(comm: Comm | None, checked_plan: list[Plan], config: dict[str, Any],
                      registry: Registry, path: Path) -> Session:
    """The run's session on every rank: rank 0 keeps the plan it checked (messages name
    its file), the others rebuild the checked ``config`` it sent; only rank 0 writes."""
    root = comm is None or comm.rank == 0
    session = on_every_rank(comm, lambda: make_session(
        checked_plan[0] if root else make_plan(config, registry), registry,
        path if root else None, comm=comm))
    check_same_plugins(session.config, registry, comm)
    return session


def _load_data_on_ranks(session: Session, data_dir: str | None, note: Log, download: bool,
                        comm: Comm | None) -> tuple[Data, dict]:
    """Every rank's copy of the training data (rank 0 first: it may download the files)."""
    return root_first(comm, lambda: _load_data(session, data_dir, note, download))


def _with_best(path: Path, ckpt: Checkpoint, note: Log) -> Checkpoint:
    """``ckpt`` with its best epoch's params, which restore_best will need at the end; a
    damaged best file is reported and left out (training goes on; a better epoch writes
    a new one)."""
    try:
        best = runs.load_checkpoint(path, best=True).best_params
    except CheckpointError as exc:
        note(f"warning: {exc}; the run goes on without it, and restore_best restores only a "
             "best epoch reached from here on")
        return ckpt
    return replace(ckpt, best_params=best)


def _require_run_dir(path: Path) -> None:
    try:
        ok = path.is_dir() and (path / runs.CONFIG).is_file()
    except (OSError, ValueError):
        ok = False
    if not ok:
        what = (f"run directory {shown(path)} does not exist" if not os.path.lexists(path)
                else f"{shown(path)} is not a lamina run directory (no {runs.CONFIG})")
        raise CheckpointError(f"{what}; give the folder a previous `lamina train` (or "
                              "Model.save) wrote")


def _fit(session: Session, data: Data, quiet: bool, log: Log, note: Log) -> None:
    comm = session.step.comm
    if comm is None:
        _fit_here(session, data, quiet, log, note)
        return
    # Which process is which rank: a rank that is killed cannot say so itself, and
    # the launcher's message names its process id.
    import socket

    ranks = comm.gather_all((os.getpid(), socket.gethostname()))
    note(f"training on {comm.size} MPI ranks: " + ", ".join(
        f"rank {rank} pid {pid} on {host}" for rank, (pid, host) in enumerate(ranks)))
    with ending_every_rank_on_failure(comm):
        if comm.rank == 0:
            _fit_here(session, data, quiet, log, note)
            return
        # The other ranks train in step with rank 0, silently; early stopping decides
        # the same on every rank (its count is the same everywhere).
        try:
            fit(session, data, callbacks=[EarlyStopping()], quiet=True, log=silent,
                note=silent)
        finally:
            session.step.close()


def _fit_here(session: Session, data: Data, quiet: bool, log: Log, note: Log) -> None:
    try:
        fit(session, data, quiet=quiet, log=log, note=note)
    except KeyboardInterrupt:
        note(f"interrupted; {_kept(session)}; continue with `lamina train --resume "
            f"{shown(session.run_dir)}`")
        raise
    finally:
        session.step.close()


def _kept(session: Session) -> str:
    if session.saved:
        return f"the last checkpoint (epoch {session.saved}) is in {shown(session.run_dir)}"
    return (f"no checkpoint had been written, so {shown(session.run_dir)} holds none yet (a "
            "resume starts from the first epoch)")


def _checked_run(path: Path, registry: Registry, *, epochs: int | None = None
                 ) -> tuple[Plan, Checkpoint | None]:
    """The run directory checked as a whole: its config (by the same rules as a config
    file, with ``epochs`` applied) and its checkpoint (schema, hash, arrays). A plugin the
    run was trained with and the registry lacks is named with where it came from."""
    raw = runs.read_json(path / runs.CONFIG, "run's config")
    check_plugins_loaded(path, registry, types_named(raw))
    training = raw.get("training") if isinstance(raw, dict) else None
    if isinstance(training, dict) and "shards" not in training:
        # Written before lamina split batches into shards: those runs ran whole.
        raw = {**raw, "training": {**training, "shards": 1}}
    try:
        plan = make_plan(raw, registry)  # the file as it is: an override hides no damage
        if epochs:
            plan = make_plan(plan.config, registry, training={"epochs": epochs})
    except ConfigError as exc:
        raise ConfigError(exc.issues, source=str(path / runs.CONFIG)) from None
    return plan, runs.load_checkpoint(path)


def _check_fits(session: Session, ckpt: Checkpoint, path: Path) -> None:
    try:
        check_fits(session, ckpt)
    except StateError as exc:
        raise CheckpointError(f"the checkpoint in {shown(path)} does not fit its "
                              f"{runs.CONFIG}: {exc}") from exc


WEIGHTS = ("last", "best")


def load_trained(run_dir: str | Path, registry: Registry, *, weights: str | None = None
                 ) -> Session:
    """The session of a run with trained weights loaded: ``weights="last"`` (the last
    checkpoint's), ``"best"`` (the epoch with the best validation loss), or None for the
    run's own choice: best when its config sets ``training.restore_best`` and it has a
    best epoch, else last. ``session.weights`` says which were loaded."""
    if weights is not None and weights not in WEIGHTS:
        raise ConfigError([ConfigIssue("weights", f"expected one of {', '.join(WEIGHTS)}, "
                                                  f"received {weights!r}")])
    path = Path(run_dir)
    _require_run_dir(path)
    plan, ckpt = _checked_run(path, registry)
    if ckpt is None:
        raise CheckpointError(f"{shown(path)} has no checkpoint yet: no epoch of it finished; "
                              f"train it with `lamina train --resume {shown(path)}`")
    session = make_session(plan, registry, path)
    _check_fits(session, ckpt, path)
    restore(session, ckpt)
    if weights is None:
        has_best = runs.load_index(path).best is not None
        weights = "best" if plan.config.training.restore_best and has_best else "last"
    if weights == "best":
        best = runs.load_checkpoint(path, best=True).best_params
        if best is None:
            raise CheckpointError(f"{shown(path)} has no best-epoch weights: they are kept "
                                  "only for runs with a validation split (validation_split > "
                                  "0); use the last epoch's weights (--weights last)")
        _check_fits(session, replace(ckpt, params=best), path)
        session.network.load_state_dict(best)
        session.best_state = best
        session.weights = (f"epoch {session.extra['best_epoch']} of {ckpt.epoch} (best "
                           f"validation loss {session.extra['best_val_loss']:.4f})")
    else:
        session.weights = f"epoch {ckpt.epoch} (last)" if ckpt.epoch else "initial"
    return session


def evaluate_run(run_dir: str | Path, registry: Registry, *, data_dir: str | None = None,
                 note: Log | None = None, weights: str | None = None,
                 comm: Comm | None = None) -> dict[str, Any]:
    """Test-set loss, accuracy, per-class accuracy and confusion matrix of a run, with the
    weights :func:`load_trained` picks; for a value loss, trained on one-hot rows, loss,
    MSE and MAE against the test set's one-hot rows (``targets: "one-hot"``). Over MPI
    (``comm``) rank 0 reads the run and sends the others its weights; each rank predicts
    its shards of every batch."""
    from ..data import load_dataset
    from .trainer import evaluate_arrays

    if comm is None:
        session = load_trained(run_dir, registry, weights=weights)
    else:
        def loaded() -> tuple[dict[str, Any], dict[str, np.ndarray], str, int]:
            trained = load_trained(run_dir, registry, weights=weights)
            return (trained.config.to_dict(), trained.network.state_dict(), trained.weights,
                    trained.epoch)

        config, state, label, epoch = on_root(comm, loaded)

        def built() -> Session:
            # predictions do not depend on the shard count: give every rank one at least
            shards = max(config["training"]["shards"], comm.size)
            plan = make_plan(config, registry, training={"shards": shards})
            trained = make_session(plan, registry, None, comm=comm)
            trained.network.load_state_dict(state)
            trained.weights, trained.epoch = label, epoch
            return trained

        session = on_every_rank(comm, built)

    dataset = root_first(comm, lambda: load_dataset(
        session.config.training.dataset, data_dir=data_dir,
        report=note if note is not None else to_stderr, parts=("test",)))
    _check_fits_dataset(session.config, session.network.output_shape, dataset)
    if not len(dataset.test_y):
        raise DataError(f"the {dataset.name} test set in {dataset.files['test_labels']} holds "
                        "no samples; there is nothing to evaluate on: restore the canonical "
                        "test files")
    targets = dataset_targets(session, dataset.test_y, dataset.num_classes)
    with session.step, ending_every_rank_on_failure(comm):
        loss, predicted = evaluate_arrays(session, dataset.test_x, targets)
    if session.loss.traits.classifies:
        report = classification_report(loss, predicted, targets, dataset.class_names)
    else:
        # one-hot rows of class labels: the largest output still names a class
        report = {**regression_report(loss, predicted, targets), "targets": "one-hot",
                  "accuracy": float(np.mean(np.argmax(predicted, axis=1)
                                            == np.argmax(targets, axis=1)))
                  if len(targets) else float("nan")}
    return {"run_dir": str(run_dir), "dataset": dataset.name, "epoch": session.epoch,
            "weights": session.weights, **report}


def classification_report(loss: float, predicted: np.ndarray, labels: np.ndarray,
                          class_names: list[str]) -> dict[str, Any]:
    """Loss, accuracy, per-class accuracy and confusion matrix (rows: true class)."""
    k = len(class_names)
    confusion = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {
        "samples": int(len(labels)),
        "loss": float(loss),
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else float("nan"),
        "per_class_accuracy": {name: float(a) for name, a in
                               zip(class_names, per_class, strict=True)},
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
    }


def regression_report(loss: float, predictions: np.ndarray, targets: np.ndarray
                      ) -> dict[str, Any]:
    """Loss, and the mean squared and mean absolute errors of ``predictions`` (N, C)
    against ``targets`` (N, C) over every entry, as the ``mse`` loss averages."""
    error = np.asarray(predictions, dtype=np.float64) - np.asarray(targets, dtype=np.float64)
    empty = not error.size
    return {
        "samples": int(len(targets)),
        "loss": float(loss),
        "mse": float("nan") if empty else float(np.mean(error * error)),
        "mae": float("nan") if empty else float(np.mean(np.abs(error))),
    }


def format_evaluation(result: dict[str, Any]) -> str:
    if "mse" in result:
        return _format_regression(result)
    names = result["class_names"]
    lines = [
        f"{result['run_dir']} ({result['weights']}) on the {result['dataset']} test set, "
        f"{result['samples']:,} samples",
        f"loss      {result['loss']:.4f}",
        f"accuracy  {result['accuracy']:.4%}",
        "",
        "per-class accuracy:",
    ]
    width = max(len(n) for n in names)
    lines += [f"  {n.ljust(width)}  {result['per_class_accuracy'][n]:.4%}" for n in names]
    lines += ["", "confusion matrix (rows: true class, columns: predicted):"]
    matrix = result["confusion_matrix"]
    cell = max(len(str(v)) for row in matrix for v in row)
    cell = max(cell, max(len(str(i)) for i in range(len(names))))
    lines.append(" " * (width + 2) + " ".join(str(i).rjust(cell) for i in range(len(names))))
    for name, row in zip(names, matrix, strict=True):
        lines.append(f"  {name.ljust(width)}" + " ".join(str(v).rjust(cell) for v in row))
    return "\n".join(lines)


def _format_regression(result: dict[str, Any]) -> str:
    """The text form of a value loss's evaluation."""
    targets = (" (targets: each label's one-hot row, as trained)"
               if result.get("targets") == "one-hot" else "")
    return "\n".join([
        f"{result['run_dir']} ({result['weights']}) on the {result['dataset']} test set, "
        f"{result['samples']:,} samples{targets}",
        f"loss  {result['loss']:.6f}",
        f"mse   {result['mse']:.6f}  (mean squared error of the predictions, over every "
        "output)",
        f"mae   {result['mae']:.6f}  (mean absolute error)",
        *([f"accuracy  {result['accuracy']:.4%}  (the largest output's class)"]
          if "accuracy" in result else []),
    ])
