"""Faults and untrusted run directories: a failed command changes nothing, a fault keeps the
last checkpoint, and what a killed process leaves is taken back."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lamina import CheckpointError, ConfigError, DataError, LaminaError, TrainingError
from lamina.plan import make_plan
from lamina.registry import load_registry
from lamina.training import load_checkpoint, load_trained, resume_run, runs, start_run
from lamina.training.trainer import Data, fit, make_session

REGISTRY = load_registry(load_entry_points=False)


def quiet(data_dir: str) -> dict:
    return {"data_dir": data_dir, "quiet": True, "log": lambda _: None,
            "note": lambda _: None}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def synthetic(n: int = 128) -> Data:
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return Data(x, y, x[:32], y[:32])


@pytest.fixture
def trained(tmp_path, tiny_config, mnist_dir) -> Path:
    run_dir = tmp_path / "run"
    start_run(tiny_config, REGISTRY, run_dir=run_dir, overrides={"epochs": 1},
              **quiet(mnist_dir))
    return run_dir


def rewrite_checkpoint(run_dir: Path, change) -> None:
    """Edit the checkpoint's arrays with ``change(arrays)``, keeping the index consistent
    (the SHA-256 recomputed), as a tool or a person editing a run directory would."""
    index = json.loads((run_dir / runs.CHECKPOINT).read_text())
    npz = run_dir / index["arrays"]
    with np.load(npz, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    npz.write_bytes(buffer.getvalue())
    index["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (run_dir / runs.CHECKPOINT).write_text(json.dumps(index))


def huge_member(run_dir: Path) -> None:
    """A member whose .npy header declares a terabyte while it holds a few bytes."""
    index = json.loads((run_dir / runs.CHECKPOINT).read_text())
    npz = run_dir / index["arrays"]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (2**20, 2**20)})
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("param/conv2d_1.W.npy", header.getvalue() + bytes(16))
    npz.write_bytes(data.getvalue())
    index["sha256"] = hashlib.sha256(data.getvalue()).hexdigest()
    (run_dir / runs.CHECKPOINT).write_text(json.dumps(index))


def edit_index(key, value):
    def edit(run_dir: Path) -> None:
        index = json.loads((run_dir / runs.CHECKPOINT).read_text())
        index[key] = value
        (run_dir / runs.CHECKPOINT).write_text(json.dumps(index))
    return edit


def edit_extra(**values):
    def edit(run_dir: Path) -> None:
        index = json.loads((run_dir / runs.CHECKPOINT).read_text())
        index["extra"].update(values)
        (run_dir / runs.CHECKPOINT).write_text(json.dumps(index))
    return edit


def edit_history(**values):
    def edit(run_dir: Path) -> None:
        index = json.loads((run_dir / runs.CHECKPOINT).read_text())
        index["history"][-1].update(values)
        (run_dir / runs.CHECKPOINT).write_text(json.dumps(index))
    return edit


def bare_npy(run_dir: Path) -> None:
    index = json.loads((run_dir / runs.CHECKPOINT).read_text())
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    (run_dir / index["arrays"]).write_bytes(buffer.getvalue())
    index["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (run_dir / runs.CHECKPOINT).write_text(json.dumps(index))


def drop(key):
    return lambda run_dir: rewrite_checkpoint(run_dir, lambda arrays: arrays.pop(key))


CORRUPTIONS = {
    "epoch not a number": (edit_index("epoch", "one"), "epoch"),
    "history malformed": (edit_index("history", [{"epoch": 1}]), "history"),
    "generator state not PCG64": (edit_index("rng_state", {"bit_generator": "MT19937"}),
                                  "rng_state"),
    "history of other epochs": (edit_index("history", []), "history of epochs []"),
    "bare .npy for the .npz": (bare_npy, "not an .npz archive"),
    "a member declaring a terabyte": (huge_member, "declares shape (1048576, 1048576)"),
    "optimizer slot missing": (drop("optim/m/conv2d_1.W"), "the slots cover different"),
    "optimizer step count missing": (drop("optim/#steps"), "missing '#steps'"),
    "a parameter missing": (drop("param/dense_1.W"), "missing 'dense_1.W'"),
    "a parameter NaN": (lambda d: rewrite_checkpoint(
        d, lambda a: a["param/dense_1.b"].__setitem__(0, np.nan)), "NaN or infinite"),
    "config.json invalid": (lambda d: (d / runs.CONFIG).write_text('{"model": 3}'),
                            "config.json"),
    # One bound for every number read back: what lamina could have written.
    "an epoch of 10**30": (edit_index("epoch", 10**30), "less than or equal to 100000"),
    "an epoch at int64's edge": (edit_index("epoch", 2**63 - 1), "less than or equal"),
    "an epoch written as a float": (edit_index("epoch", 1.0), "valid integer"),
    "a negative early-stopping count": (edit_extra(stale_epochs=-(2**63)), "greater than"),
    "a best epoch without its loss": (edit_extra(best_val_loss=None), "kept together"),
    "a best epoch after the last": (edit_extra(best_epoch=7), "not a finished epoch"),
    "a loss that is not finite": (edit_history(train_loss=float("inf")), "finite number"),
    "a learning rate written as a string": (edit_history(lr="0.001"), "valid number"),
    "a best loss written as a bool": (edit_extra(best_val_loss=False), "valid number"),
    "a format version of true": (edit_index("format", True), "format: Input should be a "
                                                            "valid integer"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_a_damaged_run_directory_is_refused_and_left_as_it_was(trained, mnist_dir, name):
    damage, expected = CORRUPTIONS[name]
    damage(trained)
    before = snapshot(trained)
    for command in (lambda: resume_run(trained, REGISTRY, epochs=2, **quiet(mnist_dir)),
                    lambda: load_trained(trained, REGISTRY)):
        with pytest.raises(LaminaError) as info:
            command()
        assert expected in str(info.value)
    assert snapshot(trained) == before


def test_a_folder_where_a_run_file_belongs_stops_resume_before_any_change(trained, mnist_dir):
    """Before: the best weights' file replaced by a folder let the resume train, write
    epoch 2's checkpoint and delete epoch 1's, then fail saying nothing had changed."""
    best = trained / json.loads((trained / runs.CHECKPOINT).read_text())["best"]["arrays"]
    best.unlink()
    best.mkdir()
    before = snapshot(trained)
    with pytest.raises(CheckpointError, match=f"{best.name} is a folder, where lamina keeps"):
        resume_run(trained, REGISTRY, epochs=2, **quiet(mnist_dir))
    assert snapshot(trained) == before and best.is_dir()
    assert load_trained(trained, REGISTRY).epoch == 1  # the last weights still serve


def test_a_replaced_file_that_cannot_be_removed_is_a_leftover_not_a_failure(
        trained, mnist_dir, monkeypatch):
    """Once checkpoint.json names the new checkpoint the run has moved on; removing the
    one it replaced is tidying, and its failure must not fail the run."""
    from pathlib import Path

    real = Path.unlink

    def refused(self, missing_ok=False):
        if self.name.startswith("checkpoint-e0001"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refused)
    resume_run(trained, REGISTRY, epochs=2, **quiet(mnist_dir))
    monkeypatch.undo()
    assert load_checkpoint(trained).epoch == 2
    assert (trained / "checkpoint-e0001.npz").exists()
    resume_run(trained, REGISTRY, epochs=3, **quiet(mnist_dir))  # the next one tidies up
    assert not (trained / "checkpoint-e0001.npz").exists()


def test_an_override_does_not_hide_a_damaged_config_json(trained, mnist_dir):
    """Before: config.json's "epochs": "2" was refused by evaluate but accepted by
    --resume --epochs 3, which replaced it and rewrote the file."""
    config = json.loads((trained / runs.CONFIG).read_text())
    config["training"]["epochs"] = "2"
    (trained / runs.CONFIG).write_text(json.dumps(config))
    before = snapshot(trained)
    with pytest.raises(ConfigError, match=r"training.epochs: Input should be a valid integer"):
        resume_run(trained, REGISTRY, epochs=3, **quiet(mnist_dir))
    assert snapshot(trained) == before


def test_a_resume_that_fails_on_its_data_changes_nothing(trained, tmp_path, monkeypatch):
    """Before: --epochs was written into config.json before the data was looked for."""
    monkeypatch.delenv("LAMINA_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    before = snapshot(trained)
    with pytest.raises(DataError, match="cannot find"):
        resume_run(trained, REGISTRY, epochs=5, data_dir=str(tmp_path / "nothing"),
                   quiet=True, log=lambda _: None, download=False)
    assert snapshot(trained) == before


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(
        tmp_path, tiny_config, mnist_dir):
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    start_run(tiny_config, REGISTRY, run_dir=straight, overrides={"epochs": 1},
              **quiet(mnist_dir))
    # What a kill during the first epoch leaves: the config and provenance, and a stray
    # temporary file of the interrupted first checkpoint.
    killed.mkdir()
    for name in (runs.CONFIG, runs.PROVENANCE):
        (killed / name).write_bytes((straight / name).read_bytes())
    (killed / ".checkpoint-e0001.npz.4242.0123abcd.tmp").write_bytes(b"half")
    messages = []
    resume_run(killed, REGISTRY, data_dir=mnist_dir, quiet=True, log=messages.append,
               note=messages.append)
    assert any("starting it again from its first epoch" in m for m in messages)
    assert any(".checkpoint-e0001.npz.4242.0123abcd.tmp" in m for m in messages)
    a, b = load_checkpoint(straight), load_checkpoint(killed)
    assert a.epoch == b.epoch == 1
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    assert not list(killed.glob("*.tmp"))


def test_an_archive_no_index_names_is_removed_on_resume(trained, mnist_dir):
    index = json.loads((trained / runs.CHECKPOINT).read_text())
    orphan = trained / "checkpoint-e0002.npz"  # written, then killed before the index
    orphan.write_bytes((trained / index["arrays"]).read_bytes())
    stray_best = trained / "best-e0009.npz"  # no index names it either
    stray_best.write_bytes((trained / index["best"]["arrays"]).read_bytes())
    resume_run(trained, REGISTRY, epochs=2, **quiet(mnist_dir))
    ckpt = load_checkpoint(trained)
    assert ckpt.epoch == 2
    assert sorted(p.name for p in trained.glob("*.npz")) == [
        f"best-e{ckpt.extra['best_epoch']:04d}.npz", "checkpoint-e0002.npz"]


def test_a_run_directory_in_use_is_refused(trained, mnist_dir):
    before = snapshot(trained)
    with runs.RunLock(trained), pytest.raises(CheckpointError, match="in use by another"):
        resume_run(trained, REGISTRY, epochs=2, **quiet(mnist_dir))
    assert snapshot(trained) == before


def test_a_full_disk_keeps_the_last_checkpoint_and_resume_continues(
        tmp_path, tiny_config, mnist_dir, monkeypatch):
    full, straight = tmp_path / "full", tmp_path / "straight"
    start_run(tiny_config, REGISTRY, run_dir=straight, overrides={"epochs": 2},
              **quiet(mnist_dir))
    real = runs.atomic_write
    archives = []

    def disk_fills(path, data):
        if path.name.startswith("checkpoint-"):
            if archives:  # the second checkpoint finds no space
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            archives.append(path)
        real(path, data)

    monkeypatch.setattr(runs, "atomic_write", disk_fills)
    with pytest.raises(CheckpointError) as info:
        start_run(tiny_config, REGISTRY, run_dir=full, overrides={"epochs": 2},
                  **quiet(mnist_dir))
    message = str(info.value)
    assert "cannot write the checkpoint of epoch 2" in message
    assert "No space left on device; the checkpoint of epoch 1 is intact" in message
    assert load_checkpoint(full).epoch == 1
    # the first epoch's checkpoint and best weights, nothing of the second
    assert not list(full.glob(".*.tmp"))
    assert sorted(p.name for p in full.glob("*.npz")) == ["best-e0001.npz",
                                                          "checkpoint-e0001.npz"]
    monkeypatch.setattr(runs, "atomic_write", real)
    resume_run(full, REGISTRY, **quiet(mnist_dir))
    a, b = load_checkpoint(straight), load_checkpoint(full)
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])


def session_in(tmp_path, tiny_config, **training):
    plan = make_plan(tiny_config, REGISTRY, training={"batch_size": 128, **training})
    return make_session(plan, REGISTRY, runs.create_run_dir(tmp_path / "run"))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize(("lr", "what"), [
    (1e39, "the weights became NaN or infinite at epoch 1"),  # past float32's range
    (1e30, "the validation loss became nan at epoch 1"),  # finite weights, overflowing logits
])
def test_numbers_that_overflow_stop_training_and_are_never_saved(tmp_path, tiny_config, lr,
                                                                  what):
    """One batch per epoch: the loss of that batch is finite, the step it takes is not."""
    plan = make_plan(tiny_config, REGISTRY, training={"batch_size": 128, "epochs": 1}, lr=lr)
    session = make_session(plan, REGISTRY, runs.create_run_dir(tmp_path / "run"))
    with pytest.raises(TrainingError) as info, np.errstate(all="ignore"):
        fit(session, synthetic(), quiet=True, log=lambda _: None)
    message = str(info.value)
    assert what in message
    assert "No checkpoint had been written, so" in message and "holds none" in message
    assert not (session.run_dir / runs.CHECKPOINT).exists()
    assert not list(session.run_dir.glob("*.npz"))


def test_a_diverging_run_is_warned_about(tmp_path, tiny_config, monkeypatch):
    from lamina.training import trainer

    losses = iter([(1.0, 0.5), (0.8, 0.6), (12.0, 0.1)])
    monkeypatch.setattr(trainer, "train_epoch", lambda s, d, progress: next(losses))
    session = session_in(tmp_path, tiny_config, epochs=3)
    messages = []
    fit(session, synthetic(), quiet=True, log=messages.append, note=messages.append)
    [warning] = [m for m in messages if m.startswith("warning")]
    assert "the training loss grew from 0.8 to 12 at epoch 3: the run is diverging" in warning


def test_lr_inf_is_a_config_mistake(tiny_config):
    with pytest.raises(ConfigError, match=r"optimizer \(adam\)\.lr"):
        make_plan(tiny_config, REGISTRY, lr=float("inf"))


def test_an_empty_test_set_is_an_error_not_nan_percent(trained, mnist_dir, monkeypatch):
    import lamina.data
    from lamina.training import evaluate_run

    real = lamina.data.load_dataset

    def no_test_samples(*args, **kwargs):
        dataset = real(*args, **kwargs)
        object.__setattr__(dataset, "test_x", dataset.test_x[:0])
        object.__setattr__(dataset, "test_y", dataset.test_y[:0])
        return dataset

    monkeypatch.setattr(lamina.data, "load_dataset", no_test_samples)
    with pytest.raises(DataError, match="test set .* holds no samples"):
        evaluate_run(trained, REGISTRY, data_dir=mnist_dir, note=lambda _: None)


KILL_MID_WRITE = """
import os, signal, sys
from lamina.training import runs

