"""What a Keras or PyTorch user reaches for on a lamina.Model: its layers and weights,
a summary that prints, a history per fit, Keras's verbose/shuffle/callbacks, saving
over a saved model, and a loop of one's own (train_step, forward/backward/step)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lamina
from lamina.errors import CheckpointError
from lamina.training import runs
from lamina.training.callbacks import Callback

TINY = {
    "model": {"input_shape": [1, 8, 8], "layers": [
        {"type": "flatten"}, {"type": "dropout", "rate": 0.2}, {"type": "dense", "units": 10}]},
    "loss": {"type": "softmax_cross_entropy"}, "optimizer": {"type": "adam", "lr": 0.01},
    "training": {"epochs": 2, "batch_size": 20},
}


def tiny_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, n)


# -- looking inside -------------------------------------------------------------------
def test_layers_name_type_shape_count_and_the_layer_object():
    model = lamina.Model(TINY)
    layers = model.layers
    assert [(info.name, info.type, info.output_shape, info.params) for info in layers] == [
        ("flatten_1", "flatten", (64,), 0), ("dropout_1", "dropout", (64,), 0),
        ("dense_1", "dense", (10,), 650)]
    assert layers[2].layer.params()["W"].shape == (64, 10)  # the live object
    assert "layer=" not in repr(layers[2])  # the object is not dumped in a repr


def test_count_params_is_known_before_the_network_is_built():
    model = lamina.Model("mnist_cnn")
    assert model.count_params() == 34_826
    assert model.count_params(trainable=True) == 34_826
    assert model.count_params(trainable=False) == 0
    assert model._session is None  # nothing was allocated to count
    with pytest.raises(lamina.InputError, match="trainable must be True or False"):
        model.count_params(trainable="yes")


def test_summary_prints_and_returns_the_table(capsys):
    model = lamina.Model(TINY)
    text = model.summary()
    printed = capsys.readouterr().out
    assert printed == text + "\n" and "Total params: 650" in text
    assert model.summary(print_fn=None) == text and capsys.readouterr().out == ""
    lines = []
    model.summary(print_fn=lines.append)
    assert lines == [text]


def test_repr_is_the_summary_header_and_builds_nothing():
    model = lamina.Model("mnist_cnn")
    assert repr(model) == ("<lamina.Model (1, 28, 28) -> (10,), 9 layers, 34,826 parameters, "
                           "softmax_cross_entropy loss, adam optimizer, weights: initial>")
    html = model._repr_html_()
    assert html.startswith("<pre>&lt;lamina.Model") and "conv2d_1" in html
    assert model._session is None


def test_get_and_set_weights_round_trip_and_refuse_what_does_not_fit():
    x, y = tiny_data()
    model = lamina.Model(TINY, seed=1)
    initial = model.get_weights()
    assert set(initial) == {"dense_1.W", "dense_1.b"}
    initial["dense_1.b"][:] = 7  # a copy: the network is untouched
    assert not np.any(model.get_weights()["dense_1.b"] == 7)
    model.fit(x, y, epochs=1, verbose=0)
    trained = model.get_weights()
    other = lamina.Model(TINY, seed=2)
    other.set_weights(trained)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    assert other.weights == "set by set_weights() after epoch 0"
    before = other.get_weights()
    bad = [
        ({"dense_1.W": trained["dense_1.W"]}, r"missing 'dense_1.b' \(10,\)"),
        ({**trained, "dense_2.W": trained["dense_1.W"]}, "unexpected 'dense_2.W'"),
        ({**trained, "dense_1.b": np.zeros(9)}, r"'dense_1.b' has shape \(9,\), expected"),
        ({**trained, "dense_1.b": np.array(["a"] * 10)}, "'dense_1.b' has dtype <U1"),
        ({**trained, "dense_1.b": np.full(10, np.nan)}, "NaN or infinite"),
        ([trained["dense_1.W"], trained["dense_1.b"]], "weights must be a dict of arrays"),
        ({1: trained["dense_1.W"]}, "weights must be a dict of arrays"),
    ]
    for weights, message in bad:
        with pytest.raises(lamina.InputError, match=message):
            other.set_weights(weights)
        for key, value in other.get_weights().items():  # nothing changed
            np.testing.assert_array_equal(value, before[key])
    with pytest.raises(ValueError, match="the dict given to set_weights"):
        other.set_weights({})


# -- fit ------------------------------------------------------------------------------
def test_fit_returns_a_history_per_call_read_as_keras_users_read_it():
    x, y = tiny_data()
    model = lamina.Model(TINY)
    first = model.fit(x, y, verbose=0)  # epochs: the config's training.epochs (2)
    with pytest.warns(UserWarning, match="new validation split"):
        second = model.fit(x, y, epochs=1, verbose=0, validation_split=0.0)
    assert isinstance(first, lamina.History)
    assert first.epoch == [1, 2] and second.epoch == [3] and len(model.history) == 3
    assert set(first.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr",
                                  "seconds"}
    assert "val_loss" not in second.history  # no validation, no val_ lists (as in Keras)
    assert first.history["val_loss"] == [r["val_loss"] for r in model.history[:2]]
    assert first[-1]["epoch"] == 2 and first == model.history[:2]  # still a list of records
    assert len(first) == 2  # the second call did not grow the first's history
    assert repr(first).startswith("History(epochs 1-2; last: loss ")
    model.history.clear()  # a copy: the model's own record is untouched
    assert len(model.history) == 3


@pytest.mark.parametrize(("verbose", "lines", "bar"), [(0, 0, False), (2, 2, False),
                                                       (1, 2, True), ("auto", 2, True),
                                                       (False, 0, False)])
def test_verbose_is_keras_verbose(verbose, lines, bar, monkeypatch, capsys):
    from lamina.training import trainer

    bars = []
    real = trainer.fit

    def spy(*args, quiet, **kwargs):
        bars.append(not quiet)
        return real(*args, quiet=quiet, **kwargs)

    monkeypatch.setattr(trainer, "fit", spy)
    x, y = tiny_data()
    lamina.Model(TINY).fit(x, y, verbose=verbose)
    out = capsys.readouterr().out
    assert out.count("epoch ") == lines and bars == [bar]


def test_shuffle_false_and_train_step_are_the_same_steps():
    """fit(shuffle=False) takes the batches in order; train_step takes one such step: a
    loop of train_step over the same batches ends with the same weights, bit for bit
    (dropout's masks come from the model's generator either way)."""
    x, y = tiny_data()
    fitted = lamina.Model(TINY, seed=3)
    fitted.fit(x, y, epochs=1, shuffle=False, validation_split=0.0, verbose=0)
    stepped = lamina.Model(TINY, seed=3)
    losses = [stepped.train_step(x[i:i + 20], y[i:i + 20]) for i in range(0, 60, 20)]
    assert all(isinstance(loss, float) for loss in losses)
    for key, value in fitted.get_weights().items():
        np.testing.assert_array_equal(stepped.get_weights()[key], value)
    assert stepped.weights == "epoch 0, then train_step()"
    shuffled = lamina.Model(TINY, seed=3)
    shuffled.fit(x, y, epochs=1, validation_split=0.0, verbose=0)
    assert not np.array_equal(shuffled.get_weights()["dense_1.W"],
                              fitted.get_weights()["dense_1.W"])


def test_train_step_checks_its_arrays_first():
    model = lamina.Model(TINY)
    x, y = tiny_data(4)
    with pytest.raises(lamina.InputError, match="pass x\\[None\\]"):
        model.train_step(x[0], y[:1])
    with pytest.raises(lamina.InputError, match="no samples"):
        model.train_step(x[:0], y[:0])
    assert model.weights == "initial"


def test_a_changed_validation_split_is_redrawn_with_a_warning():
    x, y = tiny_data()
    model = lamina.Model(TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, epochs=1, verbose=0)
        model.fit(x, y, epochs=1, verbose=0)  # the same split: no warning
    with pytest.warns(UserWarning, match="draws a new validation split: the last fit split "
                                         "60 samples with validation_split=0.1, this one 60 "
                                         "with 0.2"):
        model.fit(x, y, epochs=1, verbose=0, validation_split=0.2)


# -- callbacks ------------------------------------------------------------------------
def test_a_keras_style_callback_gets_an_epoch_index_and_logs_and_can_stop():
    seen = []

    class KerasLike:
        def set_model(self, model):
            self.model = model

        def on_train_begin(self, logs=None):
            seen.append(("begin", logs))

        def on_epoch_begin(self, epoch, logs=None):
            seen.append(("epoch begin", epoch))

        def on_epoch_end(self, epoch, logs=None):
            seen.append(("epoch end", epoch, sorted(logs)))
            if epoch == 1:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            seen.append(("end", sorted(logs)))

    x, y = tiny_data()
    model = lamina.Model(TINY)
    callback = KerasLike()
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[callback])
    assert callback.model is model and len(history) == 2
    keys = ["accuracy", "loss", "lr", "seconds", "val_accuracy", "val_loss"]
    assert seen == [("begin", {}), ("epoch begin", 0), ("epoch end", 0, keys),
                    ("epoch begin", 1), ("epoch end", 1, keys), ("end", keys)]


def test_a_plain_object_gets_its_model_attribute():
    class Stopper:
        def on_epoch_end(self, epoch, logs):
            self.model.stop_training = True

    x, y = tiny_data()
    model = lamina.Model(TINY)
    assert len(model.fit(x, y, epochs=3, verbose=0, callbacks=[Stopper()])) == 1


@pytest.mark.parametrize(("callback", "message"), [
    (object(), r"callbacks\[0\] \(object\) has none of the hooks lamina calls"),
    (type("Hook", (), {"on_epoch_end": lambda self: None})(),
     r"callbacks\[0\] \(Hook\)\.on_epoch_end\(\) cannot take .* on_epoch_end\(epoch, logs\)"),
    (type("Batchy", (), {"on_epoch_end": lambda self, e, logs: None,
                         "on_train_batch_end": lambda self, b, logs: None})(),
     "defines on_train_batch_end, which lamina never calls"),
    (type("Mixed", (Callback,), {"on_epoch_end": lambda self, epoch, logs: None})(),
     r"\(Mixed\)\.on_epoch_end is written as Keras's \(epoch, logs\), but Mixed subclasses "
     r"lamina's Callback, whose on_epoch_end receives \(run, record\)"),
    (type("Short", (Callback,), {"on_epoch_end": lambda self, run: None})(),
     r"on_epoch_end\(run\) cannot take the arguments lamina passes"),
    (type("NotCallable", (), {"on_epoch_end": 5})(), r"on_epoch_end is int 5, not a method"),
])
def test_callbacks_are_checked_before_training(callback, message):
    x, y = tiny_data()
    model = lamina.Model(TINY)
    with pytest.raises(TypeError, match=message):
        model.fit(x, y, verbose=0, callbacks=[callback])
    assert model.history == []


def test_the_run_a_callback_receives_has_a_short_repr():
    shown = []

    class Show(Callback):
        def on_epoch_end(self, run, record):
            shown.append(repr(run))

    x, y = tiny_data()
    lamina.Model(TINY).fit(x, y, epochs=1, verbose=0, callbacks=[Show()])
    assert shown == ["<lamina training session: epoch 1 of 1, 3 layers, adam lr 0.01, "
                     "in memory>"]


# -- saving ---------------------------------------------------------------------------
def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    x, y = tiny_data()
    model = lamina.Model(TINY)
    model.save(tmp_path / "m")
    model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(lamina.LaminaError, match="already exists and is not empty; pass "
                                                 "overwrite=True to replace the model"):
        model.save(tmp_path / "m")
    assert lamina.Model.load(tmp_path / "m").weights == "initial"
    model.save(tmp_path / "m", overwrite=True)
    assert lamina.Model.load(tmp_path / "m").weights == "epoch 1 (last)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # nothing left beside it
    with pytest.raises(lamina.InputError, match="overwrite must be True or False"):
        model.save(tmp_path / "m", overwrite="yes")


def test_overwrite_never_replaces_a_folder_of_other_files(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("years of work")
    (tmp_path / "file").write_text("x")
    model = lamina.Model(TINY)
    with pytest.raises(lamina.LaminaError, match=r"holds files lamina did not write "
                                                 r"\(thesis.tex\)"):
        model.save(tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "years of work"
    with pytest.raises(lamina.LaminaError, match="is a file; save\\(path\\) writes a folder"):
        model.save(tmp_path / "file", overwrite=True)


def test_a_failed_save_leaves_the_saved_model_as_it_was(tmp_path, monkeypatch):
    x, y = tiny_data()
    model = lamina.Model(TINY)
    model.save(tmp_path / "m")
    before = sorted((p.name, p.read_bytes()) for p in (tmp_path / "m").iterdir())
    model.fit(x, y, epochs=1, verbose=0)

    def full_disk(*args, **kwargs):
        raise CheckpointError("no space left on device")

    monkeypatch.setattr(runs, "save_checkpoint", full_disk)
    with pytest.raises(CheckpointError, match="no space left"):
        model.save(tmp_path / "m", overwrite=True)
    assert sorted((p.name, p.read_bytes()) for p in (tmp_path / "m").iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no half-written folder
    with pytest.raises(CheckpointError):
        model.save(tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_overwrite_waits_for_no_one_a_run_in_use_is_refused(tmp_path):
    model = lamina.Model(TINY)
    model.save(tmp_path / "m")
    with runs.RunLock(tmp_path / "m"), pytest.raises(lamina.LaminaError,
                                                     match="in use by another lamina process"):
        model.save(tmp_path / "m", overwrite=True)


# -- your own loop --------------------------------------------------------------------
def test_network_forward_needs_the_training_flag():
    model = lamina.Model(TINY)
    x, _ = tiny_data(2)
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'training'"):
        model.network.forward(x)
    with pytest.raises(TypeError, match="training must be True or False, received 'yes'"):
        model.network.forward(x, training="yes")


def test_the_explicit_loop_is_what_train_step_does():
    """forward(training=True), the loss and its gradient, backward, the optimizer's step:
    the sequence docs/python-api.md spells out, equal to train_step with one shard."""
    x, y = tiny_data(20)
    config = {**TINY, "training": {"shards": 1}}
    by_hand, stepped = lamina.Model(config, seed=4), lamina.Model(config, seed=4)
    network, loss, optimizer = by_hand.network, by_hand.loss, by_hand.optimizer
    logits = network.forward(x, training=True)
    value = loss.forward(logits, y)
    network.backward(loss.backward())
    optimizer.step(network.params(), network.grads())
    assert float(value) == stepped.train_step(x, y)
    for key, array in stepped.get_weights().items():
        np.testing.assert_array_equal(by_hand.get_weights()[key], array)


# -- from a review of the above as users would use it ----------------------------------
def test_weights_set_after_restore_best_are_the_ones_saved_and_loaded(tmp_path):
    x, y = tiny_data(90)
    for change in ("set_weights", "train_step"):
        model = lamina.Model(TINY, seed=0)
        model.fit(x, y, epochs=3, restore_best=True, validation_split=0.3, verbose=0)
        if change == "set_weights":
            model.set_weights({k: v * 0.5 for k, v in model.get_weights().items()})
        else:
            model.train_step(x[:20], y[:20])
        model.save(tmp_path / change)
        loaded = lamina.Model.load(tmp_path / change)
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
        assert loaded.weights == "epoch 3 (last)"


def test_a_keras_style_callback_follows_the_model_it_is_given_to():
    class Stopper:
        def on_epoch_end(self, epoch, logs):
            self.model.stop_training = True

    x, y = tiny_data()
    stopper, first, second = Stopper(), lamina.Model(TINY), lamina.Model(TINY)
    first.fit(x, y, epochs=3, verbose=0, callbacks=[stopper])
    assert len(second.fit(x, y, epochs=3, verbose=0, callbacks=[stopper])) == 1
    assert stopper.model is second


def test_a_subclass_of_keras_own_base_class_is_taken():
    """keras.callbacks.Callback defines every hook, per batch too, as a no-op: only what
    the subclass overrides is the user's (a stand-in class from a 'keras' module)."""
    hooks = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
             "on_batch_begin", "on_batch_end", "on_train_batch_end", "on_test_begin",
             "on_predict_batch_end"]
    namespace = {name: (lambda self, *a, **k: None) for name in hooks}
    namespace["set_model"] = lambda self, model: setattr(self, "_model", model)
    namespace["model"] = property(lambda self: self._model)
    KerasBase = type("Callback", (), {**namespace, "__module__": "keras.src.callbacks"})
    seen = []

    class Mine(KerasBase):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, self.model))

    x, y = tiny_data()
    model = lamina.Model(TINY)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[Mine()])
    assert seen == [(0, model), (1, model)]


