"""Known values of the rmsprop optimizer, an independent float64 computation of its rule,
its state round trip and a short training run."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

import lamina
from lamina import StateError
from lamina.plugins.rmsprop import RMSprop, lamina_register_optimizers
from lamina.plugins.sgd import SGD

SETTINGS = [{}, {"momentum": 0.9}, {"centered": True}, {"centered": True, "momentum": 0.5},
            {"rho": 0.5, "epsilon": 1e-3}]


def _reference(p, gs, lr, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    """One scalar, in Python floats, as Keras 3's RMSprop.update_step writes the rule."""
    v = m = b = 0.0
    for g in gs:
        v = rho * v + (1 - rho) * g * g
        denominator = v + epsilon
        if centered:
            m = rho * m + (1 - rho) * g
            denominator = v - m * m + epsilon
        increment = lr * g / math.sqrt(denominator)
        if momentum > 0:
            b = momentum * b + increment
            p -= b
        else:
            p -= increment
    return p


def test_registered_under_its_name_with_keras_defaults():
    assert lamina_register_optimizers() == [RMSprop]
    opt = RMSprop()
    assert (opt.name, opt.lr) == ("rmsprop", 1e-3)
    c = opt.config
    assert (c.rho, c.momentum, c.epsilon, c.centered) == (0.9, 0.0, 1e-7, False)


def test_keras_documented_example():
    # Keras's RMSprop docstring: lr 0.1 on loss p**2 / 2 from p = 10 ends at 9.683772
    p = {"w": np.array([10.0], np.float32)}
    RMSprop(lr=0.1).step(p, {"w": p["w"].copy()})
    assert p["w"][0] == pytest.approx(9.683772, abs=1e-6)


def test_two_steps_by_hand():
    # v = 0.5 * 4 = 2, d = 0.1 * 2 / sqrt(2.001) = 0.14138601, p = 0.85861399;
    # v = 1 + 0.5 * 1 = 1.5, d = -0.1 / sqrt(1.501) = -0.08162246, p = 0.94023644
    p = {"w": np.array([1.0])}
    opt = RMSprop(lr=0.1, rho=0.5, epsilon=1e-3)
    opt.step(p, {"w": np.array([2.0])})
    assert p["w"][0] == pytest.approx(1 - 0.2 / math.sqrt(2.001), rel=1e-15)
    opt.step(p, {"w": np.array([-1.0])})
    assert p["w"][0] == pytest.approx(0.94023644, abs=5e-9)
    np.testing.assert_allclose(opt.slots["v"]["w"], [1.5], rtol=1e-15)
    assert opt.counters == {"steps": 2}


@pytest.mark.parametrize("settings", SETTINGS)
def test_six_steps_match_an_independent_float64_computation(settings):
    rng = np.random.default_rng(4)
    start = rng.standard_normal((3, 4))
    gs = [rng.standard_normal((3, 4)) * scale for scale in (1.0, 3.0, 0.1, 1.0, 10.0, 0.5)]
    params = {"dense_1.W": start.copy()}
    opt = RMSprop(lr=0.01, **settings)
    for g in gs:
        opt.step(params, {"dense_1.W": g})
    expected = [[_reference(start[i, j], [g[i, j] for g in gs], 0.01, **settings)
                 for j in range(4)] for i in range(3)]
    np.testing.assert_allclose(params["dense_1.W"], expected, rtol=1e-12, atol=1e-15)


def test_the_slots_follow_the_settings():
    assert RMSprop().state_slots() == ("v",)
    assert RMSprop(centered=True).state_slots() == ("v", "m")
    assert RMSprop(momentum=0.9, centered=True).state_slots() == ("v", "m", "momentum")
    opt = RMSprop(momentum=0.9)
    opt.step({"w": np.ones(2)}, {"w": np.ones(2)})
    assert set(opt.state_dict()) == {"v/w", "momentum/w", "#steps", "#lr"}