real, archives = runs.atomic_write, []

def dies_half_way(path, data):
    # The second checkpoint's archive: the temporary file is written, then the process
    # is killed before the rename, as a power cut or an OOM kill would leave it.
    if path.name.startswith("checkpoint-"):
        archives.append(path)
        if len(archives) == 2:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.0123abcd.tmp")
            tmp.write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    real(path, data)

runs.atomic_write = dies_half_way
from lamina.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_in_the_middle_of_a_checkpoint_write_keeps_the_last_one(
        tmp_path, tiny_config, mnist_dir):
    import os
    import subprocess
    import sys

    killed, straight = tmp_path / "killed", tmp_path / "straight"
    result = subprocess.run(
        [sys.executable, "-c", KILL_MID_WRITE, "train", str(tiny_config), "--epochs", "3",
         "--quiet", "--run-dir", str(killed), "--data-dir", mnist_dir],
        capture_output=True, text=True, timeout=300, env={**os.environ})
    assert result.returncode == -9, result.stderr
    assert load_checkpoint(killed).epoch == 1  # the second checkpoint never happened
    assert len(list(killed.glob(".*.tmp"))) == 1  # what the kill left
    resume_run(killed, REGISTRY, **quiet(mnist_dir))
    start_run(tiny_config, REGISTRY, run_dir=straight, overrides={"epochs": 3},
              **quiet(mnist_dir))
    a, b = load_checkpoint(straight), load_checkpoint(killed)
    assert a.epoch == b.epoch == 3
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    assert not list(killed.glob(".*.tmp"))


