"""Known values of the adagrad optimizer, an independent float64 computation of its rule,
its state round trip and a short training run."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

import lamina
from lamina import StateError
from lamina.plugins.adagrad import Adagrad, lamina_register_optimizers

SETTINGS = [{}, {"initial_accumulator_value": 0.0}, {"initial_accumulator_value": 2.5,
                                                     "epsilon": 1e-3}]


def _reference(p, gs, lr, initial_accumulator_value=0.1, epsilon=1e-7):
    """One scalar, in Python floats, as Keras 3's Adagrad.update_step writes the rule."""
    a = initial_accumulator_value
    for g in gs:
        a += g * g
        p -= lr * g / math.sqrt(a + epsilon)
    return p


def test_registered_under_its_name_with_keras_defaults():
    assert lamina_register_optimizers() == [Adagrad]
    opt = Adagrad()
    assert (opt.name, opt.lr) == ("adagrad", 1e-3)
    assert (opt.config.initial_accumulator_value, opt.config.epsilon) == (0.1, 1e-7)


def test_two_steps_by_hand():
    # a = 0.5 + 4 = 4.5, d = 0.1 * 2 / sqrt(4.501) = 0.09427043, p = 0.90572957;
    # a = 4.5 + 1 = 5.5, d = -0.1 / sqrt(5.501) = -0.04263627, p = 0.94836584
    p = {"w": np.array([1.0])}
    opt = Adagrad(lr=0.1, initial_accumulator_value=0.5, epsilon=1e-3)
    opt.step(p, {"w": np.array([2.0])})
    assert p["w"][0] == pytest.approx(1 - 0.2 / math.sqrt(4.501), rel=1e-15)
    opt.step(p, {"w": np.array([-1.0])})
    assert p["w"][0] == pytest.approx(0.94836584, abs=5e-9)
    np.testing.assert_array_equal(opt.slots["accumulator"]["w"], [5.5])
    assert opt.counters == {"steps": 2}


def test_the_accumulator_starts_at_its_value_for_each_parameter_and_a_zero_gradient_waits():
    # each parameter's accumulator starts at the setting, the first time the parameter
    # is stepped; with g = 0 the accumulator and the parameter stay as they are
    opt = Adagrad(lr=0.1, initial_accumulator_value=0.25)
    p = {"w": np.array([1.0, 1.0])}
    opt.step(p, {"w": np.array([0.0, 1.5])})
    np.testing.assert_array_equal(opt.slots["accumulator"]["w"], [0.25, 2.5])
    assert p["w"][0] == 1.0
    assert p["w"][1] == pytest.approx(1 - 0.15 / math.sqrt(2.5000001), rel=1e-15)


@pytest.mark.parametrize("settings", SETTINGS)
def test_six_steps_match_an_independent_float64_computation(settings):
    rng = np.random.default_rng(4)
    start = rng.standard_normal((3, 4))
    gs = [rng.standard_normal((3, 4)) * scale for scale in (1.0, 3.0, 0.1, 1.0, 10.0, 0.5)]
    params = {"dense_1.W": start.copy()}
    opt = Adagrad(lr=0.05, **settings)
    for g in gs:
        opt.step(params, {"dense_1.W": g})
    expected = [[_reference(start[i, j], [g[i, j] for g in gs], 0.05, **settings)
                 for j in range(4)] for i in range(3)]
    np.testing.assert_allclose(params["dense_1.W"], expected, rtol=1e-13, atol=1e-15)


