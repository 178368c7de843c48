"""Run directories and checkpoints.

A run directory holds everything needed to understand, evaluate and resume a
training run::

    config.json        the resolved config (every default filled in)
    provenance.json    lamina, Python, NumPy and plugin versions, the command, the data files
    metrics.json       per-epoch history (also metrics.csv)
    checkpoint.json    the latest checkpoint: epoch, RNG state, history, the .npz's name
                       and SHA-256
    checkpoint-eNNNN.npz   params, non-trainable state and optimizer state

Checkpoints hold only arrays (``.npz``, read with ``allow_pickle=False``) and
JSON. Every file is written atomically: to a temporary file in the same folder,
flushed to disk, then renamed over the old one. The ``.npz`` of a new checkpoint
is written first and ``checkpoint.json`` (which names it and carries its hash)
last, so a run killed at any moment leaves the previous checkpoint intact, and
a damaged ``.npz`` is recognised by its hash rather than loaded.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError

CHECKPOINT = "checkpoint.json"
CONFIG = "config.json"
METRICS = "metrics.json"
METRICS_CSV = "metrics.csv"
PROVENANCE = "provenance.json"
FORMAT_VERSION = 1


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half."""
    path = Path(path)
    # A unique name opened exclusively (rather than mkstemp) so the file gets the
    # user's umask permissions, like any other file the run writes.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path} is missing: this is not a complete lamina run "
                              f"directory ({what} not found)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is unreadable or corrupt ({exc}); the {what} cannot be "
                              "read: restore it from a backup or start a new run") from exc


# -- run directories ------------------------------------------------------------------
def check_new_run_dir(path: Path) -> None:
    """Refuse a run directory that is a file or already holds anything."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"--run-dir {path} is a file, not a directory; choose another path")
    if path.is_dir() and any(path.iterdir()):
        hint = (f"continue it with `lamina train --resume {path}`"
                if (path / CHECKPOINT).exists() else "empty it yourself")
        raise CheckpointError(
            f"run directory {path} already exists and is not empty; lamina never overwrites a "
            f"run: choose another --run-dir, or {hint}"
        )


def create_run_dir(path: Path) -> Path:
    """Create a new, empty run directory and make sure it is writable."""
    path = Path(path)
    check_new_run_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CheckpointError(f"cannot write to run directory {path}: {exc.strerror or exc}; "
                              "choose a --run-dir you can write to") from exc
    return path


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    write_json(run_dir / METRICS, history)
    if not history:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write(run_dir / METRICS_CSV, buffer.getvalue().encode())


# -- checkpoints ----------------------------------------------------------------------
@dataclass
class Checkpoint:
    """What a run needs to continue exactly where it stopped."""

    epoch: int  # epochs completed
    params: dict[str, np.ndarray]  # params and non-trainable state, by dotted name
    optimizer: dict[str, np.ndarray]
    rng_state: dict[str, Any]
    history: list[dict[str, Any]]
    extra: dict[str, Any]  # early-stopping bookkeeping and the like


def save_checkpoint(run_dir: Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically, then drop the checkpoint it replaces."""
    run_dir = Path(run_dir)
    arrays = {f"param/{k}": v for k, v in ckpt.params.items()}
    arrays.update({f"optim/{k}": np.asarray(v) for k, v in ckpt.optimizer.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    name = f"checkpoint-e{ckpt.epoch:04d}.npz"
    previous = _current_npz(run_dir)
    atomic_write(run_dir / name, data)
    write_json(run_dir / CHECKPOINT, {
        "format": FORMAT_VERSION,
        "epoch": ckpt.epoch,
        "arrays": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "rng_state": ckpt.rng_state,
        "history": ckpt.history,
        "extra": ckpt.extra,
    })
    if previous and previous != name:
        (run_dir / previous).unlink(missing_ok=True)
    return run_dir / name


def _current_npz(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / CHECKPOINT).read_text())["arrays"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_checkpoint(run_dir: Path) -> Checkpoint:
    """Read and verify the latest checkpoint of ``run_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; give the folder a "
                              "previous `lamina train` wrote (its --run-dir)")
    meta = read_json(run_dir / CHECKPOINT, "checkpoint index")
    required = ("format", "epoch", "arrays", "sha256", "rng_state", "history", "extra")
    if not isinstance(meta, dict) or any(k not in meta for k in required):
        raise CheckpointError(f"{run_dir / CHECKPOINT} lacks some of {', '.join(required)}: "
                              "it was not written by this version of lamina, or was edited")
    if meta["format"] != FORMAT_VERSION:
        raise CheckpointError(f"{run_dir / CHECKPOINT} has format {meta['format']}, this lamina "
                              f"reads format {FORMAT_VERSION}")
    npz = run_dir / Path(str(meta["arrays"])).name
    try:
        data = npz.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint arrays {npz} cannot be read ({exc.strerror or exc}); "
                              "the run cannot be resumed from it") from exc
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"checkpoint arrays {npz} are corrupt: their SHA-256 does not match "
                              f"the one recorded in {CHECKPOINT}; restore the file or start a "
                              "new run")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"checkpoint arrays {npz} cannot be decoded: {exc}") from exc
    params = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("param/")}
    optim = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("optim/")}
    return Checkpoint(int(meta["epoch"]), params, optim, meta["rng_state"], meta["history"],
                      meta["extra"])
