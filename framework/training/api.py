"""Start, resume and evaluate runs: what ``lamina train`` and ``lamina evaluate`` call."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import NetworkConfig, load_config, validate_config
from ..errors import CheckpointError, ConfigError, ConfigIssue
from ..registry import Registry
from . import runs
from .trainer import Data, Session, fit, make_session, provenance, restore, split_validation

Log = Callable[[str], None]


def _load_data(session: Session, data_dir: str | None, log: Log) -> tuple[Data, dict]:
    """The split training data and the files it came from. The loaded dataset itself
    (its unsplit training and its test arrays) is let go: training never reads them."""
    from ..data import load_dataset

    training = session.config.training
    dataset = load_dataset(training.dataset, data_dir=data_dir, limit=training.limit, report=log)
    expected = tuple(session.config.input_shape)
    if dataset.input_shape != expected:
        raise ConfigError([ConfigIssue("model.input_shape", (
            f"{dataset.name} samples are shaped {dataset.input_shape}, the config expects "
            f"{expected}; set input_shape = {list(dataset.input_shape)}"
        ))], source=session.config.source)
    if session.network.output_shape != (dataset.num_classes,):
        raise ConfigError([ConfigIssue(session.config.nodes[-1].path, (
            f"the network's output is {session.network.output_shape}, but {dataset.name} has "
            f"{dataset.num_classes} classes; end the network with a dense layer of "
            f"{dataset.num_classes} units"
        ))], source=session.config.source)
    return split_validation(session, dataset.train_x, dataset.train_y), dataset.files


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
    data_dir: str | None = None, quiet: bool = False, log: Log = print,
) -> Path:
    """Train a new run of ``config_source`` into a new run directory; returns the directory."""
    config = load_config(config_source, registry)
    if overrides:
        config = config.with_training(**overrides)
    if optimizer_lr is not None:
        raw = config.to_dict()
        raw["optimizer"]["lr"] = optimizer_lr
        config = validate_config(raw, registry, source=config.source)
    path = Path(run_dir) if run_dir is not None else default_run_dir(config)
    session = make_session(config, registry, path)
    runs.check_new_run_dir(path)
    data, files = _load_data(session, data_dir, log)
    runs.create_run_dir(path)
    runs.write_json(path / runs.CONFIG, session.config.to_dict())
    runs.write_json(path / runs.PROVENANCE, provenance(session, registry, files))
    log(f"run directory: {path}")
    _fit(session, data, quiet, log)
    return path


def resume_run(
    run_dir: str | Path, registry: Registry, *, epochs: int | None = None,
    data_dir: str | None = None, quiet: bool = False, log: Log = print,
) -> Path:
    """Continue a run from its last checkpoint (optionally to a larger number of epochs)."""
    path = Path(run_dir)
    ckpt = runs.load_checkpoint(path)
    config = _run_config(path, registry)
    if epochs is not None:
        config = config.with_training(epochs=epochs)
        runs.write_json(path / runs.CONFIG, config.to_dict())
    session = make_session(config, registry, path)
    data, _ = _load_data(session, data_dir, log)  # draws the split as the original run did
    try:
        restore(session, ckpt)
    except Exception as exc:
        raise CheckpointError(f"the checkpoint in {path} does not fit its config.json: {exc}") \
            from exc
    if session.epoch >= config.training.epochs:
        log(f"{path} already completed {session.epoch} of {config.training.epochs} epochs; "
            "nothing to do (pass --epochs N to train further)")
        return path
    log(f"resuming {path} after epoch {session.epoch}")
    _fit(session, data, quiet, log)
    return path


def _fit(session: Session, data: Data, quiet: bool, log: Log) -> None:
    try:
        fit(session, data, quiet=quiet, log=log)
    except KeyboardInterrupt:
        log(f"interrupted; the last checkpoint (epoch {session.epoch}) is in {session.run_dir}; "
            f"continue with `lamina train --resume {session.run_dir}`")
        raise
    finally:
        session.step.close()


def _run_config(run_dir: Path, registry: Registry) -> NetworkConfig:
    raw = runs.read_json(run_dir / runs.CONFIG, "run's config")
    training = raw.get("training") if isinstance(raw, dict) else None
    if isinstance(training, dict) and "shards" not in training:
        # Written before lamina split batches into shards: those runs ran whole.
        raw = {**raw, "training": {**training, "shards": 1}}
    return validate_config(raw, registry, source=str(run_dir / runs.CONFIG))


def load_trained(run_dir: str | Path, registry: Registry) -> Session:
    """The session of a run with its last checkpoint's weights loaded."""
    path = Path(run_dir)
    ckpt = runs.load_checkpoint(path)
    session = make_session(_run_config(path, registry), registry, path)
    try:
        restore(session, ckpt)
    except Exception as exc:
        raise CheckpointError(f"the checkpoint in {path} does not fit its config.json: {exc}") \
            from exc
    return session


def evaluate_run(run_dir: str | Path, registry: Registry, *, data_dir: str | None = None,
                 log: Log = print) -> dict[str, Any]:
    """Test-set loss, accuracy, per-class accuracy and confusion matrix of a run."""
    from ..data import load_dataset
    from .trainer import evaluate_arrays

    session = load_trained(run_dir, registry)
    dataset = load_dataset(session.config.training.dataset, data_dir=data_dir, report=log)
    with session.step:
        loss, predicted = evaluate_arrays(session, dataset.test_x, dataset.test_y)
    k = dataset.num_classes
    confusion = np.bincount(dataset.test_y * k + predicted, minlength=k * k).reshape(k, k)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {
        "run_dir": str(run_dir),
        "dataset": dataset.name,
        "epoch": session.epoch,
        "samples": int(len(dataset.test_y)),
        "loss": float(loss),
        "accuracy": float(np.mean(predicted == dataset.test_y)),
        "per_class_accuracy": {name: float(a) for name, a in
                               zip(dataset.class_names, per_class, strict=True)},
        "confusion_matrix": confusion.tolist(),
        "class_names": list(dataset.class_names),
    }


def format_evaluation(result: dict[str, Any]) -> str:
    names = result["class_names"]
    lines = [
        f"{result['run_dir']} (epoch {result['epoch']}) on the {result['dataset']} test set, "
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