def test_ctrl_c_during_the_first_checkpoint_names_no_checkpoint_and_resume_works(
        tmp_path, tiny_config, mnist_dir, monkeypatch):
    run_dir = tmp_path / "run"
    real = runs.atomic_write

    def interrupted(path, data):
        if path.suffix == ".npz":
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(runs, "atomic_write", interrupted)
    messages = []
    with pytest.raises(KeyboardInterrupt):
        start_run(tiny_config, REGISTRY, run_dir=run_dir, overrides={"epochs": 1},
                  data_dir=mnist_dir, quiet=True, log=messages.append, note=messages.append)
    assert ("no checkpoint had been written, so " in messages[-1]
            and f"continue with `lamina train --resume {run_dir}`" in messages[-1])
    monkeypatch.setattr(runs, "atomic_write", real)
    resume_run(run_dir, REGISTRY, **quiet(mnist_dir))
    assert load_checkpoint(run_dir).epoch == 1


def test_missing_numba_stops_train_before_the_run_directory_is_made(tmp_path, tiny_config,
                                                                     mnist_dir, monkeypatch):
    import sys

    from lamina import KernelError
    from lamina.kernels import jit

    monkeypatch.setattr(jit, "_loops", None)
    monkeypatch.delitem(sys.modules, "lamina.kernels._loops", raising=False)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    with pytest.raises(KernelError, match=r"need Numba.*Fix: pip install"):
        start_run(tiny_config, REGISTRY, run_dir=tmp_path / "run", data_dir=mnist_dir,
                  quiet=True, log=lambda _: None, overrides={"epochs": 1, "limit": 256})
    assert not (tmp_path / "run").exists()


