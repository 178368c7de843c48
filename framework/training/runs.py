"""Run directories and checkpoints.

A run directory holds everything needed to understand, evaluate and resume a
training run::

    config.json        the resolved config (every default filled in)
    provenance.json    lamina, Python, NumPy and plugin versions, the command, the data files
    metrics.json       per-epoch history (also metrics.csv)
    checkpoint.json    the latest checkpoint: epoch, RNG state, history, the .npz's name
                       and SHA-256, and which epoch had the best validation loss
    checkpoint-eNNNN.npz   params, non-trainable state and optimizer state
    best-eNNNN.npz     params and non-trainable state of the best epoch so far (by
                       validation loss; runs without a validation split have none)

Checkpoints hold only arrays (``.npz``, read with ``allow_pickle=False``) and
JSON. Every file is written atomically: to a temporary file in the same folder,
flushed to disk, then renamed over the old one. The ``.npz`` of a new checkpoint
is written first and ``checkpoint.json`` (which names it and carries its hash)
last, so a run killed at any moment leaves the previous checkpoint intact, and
a damaged ``.npz`` is recognised by its hash rather than loaded.

A run directory is untrusted input when it is read back: ``checkpoint.json`` is
validated against a schema (:class:`CheckpointIndex`), files are read only up to
a bound, and every ``.npz`` member's header is checked against its stored size
before its array is allocated. What a killed process leaves behind (a temporary
file, the ``.npz`` of a checkpoint whose index was never written) is removed by
the next process that takes the directory's lock (an advisory ``flock`` on the
directory while a process trains in it).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..arrayfiles import BadArrayFile, read_npz
from ..config.files import read_regular_file, shown
from ..config.run import MAX_EPOCHS
from ..config.strict import validate_settings
from ..errors import CheckpointError

CHECKPOINT = "checkpoint.json"
CONFIG = "config.json"
METRICS = "metrics.json"
METRICS_CSV = "metrics.csv"
PROVENANCE = "provenance.json"
FORMAT_VERSION = 1
#: the largest JSON file of a run directory read (a history of 100,000 epochs fits)
MAX_JSON_BYTES = 64 << 20
#: the largest checkpoint archive read (a network at lamina's parameter limit, with an
#: optimizer keeping two slots per parameter, in float64)
MAX_NPZ_BYTES = 8 << 30
_TEMPORARY = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")
_NPZ_NAME = r"^checkpoint-e\d{4,}\.npz$"
_BEST_NAME = r"^best-e\d{4,}\.npz$"


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
    """A JSON file of a run directory, read only if it is a regular file within bounds."""
    path = Path(path)
    try:
        data = read_regular_file(path, MAX_JSON_BYTES)
        return json.loads(data.decode("utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path} is missing: this is not a complete lamina run "
                              f"directory ({what} not found)") from exc
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
            str(exc)[:200] or type(exc).__name__
        raise CheckpointError(f"{path} is unreadable or corrupt ({reason}); the {what} cannot "
                              "be read: restore it from a backup or start a new run") from exc


# -- run directories ------------------------------------------------------------------
def check_new_run_dir(path: Path) -> None:
    """Refuse a run directory that is a file or already holds anything."""
    path = Path(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
        busy = is_dir and any(path.iterdir())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"--run-dir {shown(path)} cannot be used: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
    if exists and not is_dir:
        raise CheckpointError(f"--run-dir {shown(path)} is a file, not a directory; choose "
                              "another path")
    if busy:
        hint = (f"continue it with `lamina train --resume {shown(path)}`"
                if (path / CONFIG).exists() else "empty it yourself")
        raise CheckpointError(
            f"run directory {shown(path)} already exists and is not empty; lamina never "
            f"overwrites a run: choose another --run-dir, or {hint}"
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
        raise CheckpointError(f"cannot write to run directory {shown(path)}: "
                              f"{exc.strerror or exc}; choose a --run-dir you can write "
                              "to") from exc
    return path


class RunLock:
    """Exclusive use of a run directory by one process, released when the process ends
    however it ends: an advisory ``flock`` on the directory itself, which the kernel
    drops with the process, and which creates no file. Where ``flock`` does not exist,
    nothing is locked."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # not a POSIX system
            return self
        try:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.__exit__()
            raise CheckpointError(
                f"run directory {shown(self.path)} is in use by another lamina process; wait "
                "for it to finish (or stop it), then try again"
            ) from None
        except OSError as exc:
            self.__exit__()
            raise CheckpointError(f"cannot lock run directory {shown(self.path)}: "
                                  f"{exc.strerror or exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


def check_run_files(run_dir: Path) -> None:
    """Refuse a run directory where something lamina writes or replaces is not a regular
    file (a folder called ``best-e0001.npz``, a device): training would stop at its first
    write there with the run already changed. Called before any write."""
    run_dir = Path(run_dir)
    ours = {CHECKPOINT, CONFIG, METRICS, METRICS_CSV, PROVENANCE}
    for path in run_dir.iterdir():
        if not (path.name in ours or re.match(_NPZ_NAME, path.name)
                or re.match(_BEST_NAME, path.name)):
            continue
        if not path.is_file():
            what = "a folder" if path.is_dir() else "not a regular file"
            raise CheckpointError(
                f"{shown(path)} is {what}, where lamina keeps a file of the run; move it out "
                "of the run directory (lamina removes only what it wrote), then try again")


def remove_leftovers(run_dir: Path) -> list[str]:
    """Delete what a killed process left (temporary files, an ``.npz`` that no
    ``checkpoint.json`` names); call it holding the directory's :class:`RunLock`."""
    run_dir = Path(run_dir)
    current = {_current_npz(run_dir), _current_npz(run_dir, "best")}
    removed = []
    for path in run_dir.iterdir():
        archive = re.match(_NPZ_NAME, path.name) or re.match(_BEST_NAME, path.name)
        stray = _TEMPORARY.match(path.name) or (archive and path.name not in current)
        if stray and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    write_json(run_dir / METRICS, history)
    if not history:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write(run_dir / METRICS_CSV, buffer.getvalue().encode())


# -- checkpoints ---------------------------------------------------------------------
# One rule for every number read back from a run directory: it lies within what lamina
# could have written. Counts of epochs are whole numbers (never floats, strings or
# bools) from 0 to the config's own limit, MAX_EPOCHS; measurements are finite floats
# (a non-finite loss is never saved). A number outside that was edited or damaged, and
# is refused with the file's name before anything uses it (an epoch of 10**30 once
# reached range() and ended in an OverflowError).
Finite = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True, ge=0, le=MAX_EPOCHS)]
EpochNumber = Annotated[int, Field(strict=True, ge=1, le=MAX_EPOCHS)]