def test_the_centered_variance_is_floored_at_zero():
    # In float32 a constant gradient drives v - m**2 to 0, and rounding below -epsilon
    # (where the square root would give NaN); the floor keeps every step finite.
    p = {"w": np.zeros(1000, np.float32)}
    g = {"w": np.full(1000, 10.0, np.float32) * np.linspace(1, 1.001, 1000, dtype=np.float32)}
    opt = RMSprop(lr=1e-6, centered=True)
    for _ in range(300):
        opt.step(p, g)
    assert np.all(np.isfinite(p["w"]))
    # a state with m**2 > v (only rounding makes one): the variance counts as 0
    opt = RMSprop(lr=0.1, rho=0.5, centered=True)
    opt.load_state_dict({"v/w": np.zeros(1), "m/w": np.full(1, 4.0), "#steps": np.asarray(1),
                         "#lr": np.asarray(0.1)})
    p = {"w": np.zeros(1)}
    opt.step(p, {"w": np.ones(1)})  # v = 0.5, m = 2.5: v - m**2 < 0
    assert p["w"][0] == pytest.approx(-0.1 / math.sqrt(1e-7), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("settings", SETTINGS)
def test_dtype_kept_in_place_grads_untouched_every_param_moves(dtype, settings):
    rng = np.random.default_rng(1)
    params = {"conv.W": rng.standard_normal((2, 1, 3, 3)).astype(dtype),
              "conv.b": rng.standard_normal(2).astype(dtype)}
    grads = {k: rng.standard_normal(p.shape).astype(dtype) for k, p in params.items()}
    before = {k: p.copy() for k, p in params.items()}
    grads_before = {k: g.copy() for k, g in grads.items()}
    arrays = dict(params)
    opt = RMSprop(lr=1e-3, **settings)
    opt.step(params, grads)
    for k, p in params.items():
        assert p is arrays[k] and p.dtype == dtype
        assert np.all(p != before[k])
        np.testing.assert_array_equal(grads[k], grads_before[k])
        assert all(arrays_[k].dtype == dtype for arrays_ in opt.slots.values())


@pytest.mark.parametrize("settings", SETTINGS)
def test_state_dict_round_trip_is_bit_identical(settings):
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)).astype(np.float32),
              "b": rng.standard_normal(4).astype(np.float32)}
    grads = [{k: rng.standard_normal(p.shape).astype(np.float32) for k, p in params.items()}
             for _ in range(6)]
    opt = RMSprop(lr=3e-3, **settings)
    for g in grads[:3]:
        opt.step(params, g)
    saved = {k: np.array(v) for k, v in opt.state_dict().items()}
    slots = opt.state_slots()
    assert set(saved) == {f"{s}/{k}" for s in slots for k in params} | {"#steps", "#lr"}
    resumed_params = {k: p.copy() for k, p in params.items()}
    resumed = RMSprop(lr=3e-3, **settings)
    resumed.load_state_dict(saved)
    for g in grads[3:]:
        opt.step(params, g)
        resumed.step(resumed_params, g)
    for k in params:
        np.testing.assert_array_equal(resumed_params[k], params[k])


def test_a_state_of_other_settings_is_refused():
    plain = RMSprop(lr=0.1)
    plain.step({"w": np.ones(2)}, {"w": np.ones(2)})
    with pytest.raises(StateError, match=r"slots cover different parameters: v \['w'\]; m \[\]"):
        RMSprop(lr=0.1, centered=True).load_state_dict(plain.state_dict())
    with pytest.raises(StateError, match="unexpected 'v/w'"):
        SGD(lr=0.1).load_state_dict(plain.state_dict())


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"rho": 1.0}, {"rho": -0.1}, {"momentum": 1.0},
                                 {"momentum": -0.5}, {"epsilon": 0.0},
                                 {"epsilon": float("inf")}, {"alpha": 0.99}, {"eps": 1e-8}])
def test_config_bounds(bad):
    with pytest.raises(ValidationError):
        RMSprop(**bad)


def test_pytorch_s_names_are_pointed_to_lamina_s():
    config = {"model": {"input_shape": [4], "layers": [{"type": "dense", "units": 2}]},
              "loss": {"type": "softmax_cross_entropy"},
              "optimizer": {"type": "rmsprop", "alpha": 0.99, "eps": 1e-8}}
    with pytest.raises(lamina.ConfigError) as info:
        lamina.Model(config)
    known = "known keys: lr, rho, momentum, epsilon, centered"
    assert [str(i) for i in info.value.issues] == [
        f"optimizer (rmsprop).alpha: unknown key 'alpha'; lamina calls it 'rho'; {known}",
        f"optimizer (rmsprop).eps: unknown key 'eps'; lamina calls it 'epsilon'; {known}"]


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
        "optimizer": {"type": "rmsprop", "lr": 3e-3, "momentum": 0.5, "centered": True},
    }, seed=0)
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=5, batch_size=32, validation_split=0, verbose=0)
    assert model.evaluate(x, y)["loss"] < 0.5 * before