def test_a_kill_between_the_first_archives_and_the_first_index_starts_again(
        tmp_path, tiny_config, mnist_dir):
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    start_run(tiny_config, REGISTRY, run_dir=straight, overrides={"epochs": 1},
              **quiet(mnist_dir))
    killed.mkdir()
    for name in (runs.CONFIG, runs.PROVENANCE, "checkpoint-e0001.npz", "best-e0001.npz"):
        (killed / name).write_bytes((straight / name).read_bytes())
    messages = []
    resume_run(killed, REGISTRY, data_dir=mnist_dir, quiet=True, log=messages.append,
               note=messages.append)
    assert any("starting it again from its first epoch" in m for m in messages)
    a, b = load_checkpoint(straight), load_checkpoint(killed)
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])


def test_archives_of_later_epochs_without_an_index_are_refused(trained, mnist_dir):
    index = json.loads((trained / runs.CHECKPOINT).read_text())
    (trained / "checkpoint-e0003.npz").write_bytes((trained / index["arrays"]).read_bytes())
    (trained / runs.CHECKPOINT).unlink()
    before = snapshot(trained)
    with pytest.raises(CheckpointError, match="checkpoint.json is missing"):
        resume_run(trained, REGISTRY, epochs=4, **quiet(mnist_dir))
    assert snapshot(trained) == before