class EpochRecord(BaseModel):
    """One epoch of a run's history (``metrics.json`` and ``checkpoint.json``). The
    accuracies are None for a value loss (mse, binary_cross_entropy), which has no
    classes to count; ``val_loss`` and ``val_accuracy`` are None for an epoch that was
    not validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    epoch: EpochNumber
    lr: Finite
    train_loss: Finite
    train_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] | None
    val_loss: Finite | None
    val_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] | None
    seconds: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]

    @model_validator(mode="after")
    def _accuracy_of_a_classification_loss(self) -> EpochRecord:
        if self.val_accuracy is not None and (self.train_accuracy is None
                                              or self.val_loss is None):
            raise ValueError("val_accuracy is recorded only with train_accuracy (a "
                             "classification loss) and val_loss (a validated epoch)")
        return self


class RunExtra(BaseModel):
    """The trainer's bookkeeping between epochs (best epoch, early stopping)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    best_val_loss: Finite | None = None
    best_epoch: EpochNumber | None = None
    stale_epochs: Count = 0

    @model_validator(mode="after")
    def _best_epoch_with_its_loss(self) -> RunExtra:
        if (self.best_epoch is None) != (self.best_val_loss is None):
            raise ValueError(f"best_epoch and best_val_loss are kept together (both set, or "
                             f"neither), received best_epoch={self.best_epoch} and "
                             f"best_val_loss={self.best_val_loss}")
        return self