@pytest.mark.parametrize(("callback", "message"), [
    (type("LaminaStyle", (), {"on_epoch_end": lambda self, run, record: None})(),
     r"\(LaminaStyle\)\.on_epoch_end is written as lamina's \(run, record\), but "
     r"LaminaStyle does not subclass lamina.Callback"),
    (type("Batchy", (Callback,), {"on_train_batch_end": lambda self, run: None})(),
     "defines on_train_batch_end, which lamina never calls"),
    (type("Typo", (), {"on_epoch_ends": lambda self, epoch, logs: None,
                       "on_train_begin": lambda self, logs: None})(),
     "defines on_epoch_ends, which is not a hook lamina calls; did you mean on_epoch_end?"),
    (type("ReadOnly", (), {"on_epoch_end": lambda self, epoch, logs: None,
                           "model": property(lambda self: None)})(),
     r"could not be given the model \(self.model, as Keras gives it\)"),
])
def test_more_callback_mistakes_are_refused_before_training(callback, message):
    x, y = tiny_data()
    model = lamina.Model(TINY)
    with pytest.raises(TypeError, match=message):
        model.fit(x, y, verbose=0, callbacks=[callback])
    assert model.history == [] and model._session is None


def test_callbacks_none_and_numpy_verbose_are_accepted():
    x, y = tiny_data()
    history = lamina.Model(TINY).fit(x, y, epochs=1, callbacks=None, verbose=np.int64(0))
    assert len(history) == 1


