"""docs/python-api.md runs as written: its code blocks, in order, as one notebook session
(on a slice of MNIST and one epoch, the only changes, made by exact substitution)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import lamina

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
#: what the test changes in the page's code to run in seconds; each must be found
QUICK = {"limit=None": "limit=2_000", "epochs=15": "epochs=1"}


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_python_api_page_runs_as_a_notebook(mnist_root, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LAMINA_DATA", mnist_root)
    monkeypatch.chdir(tmp_path)
    code = "\n".join(blocks())
    for old, new in QUICK.items():
        assert code.count(old) == 1, f"docs/python-api.md no longer has {old!r} once"
        code = code.replace(old, new)
    namespace: dict = {"__name__": "__main__"}  # as in a notebook: classes belong to __main__
    exec(compile(code, str(DOC), "exec"), namespace)
    model, again = namespace["model"], namespace["again"]
    # what the page promises: trained, evaluated, saved and reloaded to the same output
    assert len(model.history) == 3 and again.weights == "epoch 3 (last)"
    assert namespace["report"]["samples"] == 10_000
    assert namespace["report"]["accuracy"] > 0.6  # one epoch on 1,800 images
    image = namespace["image"]
    np.testing.assert_array_equal(again.predict(image[None]), namespace["probabilities"])
    out = capsys.readouterr().out
    # the model as Keras users look at it, and their callback
    assert "Total params: 34,826" in out and "34826\n" in out
    assert "<lamina.Model (1, 28, 28) -> (10,), 9 layers, 34,826 parameters" in out
    assert "conv2d_1 conv2d (32, 26, 26) 320\nrelu_1 relu (32, 26, 26) 0\n" in out
    assert re.search(r"epoch 2: val_loss \d\.\d{4}\n", out)  # epochs counted from 0
    # saving over a saved model, weights in and out, a loop of one's own
    assert "already exists and is not empty; pass overwrite=True to replace the model" in out
    assert lamina.Model.load(namespace["folder"]).weights == "epoch 3 (last)"
    assert "{'conv2d_1.W': (32, 1, 3, 3), 'conv2d_1.b': (32,)}" in out
    assert "set by set_weights() after epoch 0" in out
    assert re.search(r"epoch 1: loss \d\.\d{4}\n", out)
    assert model.weights == "epoch 3, then train_step()"
    assert namespace["optimizer"].lr == pytest.approx(1e-3 / 4)
    assert "x has shape (1, 28, 28): one sample without the batch axis; pass x[None]" in out
    # the notebook's own layer: certified, named as local, refused by name when missing
    assert "0 checks failed" in out
    assert "softsign_1    softsign        (64,)              0  __main__ (local)" in out
    assert "the local layer plugin 'softsign' (__main__.Softsign" in out
    assert "pass it again, with Model.load(path, plugins=[Softsign]) in Python" in out
    assert namespace["seq"].plugins == (namespace["Softsign"],)
    assert len(namespace["coded"].history) == 1
    # the regression: mse fitted on a linear map plus noise (variance 0.01), then evaluated
    fitted = namespace["fitted"]
    assert set(fitted) == {"weights", "samples", "loss", "mse", "mae"}
    assert fitted["samples"] == 200 and fitted["weights"] == "epoch 40 (last)"
    printed = re.search(r"mse (\d\.\d{4}), mae (\d\.\d{4}), variance of y (\d\.\d{4})\n", out)
    mse, mae, variance = map(float, printed.groups())
    assert (mse, mae, variance) == (round(fitted["mse"], 4), round(fitted["mae"], 4),
                                    round(float(namespace["y_reg"].var()), 4))
    assert mse < 0.05 * variance  # down to about the noise
    assert fitted["mse"] == pytest.approx(fitted["loss"], rel=1e-5) and mae < 0.2
    assert "y holds real numbers (float64), not class indices; this model's loss, " \
           "softmax_cross_entropy, is a classification loss, taking class indices 0 to 9" in out


def test_every_python_block_is_run():
    # the page's examples are all Python blocks (shell lines would need another test)
    assert len(blocks()) >= 8


def test_the_page_shows_each_refused_input_message():
    """The table of refused inputs matches what Model says (checked on the tiny network)."""
    model = lamina.Model({
        "model": {"input_shape": [1, 8, 8], "layers": [{"type": "flatten"},
                                                       {"type": "dense", "units": 10}]},
        "loss": {"type": "softmax_cross_entropy"}, "optimizer": {"type": "sgd", "lr": 0.1},
    })
    x = np.zeros((4, 1, 8, 8), np.float32)
    cases = [
        (lambda: model.predict(x[0]), "pass x[None]"),
        (lambda: model.predict(x[:, 0]), "pass x[:, None]"),
        (lambda: model.predict(x.transpose(0, 2, 3, 1)), "pass x.transpose(0, 3, 1, 2)"),
        (lambda: model.predict((x * 255).astype(np.uint8)), "pass x.astype('float32') / 255"),
        (lambda: model.predict(np.full_like(x, np.nan)), "pass finite numbers"),
        (lambda: model.predict(x.astype(bool)), "pass floating-point values"),
        (lambda: model.predict(np.array([["a"]])), "this network takes (N, 1, 8, 8)"),
        (lambda: model.fit(x, np.eye(10)[:4], verbose=0), "y.argmax(axis=1)"),
        (lambda: model.fit(x, np.array([0, 1, 2, 10]), verbose=0),
         "holds class 10; this network has 10 classes: indices 0 to 9"),
        (lambda: model.fit(x, np.array([0, 1]), verbose=0), "shape (4,)"),
        (lambda: model.evaluate(x, np.zeros(4, int), class_names=["a"]), "has 1 names"),
    ]
    for call, message in cases:
        with pytest.raises(lamina.InputError) as info:
            call()
        assert message in str(info.value)
        assert isinstance(info.value, ValueError)
    table = DOC.read_text()
    for shown in ("x[None]", "x[:, None]", "x.transpose(0, 3, 1, 2)",
                  "x.astype('float32') / 255", "y.argmax(axis=1)"):
        assert f"`{shown}`" in table


def test_fit_matches_lamina_train_for_the_same_config_data_and_seed(tmp_path, tiny_config,
                                                                     mnist_root):
    """One loop: Model.fit and a command-line run end with the same weights."""
    from lamina.data import load_dataset
    from lamina.registry import load_registry
    from lamina.training import load_checkpoint, start_run

    registry = load_registry(load_entry_points=False)
    start_run(tiny_config, registry, run_dir=tmp_path / "run", data_dir=mnist_root,
              overrides={"epochs": 2, "limit": 500, "seed": 3}, quiet=True,
              log=lambda _: None, note=lambda _: None)
    data = load_dataset("mnist", data_dir=mnist_root, limit=500, parts=("train",))
    model = lamina.Model(tiny_config, seed=3, registry=registry)
    model.fit(data.train_x, data.train_y, epochs=2, verbose=0)
    saved = load_checkpoint(tmp_path / "run").params
    for key, value in model.network.state_dict().items():
        np.testing.assert_array_equal(value, saved[key], err_msg=key)


def test_seed_after_first_use_is_refused_and_save_refuses_a_used_folder(tmp_path):
    model = lamina.Model({
        "model": {"input_shape": [1, 8, 8], "layers": [{"type": "flatten"},
                                                       {"type": "dense", "units": 10}]},
        "loss": {"type": "softmax_cross_entropy"}, "optimizer": {"type": "sgd", "lr": 0.1},
    }, seed=1)
    x = np.zeros((4, 1, 8, 8), np.float32)
    model.predict(x)
    with pytest.raises(lamina.ConfigError, match="already built with seed 1"):
        model.fit(x, np.zeros(4, int), seed=2, verbose=0)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(lamina.CheckpointError):
        model.save(tmp_path / "used")
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["notes.txt"]
    with pytest.raises(lamina.ConfigError, match="model.layers"):
        lamina.Model({"model": {"input_shape": [1, 8, 8], "layers": []}})


TINY = {
    "model": {"input_shape": [1, 8, 8], "layers": [
        {"type": "flatten"}, {"type": "dropout", "rate": 0.2}, {"type": "dense", "units": 10}]},
    "loss": {"type": "softmax_cross_entropy"}, "optimizer": {"type": "adam", "lr": 0.01},
}


def tiny_data(n=90, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, n)


def test_two_fit_calls_are_one_fit_of_their_epochs():
    x, y = tiny_data()
    once = lamina.Model(TINY, seed=2)
    once.fit(x, y, epochs=2, batch_size=20, verbose=0)
    twice = lamina.Model(TINY, seed=2)
    twice.fit(x, y, epochs=1, batch_size=20, verbose=0)
    twice.fit(x, y, epochs=1, batch_size=20, verbose=0)
    for key, value in once.network.state_dict().items():
        np.testing.assert_array_equal(value, twice.network.state_dict()[key], err_msg=key)
    assert [r["val_loss"] for r in once.history] == [r["val_loss"] for r in twice.history]


def test_restore_best_is_named_and_saved_as_the_run_it_is(tmp_path, monkeypatch):
    from lamina.training import trainer

    losses = iter([0.9, 0.3, 0.8, 0.7])
    real = trainer.evaluate_arrays
    monkeypatch.setattr(trainer, "evaluate_arrays",
                        lambda s, vx, vy, *a: (next(losses), real(s, vx, vy, *a)[1]))
    x, y = tiny_data()
    model = lamina.Model(TINY, seed=3)
    model.fit(x, y, epochs=4, restore_best=True, verbose=0)
    assert model.weights == "epoch 2 of 4 (best validation loss 0.3000)"
    best = model.network.state_dict()
    model.save(tmp_path / "saved")
    assert lamina.Model.load(tmp_path / "saved").weights.startswith("epoch 2 of 4")
    last = lamina.Model.load(tmp_path / "saved", weights="last")
    assert last.weights == "epoch 4 (last)"
    assert not np.array_equal(last.network.state_dict()["dense_1.W"], best["dense_1.W"])
    reloaded = lamina.Model.load(tmp_path / "saved", weights="best").network.state_dict()
    for key, value in best.items():
        np.testing.assert_array_equal(reloaded[key], value)


def test_more_inputs_that_would_give_bare_numpy_errors_get_input_errors():
    model = lamina.Model(TINY)
    x, y = tiny_data(6)
    cases = [
        (lambda: model.fit(x, y, validation_data=x, verbose=0), r"a pair \(x_val, y_val\)"),
        (lambda: model.fit(x, [[1], [2, 3]], verbose=0), "cannot be read as an array"),
        (lambda: model.fit(x, np.full(6, 1e20), verbose=0), "pass integer class indices"),
        (lambda: model.predict(x, batch_size=0), "batch_size must be a whole number"),
        (lambda: model.predict(x, batch_size=1.5), "batch_size must be a whole number"),
        (lambda: model.predict(x.astype(np.float64) * 1e300), "beyond float32's range"),
    ]
    for call, message in cases:
        with pytest.raises(lamina.InputError, match=message):
            call()
    with pytest.warns(UserWarning, match="looks like 0-255 pixels"):
        model.predict(x * 255)


def test_arguments_of_the_wrong_type_are_input_errors_not_bare_type_errors(tmp_path):
    """Each of these ended in a raw TypeError or AttributeError from deep inside."""
    from lamina.training.callbacks import Callback

    model = lamina.Model(TINY)
    x, y = tiny_data(6)
    cases = [
        (lambda: lamina.Model(5), "config must be a shipped config's name .* received int 5"),
        (lambda: lamina.Model(None), "received NoneType None"),
        (lambda: lamina.Model.load(5), "path must be a run directory's path .* received int 5"),
        (lambda: lamina.Model(TINY, registry="mine"), "registry must be a lamina.registry"),
        (lambda: model.evaluate(x, y, class_names=5), "class_names must be a list of 10 "
                                                      "strings"),
        (lambda: model.evaluate(x, y, class_names=["a"] * 9), "class_names has 9 names"),
        (lambda: model.fit(x, y, callbacks=[object()], verbose=0),
         r"callbacks\[0\] \(object\) has none of the hooks lamina calls; subclass"),
        (lambda: model.fit(x, y, callbacks=Callback(), verbose=0),
         "callbacks must be a list"),
        (lambda: model.fit(x, y, verbose="no"), "verbose must be 0 .*, received str 'no'"),
        (lambda: model.fit(x, y, verbose=3), "verbose must be 0"),
        (lambda: model.predict(x, batch_size=np.int64(3)), r"an int\), received int64"),
        (lambda: model.save(5), "path must be a folder's path"),
        (lambda: model.export(None), "path must be a file's path ending in .onnx"),
    ]
    for call, message in cases:
        with pytest.raises(lamina.InputError, match=message):
            call()
    with pytest.raises(TypeError):  # an InputError is a TypeError too, as wrong types are
        lamina.Model(5)
    assert model.history == []  # nothing of the refused fit() calls happened


@pytest.mark.parametrize(("where", "value"), [("batch_size", "32"), ("epochs", "2"),
                                              ("seed", "1"), ("seed", 1.0), ("seed", True),
                                              ("restore_best", "yes"), ("shuffle", 1),
                                              ("validation_split", "0.1")])
def test_one_rule_for_settings_wherever_they_come_from(where, value):
    """A string is never a number, a number never a bool: in a config, in Model() and
    in fit() alike (before: batch_size="32" passed in a config and in fit(), epochs="2"
    was refused, seed="1" passed)."""
    message = rf"training\.{where}: Input should be a valid"
    config = {**TINY, "training": {where: value}}
    with pytest.raises(lamina.ConfigError, match=message):
        lamina.Model(config)
    x, y = tiny_data(6)
    with pytest.raises(lamina.ConfigError, match=message):
        if where == "seed":
            lamina.Model(TINY, seed=value)
        else:
            lamina.Model(TINY).fit(x, y, **{where: value}, verbose=0)


@pytest.mark.parametrize("shape", [["1", 8, 8], [True, 8, 8], [1.0, 8, 8]])
def test_the_input_shape_follows_the_rule_too(shape):
    with pytest.raises(lamina.ConfigError, match=r"model.input_shape\[0\]: Input should be a "
                                                 r"valid integer"):
        lamina.Model({**TINY, "model": {**TINY["model"], "input_shape": shape}})


def test_a_fit_that_is_refused_changes_nothing():
    """Before: the settings of a refused fit (epochs, batch size) stayed in the model."""
    model = lamina.Model(TINY, seed=1)
    before = model.config.to_dict()
    x, y = tiny_data(5)
    with pytest.raises(lamina.ConfigError, match="validation_split: a fraction of 0.1 of 1 "):
        model.fit(x[:1], y[:1], epochs=5, batch_size=7, verbose=0)
    assert model.config.to_dict() == before and model.history == []


def test_a_fit_refused_for_its_arrays_changes_neither_seed_nor_split():
    """Before: fit(bad_x, seed=5) left seed 5 on an unbuilt model, and an empty fit stored
    a split that the next fit then used."""
    x, y = tiny_data(30)
    model = lamina.Model(TINY, seed=1)
    with pytest.raises(lamina.InputError):
        model.fit(x[:, 0], y, seed=5, verbose=0)
    with pytest.raises(lamina.InputError, match="no training samples"):
        model.fit(x[:0], y[:0], validation_split=0.0, verbose=0)
    assert model.config.training.seed == 1
    model.fit(x, y, epochs=1, validation_split=0.2, verbose=0)
    fresh = lamina.Model(TINY, seed=1)
    fresh.fit(x, y, epochs=1, validation_split=0.2, verbose=0)
    assert model.history[0]["val_loss"] == fresh.history[0]["val_loss"]
