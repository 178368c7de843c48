"""The best epoch's weights: kept beside the last checkpoint, restored on request, chosen
by evaluate, and never in the way of a bit-identical resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lamina import CheckpointError
from lamina.cli import main
from lamina.plan import make_plan
from lamina.registry import load_registry
from lamina.training import load_trained, runs
from lamina.training.trainer import Data, fit, make_session

REGISTRY = load_registry(load_entry_points=False)


def synthetic(n=120, seed=0) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return Data(x, y, x[:40], y[:40])


def session_for(tmp_path, tiny_config, **training):
    plan = make_plan(tiny_config, REGISTRY, training={"batch_size": 40, **training})
    session = make_session(plan, REGISTRY, runs.create_run_dir(tmp_path / "run"))
    runs.write_json(session.run_dir / runs.CONFIG, session.config.to_dict())
    return session


def scripted_validation(monkeypatch, losses):
    """Make the validation losses of successive epochs ``losses``."""
    from lamina.training import trainer

    values = iter(losses)
    monkeypatch.setattr(trainer, "evaluate_arrays",
                        lambda s, x, y: (next(values), np.zeros(len(y), int)))


def snapshots(monkeypatch):
    """The network's state after each epoch, recorded by a callback."""
    from lamina.training.callbacks import Callback, run_callbacks

    states = {}

    class Record(Callback):
        def on_epoch_end(self, run, record):
            states[record["epoch"]] = run.network.state_dict()

    return states, lambda log: [Record(), *run_callbacks(log)]


def test_the_best_epoch_is_kept_beside_the_last(tmp_path, tiny_config, monkeypatch):
    scripted_validation(monkeypatch, [0.9, 0.4, 0.6, 0.5])
    session = session_for(tmp_path, tiny_config, epochs=4)
    states, callbacks = snapshots(monkeypatch)
    fit(session, synthetic(), callbacks=callbacks(lambda _: None), quiet=True)
    run_dir = session.run_dir
    index = json.loads((run_dir / runs.CHECKPOINT).read_text())
    assert index["best"]["epoch"] == 2 and index["extra"]["best_epoch"] == 2
    assert sorted(p.name for p in run_dir.glob("*.npz")) == ["best-e0002.npz",
                                                            "checkpoint-e0004.npz"]
    ckpt = runs.load_checkpoint(run_dir, best=True)
    for key, value in states[2].items():
        np.testing.assert_array_equal(ckpt.best_params[key], value)
    for key, value in states[4].items():
        np.testing.assert_array_equal(ckpt.params[key], value)
    # the choice of weights: the run's own default is the last epoch's
    assert load_trained(run_dir, REGISTRY).weights == "epoch 4 (last)"
    best = load_trained(run_dir, REGISTRY, weights="best")
    assert best.weights == "epoch 2 of 4 (best validation loss 0.4000)"
    for key, value in best.network.state_dict().items():
        np.testing.assert_array_equal(value, states[2][key])


def test_restore_best_ends_training_with_the_best_weights(tmp_path, tiny_config, monkeypatch):
    scripted_validation(monkeypatch, [0.9, 0.4, 0.6, 0.7])
    session = session_for(tmp_path, tiny_config, epochs=6, early_stopping_patience=2,
                          restore_best=True)
    states, callbacks = snapshots(monkeypatch)
    messages = []
    history = fit(session, synthetic(), callbacks=callbacks(messages.append), quiet=True,
                  log=messages.append)
    assert len(history) == 4  # epochs 3 and 4 no better: stopped
    assert messages[-2:] == ["early stopping: no better validation loss for 2 epochs",
                             "restored the weights of epoch 2 (best validation loss 0.4000)"]
    for key, value in session.network.state_dict().items():
        np.testing.assert_array_equal(value, states[2][key])
    # the checkpoint keeps the last epoch (a resume continues from there) and the run's
    # default weights are now the best epoch's
    np.testing.assert_array_equal(runs.load_checkpoint(session.run_dir).params["dense_1.W"],
                                  states[4]["dense_1.W"])
    assert load_trained(session.run_dir, REGISTRY).weights.startswith("epoch 2 of 4")