def test_set_weights_refuses_values_float32_cannot_hold_and_survives_aliasing():
    model = lamina.Model(TINY)
    weights = model.get_weights()
    with pytest.raises(lamina.InputError, match=r"'dense_1.b' holds values beyond float32's "
                                                r"range .*get_weights\(\) returns every name"):
        model.set_weights({**weights, "dense_1.b": np.full(10, 1e300)})
    live = model.network.params()  # the network's own arrays, swapped
    W, b = live["dense_1.W"].copy(), live["dense_1.b"].copy()
    model.set_weights({"dense_1.W": live["dense_1.W"] * 0 + 1, "dense_1.b": live["dense_1.W"][0]})
    np.testing.assert_array_equal(model.get_weights()["dense_1.W"], np.ones_like(W))
    np.testing.assert_array_equal(model.get_weights()["dense_1.b"], W[0])
    assert not np.array_equal(b, W[0])


def test_fit_settings_apply_to_their_call_only():
    x, y = tiny_data()
    model = lamina.Model(TINY)
    first = model.fit(x, y, epochs=1, validation_split=0.0, shuffle=False, verbose=0)
    with pytest.warns(UserWarning, match="will look better than it is"):
        second = model.fit(x, y, epochs=1, verbose=0)  # the config's split again
    assert "val_loss" not in first.history and "val_loss" in second.history
    assert model.config.training.shuffle is True


