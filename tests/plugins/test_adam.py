"""Known values of the adam optimizer, computed by hand, and its state round trip."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from lamina import StateError
from lamina.plugins.adam import Adam, lamina_register_optimizers


def _reference(p, gs, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Scalar Adam as the paper's section 2 writes it, with corrected moments."""
    m = v = 0.0
    for t, g in enumerate(gs, start=1):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        m_hat, v_hat = m / (1 - beta_1**t), v / (1 - beta_2**t)
        # Keras adds epsilon to the uncorrected sqrt(v): epsilon_hat = epsilon / sqrt(1 - b2^t)
        p -= lr * m_hat / (math.sqrt(v_hat) + epsilon / math.sqrt(1 - beta_2**t))
    return p


def test_registered_under_its_name_with_keras_defaults():
    assert lamina_register_optimizers() == [Adam]
    opt = Adam()
    assert (opt.name, opt.lr) == ("adam", 1e-3)
    c = opt.config
    assert (c.beta_1, c.beta_2, c.epsilon, c.weight_decay) == (0.9, 0.999, 1e-7, 0.0)


def test_first_step_moves_each_param_by_lr_times_sign_of_grad():
    params = {"w": np.array([1.0, 1.0, 1.0, 1.0])}
    grads = {"w": np.array([2.0, -0.5, 0.05, -40.0])}
    Adam(lr=0.1).step(params, grads)
    np.testing.assert_allclose(params["w"], [0.9, 1.1, 0.9, 1.1], rtol=1e-4)
    # one step by hand for g = 2: m = 0.2, v = 0.004, alpha = 0.1 * sqrt(0.001) / 0.1
    expected = 1.0 - math.sqrt(0.001) * 0.2 / (math.sqrt(0.004) + 1e-7)
    assert params["w"][0] == pytest.approx(expected, rel=1e-14)


def test_three_steps_match_the_textbook_form():
    gs = [2.0, -1.0, 0.5]
    p = {"w": np.array([1.0])}
    opt = Adam(lr=0.01, beta_1=0.8, beta_2=0.99)
    for g in gs:
        opt.step(p, {"w": np.array([g])})
    assert p["w"][0] == pytest.approx(_reference(1.0, gs, 0.01, 0.8, 0.99), rel=1e-13)
    assert opt.counters == {"steps": 3}


def test_weight_decay_is_decoupled_from_the_moments():
    # zero gradient: m = v = 0, so only the decay acts: p = 2 * (1 - 0.1 * 0.5)
    p = {"w": np.array([2.0])}
    opt = Adam(lr=0.1, weight_decay=0.5)
    opt.step(p, {"w": np.array([0.0])})
    assert p["w"][0] == pytest.approx(1.9, rel=1e-14)
    assert opt.slots["m"]["w"][0] == 0.0 and opt.slots["v"]["w"][0] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept_in_place_grads_untouched_every_param_moves(dtype):
    rng = np.random.default_rng(1)
    params = {"conv.W": rng.standard_normal((2, 1, 3, 3)).astype(dtype),
              "conv.b": rng.standard_normal(2).astype(dtype)}
    grads = {k: rng.standard_normal(p.shape).astype(dtype) for k, p in params.items()}
    before = {k: p.copy() for k, p in params.items()}
    grads_before = {k: g.copy() for k, g in grads.items()}
    arrays = dict(params)
    opt = Adam(lr=1e-3, weight_decay=1e-2)
    opt.step(params, grads)
    for k, p in params.items():
        assert p is arrays[k] and p.dtype == dtype
        assert np.all(p != before[k])
        np.testing.assert_array_equal(grads[k], grads_before[k])
        assert opt.slots["m"][k].dtype == dtype and opt.slots["v"][k].dtype == dtype
        np.testing.assert_allclose(before[k] - p, 1e-3 * np.sign(grads[k]) + 1e-5 * before[k],
                                   rtol=1e-3)


def test_state_dict_round_trip_is_bit_identical():
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)).astype(np.float32),
              "b": rng.standard_normal(4).astype(np.float32)}
    grads = [{k: rng.standard_normal(p.shape).astype(np.float32) for k, p in params.items()}
             for _ in range(5)]
    opt = Adam(lr=3e-3, weight_decay=1e-3)
    for g in grads[:3]:
        opt.step(params, g)
    saved = {k: np.array(v) for k, v in opt.state_dict().items()}
    assert set(saved) == {"m/a", "m/b", "v/a", "v/b", "#steps", "#lr"}
    assert int(saved["#steps"]) == 3
    resumed_params = {k: p.copy() for k, p in params.items()}
    resumed = Adam(lr=3e-3, weight_decay=1e-3)
    resumed.load_state_dict(saved)
    for g in grads[3:]:
        opt.step(params, g)
        resumed.step(resumed_params, g)
    for k in params:
        np.testing.assert_array_equal(resumed_params[k], params[k])


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"beta_1": 1.0}, {"beta_2": -0.1},
                                 {"epsilon": 0.0}, {"weight_decay": -1.0}, {"eps": 1e-8}])
def test_config_bounds(bad):
    with pytest.raises(ValidationError):
        Adam(**bad)


def test_loading_foreign_or_mismatched_state_is_a_state_error():
    with pytest.raises(StateError, match="unexpected 'momentum/w'"):
        Adam().load_state_dict({"momentum/w": np.zeros(2), "#steps": np.asarray(0),
                                "#lr": np.asarray(0.1)})
    with pytest.raises(StateError, match="missing '#steps'"):
        Adam().load_state_dict({"m/w": np.zeros(2), "v/w": np.zeros(2), "#lr": np.asarray(0.1)})
    with pytest.raises(StateError, match=r"the slots cover different parameters: m \['w'\]; v"):
        Adam().load_state_dict({"m/w": np.zeros(2), "#steps": np.asarray(1),
                                "#lr": np.asarray(0.1)})
    opt = Adam()
    opt.load_state_dict({"m/w": np.zeros(2), "v/w": np.zeros(2, np.float64),
                         "#steps": np.asarray(1), "#lr": np.asarray(0.1)})
    params = {"w": np.ones(2, np.float32)}
    with pytest.raises(StateError, match="float64"):
        opt.step(params, {"w": np.ones(2, np.float32)})
    np.testing.assert_array_equal(params["w"], 1)  # refused before anything changed


def test_a_state_for_other_parameters_is_refused_at_the_step_before_any_update():
    opt = Adam()
    opt.load_state_dict({"m/w": np.zeros(2), "v/w": np.zeros(2), "#steps": np.asarray(4),
                         "#lr": np.asarray(0.1)})
    params = {"w": np.ones(2), "u": np.ones(3)}
    with pytest.raises(StateError, match=r"slot 'm' for other parameters than these: "
                                         r"missing \['u'\]"):
        opt.step(params, {k: np.ones_like(p) for k, p in params.items()})
    assert all(np.all(p == 1) for p in params.values())


def test_loaded_slots_are_checked_even_before_the_first_step():
    opt = Adam()
    opt.load_state_dict({"m/w": np.zeros(3), "v/w": np.zeros(3), "#steps": np.asarray(0),
                         "#lr": np.asarray(0.1)})
    params = {"w": np.ones(2)}
    with pytest.raises(StateError, match=r"slot 'm' of 'w' has shape \(3,\)"):
        opt.step(params, {"w": np.ones(2)})
    np.testing.assert_array_equal(params["w"], 1)