def misbehaving_model(loss_methods: dict | None = None, optimizer_methods: dict | None = None,
                      shards: int = 1):
    """A Model whose loss and optimizer are the built-ins with some methods replaced,
    registered as the third-party plugins acme_loss and acme_opt of acme 1.0."""
    import lamina
    from lamina.registry import Provider

    base_loss = REGISTRY.loss("softmax_cross_entropy")
    base_opt = REGISTRY.optimizer("sgd")
    Loss = type("AcmeLoss", (base_loss,), {"name": "acme_loss", **(loss_methods or {})})
    Opt = type("AcmeOpt", (base_opt,), {"name": "acme_opt", **(optimizer_methods or {})})

    class Plugin:
        @lamina.hookimpl
        def lamina_register_losses(self):
            return [Loss]

        @lamina.hookimpl
        def lamina_register_optimizers(self):
            return [Opt]

    registry = load_registry(load_entry_points=False, extra_plugins=(
        (Plugin(), Provider("acme", "1.0", "acme.plugins")),))
    return lamina.Model({
        "model": {"input_shape": [4], "layers": [{"type": "dense", "units": 3}]},
        "loss": {"type": "acme_loss"}, "optimizer": {"type": "acme_opt", "lr": 0.1},
        "training": {"validation_split": 0, "shards": shards},
    }, registry=registry)


