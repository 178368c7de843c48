"""``Model.save``: a model written as a run directory, whole or not at all.

The folder is written under a hidden name beside ``path`` and renamed into place
when every file is in it, so a failed save (a full disk, a plugin whose
``state_dict`` fails) leaves nothing half-written and an earlier model where it
was. ``overwrite=True`` replaces a saved model (a folder holding only what lamina
writes into a run directory) and nothing else: a folder with other files in it is
refused, never emptied. The old folder is moved aside under a hidden name, the new
one renamed into its place, and the old one deleted; if the process dies between
the two renames, the old model is still there under ``.NAME.replaced-*``. A
symbolic link is followed: the folder it names is written, the link stays.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..config.files import shown
from ..errors import CheckpointError
from ..registry import Registry
from . import runs

#: files lamina writes into a run directory: a folder holding only these is a saved model
_OURS = re.compile(r"^(checkpoint\.json|config\.json|metrics\.json|metrics\.csv"
                   r"|provenance\.json|curves\.png|filters\.png"
                   r"|checkpoint-e\d{4,}\.npz|best-e\d{4,}\.npz|\..+\.tmp)$")


def save_model(run: Any, registry: Registry, path: Path, *, overwrite: bool = False) -> None:
    """Write the session ``run`` as a run directory at ``path`` (a new or empty
    folder, or with ``overwrite`` a saved model to replace); everything is gathered
    (plugins asked) before anything is written."""
    from .provenance import provenance
    from .runs import Checkpoint
    from .trainer import optimizer_state

    if path.is_symlink():  # the folder it names is the one written (the link stays)
        path = path.resolve()
    replacing = _check_target(path, overwrite)
    best = run.extra.get("best_epoch")
    # A model that holds its best epoch's weights (restore_best) is saved as the run it
    # is: the last epoch's weights as the checkpoint, the best ones beside them.
    last = run.last_state if run.last_state is not None else run.network.state_dict()
    ckpt = Checkpoint(epoch=run.epoch, params=last, optimizer=optimizer_state(run),
                      rng_state=run.rng.bit_generator.state, history=run.history,
                      extra=run.extra,
                      best_params=run.best_state if best is not None else None)
    record = provenance(run, registry, {})
    _mkdir(path.parent)
    staging = path.parent / f".{path.name}.saving-{uuid.uuid4().hex[:8]}"
    try:
        _mkdir(staging)
        runs.write_json(staging / runs.CONFIG, run.config.to_dict())
        runs.write_json(staging / runs.PROVENANCE, record)
        runs.save_checkpoint(staging, ckpt)
        runs.write_metrics(staging, run.history)
        _move_into_place(staging, path, replacing)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone unless a step above failed


def _check_target(path: Path, overwrite: bool) -> bool:
    """Whether ``path`` holds a saved model to replace (False: nothing or an empty folder
    is there); anything else there is refused before any work is done."""
    try:
        if not path.exists():
            return False
        if not path.is_dir():
            raise CheckpointError(f"{shown(path)} is a file; save(path) writes a folder: choose "
                                  "another path")
        names = [entry.name for entry in path.iterdir()]
    except OSError as exc:
        raise CheckpointError(f"{shown(path)} cannot be used: {exc.strerror or exc}") from None
    if not names:
        return False
    if not overwrite:
        raise CheckpointError(
            f"{shown(path)} already exists and is not empty; pass overwrite=True to replace "
            "the model saved there, or choose another path")
    others = sorted(name for name in names if not _OURS.match(name))
    if others:
        raise CheckpointError(
            f"{shown(path)} holds files lamina did not write ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}), so it is not a saved model that "
            "overwrite=True may replace; lamina never deletes them: choose another path")
    with runs.RunLock(path):  # refused while a `lamina train` writes there
        pass
    return True


def _move_into_place(staging: Path, path: Path, replacing: bool) -> None:
    try:
        if not replacing:
            os.rename(staging, path)  # replaces an empty folder, fails on a filled one
            return
        aside = path.parent / f".{path.name}.replaced-{uuid.uuid4().hex[:8]}"
        os.rename(path, aside)
        try:
            os.rename(staging, path)
        except OSError:
            os.rename(aside, path)  # the old model back where it was
            raise
        shutil.rmtree(aside, ignore_errors=True)
    except OSError as exc:
        raise CheckpointError(f"cannot save the model as {shown(path)}: "
                              f"{exc.strerror or exc}; nothing there was changed") from exc


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create the folder {shown(path)}: "
                              f"{exc.strerror or exc}; choose a path you can write to") from exc