def test_no_warning_when_nothing_is_validated_and_one_for_a_loaded_model(tmp_path):
    x, y = tiny_data()
    model = lamina.Model(TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, epochs=1, validation_split=0.0, verbose=0)
        model.fit(x[:30], y[:30], epochs=1, validation_split=0.0, verbose=0)
    with pytest.warns(UserWarning, match="held out were trained on before"):
        model.fit(x[:30], y[:30], epochs=1, verbose=0, validation_split=0.2)
    model.save(tmp_path / "m")
    loaded = lamina.Model.load(tmp_path / "m")
    with pytest.warns(UserWarning, match="validation split for this loaded model: the split "
                                         "it was trained with is not stored"):
        loaded.fit(x, y, epochs=1, verbose=0)


def test_an_interrupted_fit_says_the_weights_are_part_way(monkeypatch):
    from lamina.training import trainer

    x, y = tiny_data()
    model = lamina.Model(TINY)
    model.fit(x, y, epochs=1, verbose=0)
    real, calls = trainer.train_batch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=1, verbose=0)
    assert model.weights == "epoch 1, then part of epoch 2 (fit() stopped)"


def test_summary_rows_count_every_value_as_the_totals_do():
    text = lamina.Model("residual_cnn").summary(print_fn=None)
    assert "residual_1   residual   (16, 14, 14)   2,368" in text  # 2,336 + 32 statistics
    assert "Total params: 10,378" in text


