"""Training with a value loss (mse, binary_cross_entropy): records without accuracy, epoch
lines, metrics files and plots that leave it out, and lamina train / evaluate on MNIST
with the labels' one-hot rows as targets."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from lamina.cli import main
from lamina.plan import make_plan
from lamina.registry import load_registry
from lamina.training import runs
from lamina.training.trainer import (
    Data,
    evaluate_arrays,
    fit,
    format_record,
    make_session,
    train_epoch,
)

REGISTRY = load_registry(load_entry_points=False)
MLP = """
[model]
input_shape = [1, 28, 28]

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 16

[[model.layers]]
type = "tanh"

[[model.layers]]
type = "dense"
units = 10

[loss]
type = "{loss}"

[optimizer]
type = "adam"
lr = 3e-3

[training]
epochs = 2
batch_size = 32
seed = 5
"""


def config(tmp_path, loss="mse"):
    path = tmp_path / f"{loss}.toml"
    path.write_text(MLP.format(loss=loss))
    return path


def session(tmp_path, loss="mse", run_dir=None, **training):
    plan = make_plan(config(tmp_path, loss), REGISTRY, training=training or None)
    return make_session(plan, REGISTRY, run_dir)


def one_hot_data(n=160, seed=0) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return Data(x, y, x[:32], y[:32])


def png_size(path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk's width, height


def test_records_of_a_value_loss_hold_no_accuracy_and_are_saved_and_read_back(tmp_path):
    run = session(tmp_path, run_dir=runs.create_run_dir(tmp_path / "run"))
    runs.write_json(run.run_dir / runs.CONFIG, run.config.to_dict())
    lines = []
    fit(run, one_hot_data(), quiet=True, log=lines.append)
    assert [(r["train_accuracy"], r["val_accuracy"]) for r in run.history] == [(None, None)] * 2
    assert all(r["val_loss"] is not None for r in run.history)
    assert run.history[1]["train_loss"] < run.history[0]["train_loss"]
    # the epoch lines leave the accuracy out
    assert lines[0].startswith("epoch 1/2  loss ") and "acc" not in " ".join(lines)
    assert "  val_loss " in lines[0]
    # checkpoint.json and metrics.json validate them, metrics.csv leaves the cells empty
    assert runs.load_checkpoint(run.run_dir).history == run.history
    csv = (run.run_dir / runs.METRICS_CSV).read_text().splitlines()
    assert csv[0] == "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds"
    assert csv[1].split(",")[3] == "" and csv[1].split(",")[5] == ""


def test_the_plot_of_a_value_loss_is_its_loss_alone(tmp_path, synthetic_run):
    pytest.importorskip("matplotlib")
    from lamina.training.plots import plot_run

    run = session(tmp_path, run_dir=runs.create_run_dir(tmp_path / "run"))
    runs.write_json(run.run_dir / runs.CONFIG, run.config.to_dict())
    fit(run, one_hot_data(), quiet=True, log=lambda _: None)
    [curves] = plot_run(run.run_dir, REGISTRY)  # no conv layer: no filters.png
    (tmp_path / "classifier").mkdir()
    classifier = plot_run(synthetic_run(tmp_path / "classifier", epochs=1), REGISTRY)[0]
    assert png_size(curves) == (500, 400)  # one panel
    assert png_size(classifier) == (1000, 400)  # loss and accuracy


def test_an_epoch_record_keeps_accuracy_for_classification_losses_only():
    record = {"epoch": 1, "lr": 0.1, "train_loss": 0.5, "train_accuracy": None,
              "val_loss": 0.4, "val_accuracy": None, "seconds": 1.0}
    assert runs.EpochRecord(**record).train_accuracy is None
    assert runs.EpochRecord(**{**record, "train_accuracy": 0.9, "val_accuracy": 0.8})
    with pytest.raises(ValidationError, match="val_accuracy is recorded only with "
                                              "train_accuracy"):
        runs.EpochRecord(**{**record, "val_accuracy": 0.8})
    with pytest.raises(ValidationError, match="and val_loss"):
        runs.EpochRecord(**{**record, "train_accuracy": 0.9, "val_loss": None,
                            "val_accuracy": 0.8})
    assert format_record(record, 3) == "epoch 1/3  loss 0.5000  val_loss 0.4000  lr 1.00e-01  1.0s"
    classified = {**record, "train_accuracy": 0.9, "val_accuracy": 0.75}
    assert format_record(classified, 3) == ("epoch 1/3  loss 0.5000  acc 0.9000  val_loss "
                                            "0.4000  val_acc 0.7500  lr 1.00e-01  1.0s")


class Progress:
    def __init__(self):
        self.postfix = {}

    def update(self, n):
        pass

    def set_postfix(self, **values):
        self.postfix = {key: value for key, value in values.items() if key != "refresh"}


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
def test_the_training_loop_counts_no_accuracy_for_a_value_loss(tmp_path, loss):
    run, progress = session(tmp_path, loss), Progress()
    mean_loss, accuracy = train_epoch(run, one_hot_data(), progress=progress)
    assert accuracy is None and np.isfinite(mean_loss)
    assert list(progress.postfix) == ["loss"]
    classifier, progress = session(tmp_path, "softmax_cross_entropy"), Progress()
    data = one_hot_data()
    data.train_y = data.train_y.argmax(axis=1)
    assert 0 <= train_epoch(classifier, data, progress=progress)[1] <= 1
    assert list(progress.postfix) == ["loss", "acc"]


def test_evaluation_of_a_value_loss_gives_its_predictions(tmp_path):
    run, data = session(tmp_path, "binary_cross_entropy"), one_hot_data(50)
    loss, predictions = evaluate_arrays(run, data.train_x, data.train_y, batch_size=20)
    logits = run.network.forward(data.train_x, training=False)
    np.testing.assert_array_equal(predictions, run.loss.predict_proba(logits))
    assert loss == pytest.approx(run.loss.forward(logits, data.train_y), rel=1e-6)


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
def test_lamina_train_and_evaluate_a_value_loss_on_mnist(tmp_path, mnist_root, monkeypatch,
                                                         capsys, loss):
    """MNIST's labels become their one-hot rows: "mse on one-hot rows"."""
    monkeypatch.setenv("LAMINA_DATA", mnist_root)
    run_dir = tmp_path / "run"
    assert main(["train", str(config(tmp_path, loss)), "--epochs", "1", "--limit", "512",
                 "--run-dir", str(run_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1  loss " in out and "acc" not in out
    [record] = json.loads((run_dir / runs.METRICS).read_text())
    assert record["train_accuracy"] is None and record["val_accuracy"] is None
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"run_dir", "dataset", "epoch", "weights", "samples", "loss", "mse",
                           "mae", "targets", "accuracy"}
    assert 0.1 < report["accuracy"] <= 1  # one epoch on 512 images: better than chance
    assert report["samples"] == 10_000 and report["targets"] == "one-hot"
    assert 0 < report["mse"] < report["mae"] < 1  # errors of entries within [0, 1]
    if loss == "mse":
        assert report["mse"] == pytest.approx(report["loss"], rel=1e-5)
    assert main(["evaluate", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert "10,000 samples (targets: each label's one-hot row, as trained)" in text
    assert f"mse   {report['mse']:.6f}" in text and f"mae   {report['mae']:.6f}" in text
    assert "confusion" not in text
    assert f"accuracy  {report['accuracy']:.4%}  (the largest output's class)" in text
    # predict names the number for what it is: a score per class, not a probability
    digits = Path(__file__).resolve().parents[3] / "docs" / "examples" / "digits.npy"
    assert main(["predict", str(run_dir), str(digits), "--json"]) == 0
    [first, *_] = json.loads(capsys.readouterr().out)["predictions"]
    one, every = ("output", "outputs") if loss == "mse" else ("probability", "probabilities")
    assert set(first) == {"file", "class", "class_name", one, every}
    assert main(["predict", str(run_dir), str(digits)]) == 0
    assert (" probability" in capsys.readouterr().out) == (loss != "mse")