def test_steps_shrink_as_the_squared_gradients_add_up():
    # constant g and a = 0: the t-th step is lr * g / sqrt(t g^2 + eps), about lr / sqrt(t)
    p = {"w": np.array([0.0])}
    opt = Adagrad(lr=1.0, initial_accumulator_value=0.0)
    moves = []
    for _ in range(4):
        before = p["w"][0]
        opt.step(p, {"w": np.array([3.0])})
        moves.append(before - p["w"][0])
    np.testing.assert_allclose(moves, [1 / math.sqrt(t) for t in (1, 2, 3, 4)], rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept_in_place_grads_untouched_every_param_moves(dtype):
    rng = np.random.default_rng(1)
    params = {"conv.W": rng.standard_normal((2, 1, 3, 3)).astype(dtype),
              "conv.b": rng.standard_normal(2).astype(dtype)}
    grads = {k: rng.standard_normal(p.shape).astype(dtype) for k, p in params.items()}
    before = {k: p.copy() for k, p in params.items()}
    grads_before = {k: g.copy() for k, g in grads.items()}
    arrays = dict(params)
    opt = Adagrad(lr=1e-2)
    opt.step(params, grads)
    for k, p in params.items():
        assert p is arrays[k] and p.dtype == dtype
        assert np.all(p != before[k])
        np.testing.assert_array_equal(grads[k], grads_before[k])
        assert opt.slots["accumulator"][k].dtype == dtype


@pytest.mark.parametrize("settings", SETTINGS)
def test_state_dict_round_trip_is_bit_identical(settings):
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)).astype(np.float32),
              "b": rng.standard_normal(4).astype(np.float32)}
    grads = [{k: rng.standard_normal(p.shape).astype(np.float32) for k, p in params.items()}
             for _ in range(6)]
    opt = Adagrad(lr=3e-2, **settings)
    for g in grads[:3]:
        opt.step(params, g)
    saved = {k: np.array(v) for k, v in opt.state_dict().items()}
    assert set(saved) == {"accumulator/a", "accumulator/b", "#steps", "#lr"}
    resumed_params = {k: p.copy() for k, p in params.items()}
    resumed = Adagrad(lr=3e-2, **settings)
    resumed.load_state_dict(saved)
    for g in grads[3:]:
        opt.step(params, g)
        resumed.step(resumed_params, g)
    for k in params:
        np.testing.assert_array_equal(resumed_params[k], params[k])


def test_a_loaded_accumulator_is_not_reset_to_the_starting_value():
    opt = Adagrad(lr=0.1, initial_accumulator_value=0.1)
    opt.load_state_dict({"accumulator/w": np.array([8.0]), "#steps": np.asarray(2),
                         "#lr": np.asarray(0.1)})
    p = {"w": np.array([1.0])}
    opt.step(p, {"w": np.array([1.0])})
    np.testing.assert_array_equal(opt.slots["accumulator"]["w"], [9.0])
    assert p["w"][0] == pytest.approx(1 - 0.1 / math.sqrt(9.0000001), rel=1e-15)


def test_a_state_for_other_parameters_is_refused():
    opt = Adagrad()
    opt.load_state_dict({"accumulator/w": np.zeros(2), "#steps": np.asarray(1),
                         "#lr": np.asarray(0.1)})
    params = {"w": np.ones(2), "u": np.ones(3)}
    with pytest.raises(StateError, match=r"missing \['u'\]"):
        opt.step(params, {k: np.ones_like(p) for k, p in params.items()})
    assert all(np.all(p == 1) for p in params.values())


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"initial_accumulator_value": -0.1},
                                 {"initial_accumulator_value": float("inf")},
                                 {"epsilon": 0.0}, {"eps": 1e-10}, {"lr_decay": 0.1}])
def test_config_bounds(bad):
    with pytest.raises(ValidationError):
        Adagrad(**bad)


def test_a_short_training_run_lowers_the_loss():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 1, 4, 4)).astype(np.float32)
    y = (x.reshape(256, -1) @ rng.standard_normal((16, 3))).argmax(axis=1)
    model = lamina.Model({
        "model": {"input_shape": [1, 4, 4], "layers": [{"type": "flatten"},
                                                       {"type": "dense", "units": 16},
                                                       {"type": "relu"},
                                                       {"type": "dense", "units": 3}]},
        "loss": {"type": "softmax_cross_entropy"},
        "optimizer": {"type": "adagrad", "lr": 0.1},
    }, seed=0)
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=5, batch_size=32, validation_split=0, verbose=0)
    assert model.evaluate(x, y)["loss"] < 0.5 * before