def test_overwrite_through_a_symlink_writes_the_folder_it_names(tmp_path):
    x, y = tiny_data()
    model = lamina.Model(TINY)
    model.save(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "link", overwrite=True)
    assert (tmp_path / "link").is_symlink()
    assert lamina.Model.load(tmp_path / "real").weights == "epoch 1 (last)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


# -- regression: value losses ---------------------------------------------------------
def regressor(loss="mse", outputs=1, **settings):
    return lamina.Model({
        "model": {"input_shape": [1, 4, 4], "layers": [
            {"type": "flatten"}, {"type": "dense", "units": 8}, {"type": "tanh"},
            {"type": "dense", "units": outputs}]},
        "loss": {"type": loss}, "optimizer": {"type": "adam", "lr": 0.02},
        "training": {"epochs": 20, "batch_size": 16, **settings}}, seed=0)


def linear_problem(n=200, outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 4, 4)).astype(np.float32)
    w = rng.normal(size=(16, outputs)) / 4
    return x, x.reshape(n, 16) @ w + 0.05 * rng.normal(size=(n, outputs))


def test_fit_and_evaluate_a_regression():
    x, y = linear_problem()
    model = regressor()
    history = model.fit(x, y[:, 0], verbose=0)  # (N,) for the one output
    assert set(history.history) == {"loss", "val_loss", "lr", "seconds"}  # no accuracy
    assert all(r["train_accuracy"] is None and r["val_accuracy"] is None for r in history)
    assert history.history["loss"][-1] < history.history["loss"][0] / 5
    report = model.evaluate(x, y)  # (N, 1) is the same targets
    assert set(report) == {"weights", "samples", "loss", "mse", "mae"}
    predictions = model.predict(x)
    assert predictions.shape == (200, 1)
    error = predictions.astype(np.float64) - y
    assert report["samples"] == 200 and report["weights"] == "epoch 20 (last)"
    assert report["mse"] == pytest.approx(np.mean(error ** 2), rel=1e-6)
    assert report["mae"] == pytest.approx(np.mean(np.abs(error)), rel=1e-6)
    assert report["loss"] == pytest.approx(report["mse"], rel=1e-5)  # mse's loss is the MSE
    assert report["mse"] < 0.1 * np.var(y)  # it learnt the linear map
    assert model.evaluate(x, y[:, 0]) == report