def test_without_a_validation_split_there_is_no_best_epoch(tmp_path, tiny_config):
    session = session_for(tmp_path, tiny_config, epochs=1)
    data = synthetic()
    fit(session, Data(data.train_x, data.train_y, data.val_x[:0], data.val_y[:0]),
        quiet=True, log=lambda _: None)
    assert [p.name for p in session.run_dir.glob("*.npz")] == ["checkpoint-e0001.npz"]
    with pytest.raises(CheckpointError, match="no best-epoch weights.*validation split"):
        load_trained(session.run_dir, REGISTRY, weights="best")


def test_a_damaged_best_file_is_refused_when_used_and_never_blocks_the_last(tmp_path,
                                                                           tiny_config):
    session = session_for(tmp_path, tiny_config, epochs=1)
    fit(session, synthetic(), quiet=True, log=lambda _: None)
    index = json.loads((session.run_dir / runs.CHECKPOINT).read_text())
    best = session.run_dir / index["best"]["arrays"]
    best.write_bytes(best.read_bytes()[:-7] + b"damaged")
    with pytest.raises(CheckpointError, match="best-e0001.npz are corrupt"):
        runs.load_checkpoint(session.run_dir, best=True)
    with pytest.raises(CheckpointError, match="best-e0001.npz are corrupt"):
        load_trained(session.run_dir, REGISTRY, weights="best")
    assert runs.load_checkpoint(session.run_dir).epoch == 1
    assert load_trained(session.run_dir, REGISTRY, weights="last").weights == "epoch 1 (last)"
    best.unlink()  # even missing, the last epoch's weights load
    assert load_trained(session.run_dir, REGISTRY).weights == "epoch 1 (last)"


def test_an_index_whose_best_epoch_was_edited_is_refused(tmp_path, tiny_config):
    session = session_for(tmp_path, tiny_config, epochs=1)
    fit(session, synthetic(), quiet=True, log=lambda _: None)
    path = session.run_dir / runs.CHECKPOINT
    index = json.loads(path.read_text())
    index["best"]["epoch"] = 5
    path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="its best epoch .5. is not a finished epoch"):
        runs.load_checkpoint(session.run_dir)


def test_cli_evaluate_says_which_weights_and_takes_a_choice(tmp_path, tiny_config, mnist_root,
                                                            capsys):
    run_dir = tmp_path / "run"
    assert main(["train", str(tiny_config), "--epochs", "2", "--limit", "300", "--quiet",
                 "--run-dir", str(run_dir), "--data-dir", mnist_root]) == 0
    out, err = capsys.readouterr()
    # results on stdout (a log keeps them), nothing of them on stderr
    assert out.splitlines()[0] == f"run directory: {run_dir}"
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["1/2", "2/2"]
    assert "epoch 1/2" not in err
    best = json.loads((run_dir / runs.CHECKPOINT).read_text())["best"]["epoch"]
    assert main(["evaluate", str(run_dir), "--data-dir", mnist_root]) == 0
    assert capsys.readouterr().out.startswith(f"{run_dir} (epoch 2 (last)) on the mnist test")
    assert main(["evaluate", str(run_dir), "--weights", "best", "--json",
                 "--data-dir", mnist_root]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["weights"].startswith(f"epoch {best} of 2 (best validation loss ")
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(run_dir), "--weights", "middle"])
    assert exit_.value.code == 2
    assert "invalid choice: 'middle'" in capsys.readouterr().err


def test_restore_best_and_a_resume_with_a_damaged_best_file_goes_on(tmp_path, tiny_config,
                                                                    mnist_root):
    from lamina.training import resume_run, start_run

    run = tmp_path / "run"
    start_run(tiny_config, REGISTRY, run_dir=run, data_dir=mnist_root, quiet=True,
              log=lambda _: None, note=lambda _: None,
              overrides={"epochs": 1, "limit": 300, "restore_best": True})
    index = json.loads((run / runs.CHECKPOINT).read_text())
    (run / index["best"]["arrays"]).write_bytes(b"damaged")
    notes = []
    resume_run(run, REGISTRY, epochs=2, data_dir=mnist_root, quiet=True, log=lambda _: None,
               note=notes.append)
    assert any("warning:" in n and "best-e0001.npz are corrupt" in n for n in notes)
    assert runs.load_checkpoint(run).epoch == 2