class BestWeights(BaseModel):
    """Where ``checkpoint.json`` keeps the weights of the best epoch so far."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    epoch: EpochNumber
    arrays: Annotated[str, Field(pattern=_BEST_NAME)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class PCG64State(BaseModel):
    """The generator state a checkpoint carries (``Generator.bit_generator.state``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    class Words(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        state: Annotated[int, Field(strict=True, ge=0, lt=2**128)]
        inc: Annotated[int, Field(strict=True, ge=0, lt=2**128)]

    bit_generator: Literal["PCG64"]
    state: Words
    has_uint32: Annotated[int, Field(strict=True, ge=0, le=1)]
    uinteger: Annotated[int, Field(strict=True, ge=0, lt=2**32)]


class CheckpointIndex(BaseModel):
    """``checkpoint.json``: what the latest checkpoint is, checked before it is used."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # an int, not Literal[1], which would take true and 1.0 even when strict
    format: Annotated[int, Field(strict=True, ge=FORMAT_VERSION, le=FORMAT_VERSION)]
    epoch: Count
    arrays: Annotated[str, Field(pattern=_NPZ_NAME)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    rng_state: PCG64State
    history: list[EpochRecord]
    extra: RunExtra
    best: BestWeights | None = None


@dataclass
class Checkpoint:
    """What a run needs to continue exactly where it stopped."""

    epoch: int  # epochs completed
    params: dict[str, np.ndarray]  # params and non-trainable state, by dotted name
    optimizer: dict[str, np.ndarray]
    rng_state: dict[str, Any]
    history: list[dict[str, Any]]
    extra: dict[str, Any]  # best epoch and early-stopping bookkeeping
    #: the params of epoch ``extra["best_epoch"]``. Saving writes them (beside the
    #: checkpoint) when given, and otherwise keeps the best file the run has; loading
    #: returns them when asked for (``load_checkpoint(best=True)``).
    best_params: dict[str, np.ndarray] | None = None


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def save_checkpoint(run_dir: Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically (and the best epoch's weights, if they changed), then drop
    the files it replaces. A failure to write (a full disk) leaves the previous checkpoint
    as it was and raises CheckpointError."""
    run_dir = Path(run_dir)
    arrays = {f"param/{k}": v for k, v in ckpt.params.items()}
    arrays.update({f"optim/{k}": np.asarray(v) for k, v in ckpt.optimizer.items()})
    data = _npz_bytes(arrays)
    name = f"checkpoint-e{ckpt.epoch:04d}.npz"
    previous, previous_best = _current_npz(run_dir), _current_npz(run_dir, "best")
    best = _current_best(run_dir)
    written = [name]
    try:
        if ckpt.best_params is not None:
            best_epoch = ckpt.extra["best_epoch"]
            best_data = _npz_bytes({f"param/{k}": v for k, v in ckpt.best_params.items()})
            best = {"epoch": best_epoch, "arrays": f"best-e{best_epoch:04d}.npz",
                    "sha256": hashlib.sha256(best_data).hexdigest()}
            written.append(best["arrays"])
            atomic_write(run_dir / best["arrays"], best_data)
        atomic_write(run_dir / name, data)
        write_json(run_dir / CHECKPOINT, {
            "format": FORMAT_VERSION,
            "epoch": ckpt.epoch,
            "arrays": name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "rng_state": ckpt.rng_state,
            "history": ckpt.history,
            "extra": ckpt.extra,
            "best": best,
        })
    except OSError as exc:
        in_use = {_current_npz(run_dir), _current_npz(run_dir, "best")}
        for file in written:
            if file not in in_use:
                (run_dir / file).unlink(missing_ok=True)
        kept = (f"the checkpoint of epoch {ckpt.epoch - 1} is intact; free space and continue "
                f"with `lamina train --resume {shown(run_dir)}`" if previous else
                "no earlier checkpoint exists")
        raise CheckpointError(f"cannot write the checkpoint of epoch {ckpt.epoch} to "
                              f"{shown(run_dir)}: {exc.strerror or exc}; {kept}") from exc
    # The new checkpoint is complete now that checkpoint.json names it: a replaced file
    # that cannot be removed is a leftover for the next process, not a failure.
    for old in (previous, previous_best):
        if old and old not in (name, best and best["arrays"]):
            with contextlib.suppress(OSError):
                (run_dir / old).unlink(missing_ok=True)
    return run_dir / name


def _current_best(run_dir: Path) -> dict | None:
    """The ``best`` entry of the current ``checkpoint.json`` (read leniently: it is
    carried over into the next one, and validated whenever it is loaded)."""
    try:
        best = json.loads(read_regular_file(run_dir / CHECKPOINT, MAX_JSON_BYTES)).get("best")
    except (OSError, ValueError, AttributeError, TypeError, RecursionError):
        return None
    return best if isinstance(best, dict) else None


def _current_npz(run_dir: Path, which: str = "last") -> str | None:
    """The archive the current ``checkpoint.json`` names: its last checkpoint's, or with
    ``which="best"`` its best epoch's."""
    try:
        index = json.loads(read_regular_file(run_dir / CHECKPOINT, MAX_JSON_BYTES))
        name = index["arrays"] if which == "last" else index["best"]["arrays"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    pattern = _NPZ_NAME if which == "last" else _BEST_NAME
    return name if isinstance(name, str) and re.match(pattern, name) else None


def load_index(run_dir: Path) -> CheckpointIndex | None:
    """The validated ``checkpoint.json`` of ``run_dir``; ``None`` when the run never
    finished an epoch (no index and no checkpoint archive)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {shown(run_dir)} does not exist; give the "
                              "folder a previous `lamina train` wrote (its --run-dir)")
    if not (run_dir / CHECKPOINT).exists():
        archives = [p.name for p in run_dir.iterdir()
                    if re.match(_NPZ_NAME, p.name) or re.match(_BEST_NAME, p.name)]
        # No index: the run never finished an epoch, or a process was killed while it
        # wrote its first checkpoint (the first epoch's archives, not yet indexed, are
        # leftovers). Archives of a later epoch mean the index was lost: refused below.
        if all(name.endswith("-e0001.npz") for name in archives):
            return None
    raw = read_json(run_dir / CHECKPOINT, "checkpoint index")
    # strictly, as lamina wrote it: "0.001" is not a learning rate, nor true a format
    index, issues = validate_settings(CheckpointIndex, raw, "") if isinstance(raw, dict) \
        else (None, ["the file holds no JSON object"])
    if index is None:
        problems = "; ".join(str(i) for i in issues[:5])
        raise CheckpointError(f"{shown(run_dir / CHECKPOINT)} does not hold a valid lamina "
                              f"checkpoint index ({problems}): it was edited, damaged or "
                              "written by another program; restore it or start a new "
                              "run")
    numbers = [record.epoch for record in index.history]
    if numbers != list(range(1, index.epoch + 1)):
        raise CheckpointError(f"{shown(run_dir / CHECKPOINT)}: checkpoint of epoch "
                              f"{index.epoch} with a history of epochs {numbers[:10]}; expected "
                              f"epochs 1 to {index.epoch}: the file was edited or damaged")
    best_epoch = index.extra.best_epoch
    named = index.best.epoch if index.best is not None else best_epoch
    if (best_epoch is not None and best_epoch > index.epoch) or named != best_epoch:
        raise CheckpointError(f"{shown(run_dir / CHECKPOINT)}: its best epoch ({named}) is not "
                              f"a finished epoch of its own record (best_epoch {best_epoch}, "
                              f"{index.epoch} epochs): the file was edited or damaged")
    return index


def load_checkpoint(run_dir: Path, *, best: bool = False) -> Checkpoint | None:
    """Read and verify the latest checkpoint of ``run_dir``; ``None`` when the run never
    finished an epoch. With ``best`` also the best epoch's params (when it has one): they
    are read only when asked for, so a damaged best file never stops the last checkpoint
    from loading."""
    run_dir = Path(run_dir)
    index = load_index(run_dir)
    if index is None:
        return None
    arrays = _verified_npz(run_dir / index.arrays, index.sha256,
                           "the run's last checkpoint cannot be used")
    params = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("param/")}
    optim = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("optim/")}
    best_params = load_best_params(run_dir, index) if best and index.best is not None else None
    return Checkpoint(index.epoch, params, optim, index.rng_state.model_dump(),
                      [record.model_dump() for record in index.history],
                      index.extra.model_dump(), best_params)


def load_best_params(run_dir: Path, index: CheckpointIndex) -> dict[str, np.ndarray]:
    """The params of ``index``'s best epoch (checked against the hash it records)."""
    if index.best is None:
        raise CheckpointError(f"{shown(Path(run_dir))} has no best-epoch weights: they are "
                              "kept only for runs with a validation split (and by lamina "
                              "versions that keep them); use the last epoch's weights")
    arrays = _verified_npz(Path(run_dir) / index.best.arrays, index.best.sha256,
                           "the best epoch's weights cannot be used")
    return {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("param/")}


def _verified_npz(npz: Path, sha256: str, consequence: str) -> dict[str, np.ndarray]:
    try:
        data = read_regular_file(npz, MAX_NPZ_BYTES)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CheckpointError(f"checkpoint arrays {shown(npz)} cannot be read ({reason}); "
                              f"{consequence}") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise CheckpointError(f"checkpoint arrays {shown(npz)} are corrupt: their SHA-256 does "
                              f"not match the one recorded in {CHECKPOINT}; restore the file "
                              "or start a new run")
    try:
        return read_npz(data)
    except BadArrayFile as exc:
        raise CheckpointError(f"checkpoint arrays {shown(npz)} cannot be used ({npz.name} "
                              f"{exc}); restore the file or start a new run") from None