def test_a_regression_of_several_outputs_trains_with_train_step_and_validation_data():
    x, y = linear_problem(outputs=3)
    model = regressor(outputs=3)
    before = model.evaluate(x[150:], y[150:])["mse"]
    losses = [model.train_step(x[i:i + 25], y[i:i + 25]) for i in range(0, 150, 25)]
    assert all(isinstance(loss, float) for loss in losses)
    history = model.fit(x[:150], y[:150], epochs=3, validation_data=(x[150:], y[150:]),
                        verbose=0)
    assert history[-1]["val_loss"] == pytest.approx(model.evaluate(x[150:], y[150:])["loss"])
    assert history[-1]["val_loss"] < before


def test_binary_cross_entropy_fits_labels_and_evaluates_probabilities():
    x, y = linear_problem()
    labels = (y[:, 0] > 0).astype(int)  # 0/1 labels of one sigmoid output
    model = regressor("binary_cross_entropy")
    model.fit(x, labels, verbose=0, validation_split=0.0)
    p = model.predict(x)
    assert p.shape == (200, 1) and p.min() >= 0 and p.max() <= 1
    assert np.mean((p[:, 0] > 0.5) == labels) > 0.9
    report = model.evaluate(x, labels)
    assert report["mae"] == pytest.approx(np.mean(np.abs(p[:, 0] - labels)), rel=1e-6)
    assert report["mse"] == pytest.approx(np.mean((p[:, 0] - labels) ** 2), rel=1e-6)
    assert report["loss"] > report["mse"]  # the cross-entropy, not the squared error