XS = np.random.default_rng(0).random((8, 4), dtype=np.float32)
YS = np.arange(8) % 3


@pytest.mark.parametrize("shards", [1, 2])
@pytest.mark.parametrize(("returned", "said"), [
    (None, "returned NoneType from backward()"),
    (np.zeros((3, 3), np.float32), "returned an array of shape (3, 3) and dtype float32 from "
                                   "backward()"),
])
def test_a_loss_whose_backward_returns_the_wrong_thing_is_named_not_dense(returned, said,
                                                                          shards):
    from lamina import PluginError

    model = misbehaving_model({"backward": lambda self: returned}, shards=shards)
    with pytest.raises(PluginError) as info:
        model.fit(XS, YS, epochs=1, batch_size=8, verbose=0)
    assert str(info.value).startswith("the acme_loss loss plugin (acme.plugins, from acme 1.0) "
                                      f"{said}; expected the gradient of the logits")


def test_a_loss_whose_predict_proba_fails_or_returns_nothing_is_named():
    from lamina import PluginError

    for method, said in [(lambda self, z: None, "returned NoneType from predict_proba()"),
                         (lambda self, z: 1 / 0, "raised ZeroDivisionError in predict_proba()")]:
        model = misbehaving_model({"predict_proba": method})
        with pytest.raises(PluginError, match=r"the acme_loss loss plugin \(acme.plugins, from "
                                              rf"acme 1.0\) {re.escape(said)}"):
            model.predict(XS)


def test_a_failing_optimizer_is_named_with_its_distribution():
    from lamina import PluginError

    def update(self, params, grads):
        raise SystemExit(4)

    model = misbehaving_model(optimizer_methods={"update": update})
    with pytest.raises(PluginError, match=r"^the acme_opt optimizer plugin \(acme.plugins, "
                                          r"from acme 1.0\) raised SystemExit: 4. This is a "
                                          r"bug in the plugin"):
        model.fit(XS, YS, epochs=1, batch_size=8, verbose=0)


@pytest.mark.parametrize(("method", "said"), [
    ("state_dict", "raised RuntimeError in state_dict(): no state"),
    ("load_state_dict", "raised KeyError in load_state_dict()"),
])
def test_an_optimizer_failing_to_save_or_load_its_state_is_named(tmp_path, method, said):
    from lamina import PluginError

    def boom(self, *args):
        raise (RuntimeError("no state") if method == "state_dict" else KeyError("m/dense_1.W"))

    model = misbehaving_model(optimizer_methods={method: boom})
    if method == "state_dict":
        model.fit(XS, YS, epochs=1, batch_size=8, verbose=0)
        with pytest.raises(PluginError, match=r"^the acme_opt optimizer plugin \(acme.plugins, "
                                              rf"from acme 1.0\) {re.escape(said)}"):
            model.save(tmp_path / "saved")
        assert not (tmp_path / "saved").exists()  # asked before the folder was made
        return
    good = misbehaving_model()
    good.fit(XS, YS, epochs=1, batch_size=8, verbose=0)
    good.save(tmp_path / "saved")
    with pytest.raises(PluginError, match=re.escape(said)):
        load_trained(tmp_path / "saved", model.registry)


def test_a_loss_whose_forward_returns_an_array_is_named():
    from lamina import PluginError

    model = misbehaving_model({"forward": lambda self, z, y: np.ones(len(z))})
    for call in (lambda: model.evaluate(XS, YS),
                 lambda: model.fit(XS, YS, epochs=1, batch_size=8, verbose=0)):
        with pytest.raises(PluginError, match=r"the acme_loss loss plugin .* returned an array "
                                              r"of shape \(8,\) from forward\(\); expected "
                                              "the batch's mean loss"):
            call()
