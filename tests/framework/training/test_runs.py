"""Run directories and checkpoints: atomic, verified, never silently overwritten."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lamina import CheckpointError, TrainingError
from lamina.plan import make_plan
from lamina.registry import load_registry
from lamina.training import runs
from lamina.training.trainer import Data, checkpoint, fit, make_session


@pytest.fixture
def session(tmp_path, tiny_config):
    registry = load_registry(load_entry_points=False)
    plan = make_plan(tiny_config, registry, training={"epochs": 2, "batch_size": 50})
    run_dir = runs.create_run_dir(tmp_path / "run")
    return make_session(plan, registry, run_dir)


def synthetic(n=200, seed=0) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return Data(x, y, x[:40], y[:40])


def test_checkpoint_round_trip(session):
    fit(session, synthetic(), quiet=True, log=lambda _: None)
    ckpt = runs.load_checkpoint(session.run_dir)
    assert ckpt.epoch == 2 and len(ckpt.history) == 2
    for key, value in session.network.state_dict().items():
        np.testing.assert_array_equal(ckpt.params[key], value)
    assert ckpt.rng_state == session.rng.bit_generator.state
    npz = sorted(p.name for p in session.run_dir.glob("*.npz"))
    best = ckpt.extra["best_epoch"]
    # the replaced checkpoint is gone; the best epoch's weights are kept beside the last
    assert npz == [f"best-e{best:04d}.npz", "checkpoint-e0002.npz"]
    metrics = json.loads((session.run_dir / runs.METRICS).read_text())
    assert [r["epoch"] for r in metrics] == [1, 2]
    csv_lines = (session.run_dir / runs.METRICS_CSV).read_text().splitlines()
    assert csv_lines[0].startswith("epoch,lr,train_loss") and len(csv_lines) == 3


def test_corrupt_checkpoint_is_detected(session):
    checkpoint(session)
    npz = next(session.run_dir.glob("*.npz"))
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt: their SHA-256 does not match"):
        runs.load_checkpoint(session.run_dir)
    (session.run_dir / runs.CHECKPOINT).write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        runs.load_checkpoint(session.run_dir)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(session):
    data = synthetic()
    session.config = session.config.with_training(epochs=1)
    fit(session, data, quiet=True, log=lambda _: None)
    good = runs.load_checkpoint(session.run_dir)
    data.train_x[:] = np.nan
    session.config = session.config.with_training(epochs=2)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2.*last good checkpoint "
                                            r"\(epoch 1\)"):
        fit(session, data, quiet=True, log=lambda _: None)
    kept = runs.load_checkpoint(session.run_dir)
    assert kept.epoch == 1
    for key in good.params:
        np.testing.assert_array_equal(kept.params[key], good.params[key])
        assert np.all(np.isfinite(kept.params[key]))


def test_used_or_unwritable_run_dir_is_refused(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="already exists and is not empty"):
        runs.create_run_dir(used)
    assert (used / "notes.txt").read_text() == "mine"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        runs.create_run_dir(a_file)
    with pytest.raises(CheckpointError, match="cannot write to run directory"):
        runs.create_run_dir(a_file / "run")  # a parent that is a file: mkdir fails even as root


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "x.json"
    runs.write_json(target, {"a": 1})
    runs.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_early_stopping_after_patience_epochs_without_improvement(session, monkeypatch):
    from lamina.training import trainer

    val_losses = iter([1.0, 0.5, 0.7, 0.6, 0.9, 0.1])
    monkeypatch.setattr(trainer, "evaluate_arrays",
                        lambda s, x, y: (next(val_losses), np.zeros(len(y), int)))
    session.config = session.config.with_training(epochs=6, early_stopping_patience=3)
    messages = []
    history = fit(session, synthetic(), quiet=True, log=messages.append)
    # best at epoch 2 (0.5); epochs 3, 4, 5 are no better: stop before epoch 6
    assert [r["val_loss"] for r in history] == [1.0, 0.5, 0.7, 0.6, 0.9]
    assert messages[-1] == "early stopping: no better validation loss for 3 epochs"
    assert runs.load_checkpoint(session.run_dir).extra == {"best_val_loss": 0.5,
                                                           "best_epoch": 2,
                                                           "stale_epochs": 3}