def test_a_saved_regression_loads_and_evaluates_the_same(tmp_path):
    x, y = linear_problem()
    model = regressor()
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "reg")
    again = lamina.Model.load(tmp_path / "reg")
    assert again.history == model.history and again.history[0]["train_accuracy"] is None
    assert again.evaluate(x, y) == model.evaluate(x, y)


def test_a_keras_style_callback_gets_no_accuracy_from_a_value_loss():
    seen = []

    class Logs:
        def on_epoch_end(self, epoch, logs=None):
            seen.append(sorted(logs))

    x, y = linear_problem(40)
    regressor().fit(x, y, epochs=1, callbacks=[Logs()], verbose=0)
    assert seen == [["loss", "lr", "seconds", "val_loss"]]


@pytest.mark.parametrize(("model", "y", "message"), [
    (lambda: lamina.Model(TINY), np.linspace(0, 1, 60),
     "y holds real numbers \\(float64\\), not class indices; this model's loss, "
     "softmax_cross_entropy, is a classification loss, taking class indices 0 to 9; for "
     "real-valued targets give the model a value loss \\(the registered ones: .*mse.*\\), "
     "such as \"loss\": {\"type\": \"mse\"}"),
    (lambda: lamina.Model(TINY), np.full((60, 10), 0.5),
     "y has shape \\(60, 10\\): rows of real numbers, not one-hot rows; this model's loss, "
     "softmax_cross_entropy, is a classification loss"),
    (lambda: regressor(outputs=3), np.arange(60) % 3,
     "y: this model's loss, mse, expects targets as rows of finite numbers, shape \\(60, 3\\); "
     "received class indices .*one-hot them with np.eye\\(3\\)\\[y\\] if you mean to regress "
     "onto one-hot rows"),
    (lambda: regressor(outputs=3), np.zeros(60),
     "received a 1-D array, one value per sample, for 3 outputs; pass rows \\(60, 3\\)"),
    (lambda: regressor(), np.zeros(59), "y has shape \\(59,\\); pass one row of targets per "
                                        "sample of x, shape \\(60, 1\\) or \\(60,\\)"),
    (lambda: regressor(), np.full(60, np.nan), "NaN or infinite values"),
    (lambda: regressor("binary_cross_entropy"), np.linspace(-1, 1, 60),
     "rows of numbers in \\[0, 1\\] .*received values from -1 to 1, outside \\[0, 1\\]"),
])
def test_targets_of_the_wrong_kind_are_refused_before_anything_runs(model, y, message):
    model = model()
    x = np.zeros((60, 1, 4, 4) if model.config.input_shape[-1] == 4 else (60, 1, 8, 8),
                 np.float32)
    for call in (lambda: model.fit(x, y, verbose=0), lambda: model.train_step(x, y),
                 lambda: model.evaluate(x, y)):
        with pytest.raises(lamina.InputError, match=message):
            call()
    assert model._session is None and model.weights == "initial"  # nothing was built


def test_a_value_loss_has_no_classes_to_predict_or_name():
    model = regressor(outputs=2)
    x, y = linear_problem(10, outputs=2)
    with pytest.raises(lamina.InputError, match="predict_classes\\(\\) picks the most probable "
                                                "class, and this model's loss, mse, is a value "
                                                "loss.*use predict\\(x\\)"):
        model.predict_classes(x)
    with pytest.raises(lamina.InputError, match="class_names names the classes of a "
                                                "classification loss"):
        model.evaluate(x, y, class_names=["a", "b"])
