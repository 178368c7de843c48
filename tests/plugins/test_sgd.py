"""Known values of the sgd optimizer, computed by hand, and its state round trip."""

import numpy as np
import pytest
from pydantic import ValidationError

from lamina import StateError
from lamina.plugins.sgd import SGD, lamina_register_optimizers


def _params(dtype=np.float32):
    return {"dense.W": np.array([[1.0, -2.0], [0.5, 0.0]], dtype=dtype),
            "dense.b": np.array([0.25, -0.75], dtype=dtype)}


def _grads(dtype=np.float32):
    return {"dense.W": np.array([[0.5, 1.0], [-2.0, 4.0]], dtype=dtype),
            "dense.b": np.array([1.0, -1.0], dtype=dtype)}


def test_registered_under_its_name():
    assert lamina_register_optimizers() == [SGD]
    assert SGD.name == "sgd"


def test_plain_step_known_values_in_place_and_grads_untouched():
    params, grads = _params(), _grads()
    W = params["dense.W"]
    grads_before = {k: g.copy() for k, g in grads.items()}
    SGD(lr=0.1).step(params, grads)
    assert params["dense.W"] is W
    np.testing.assert_allclose(W, [[0.95, -2.1], [0.7, -0.4]], rtol=1e-6)
    np.testing.assert_allclose(params["dense.b"], [0.15, -0.65], rtol=1e-6)
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads_before[k])


def test_momentum_two_steps_known_values():
    # b1 = g = 2, p1 = 1 - 0.1*2 = 0.8; b2 = 0.9*2 + 1 = 2.8, p2 = 0.8 - 0.28 = 0.52
    p = {"w": np.array([1.0])}
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step(p, {"w": np.array([2.0])})
    np.testing.assert_allclose(p["w"], [0.8], rtol=1e-12)
    opt.step(p, {"w": np.array([1.0])})
    np.testing.assert_allclose(p["w"], [0.52], rtol=1e-12)
    np.testing.assert_allclose(opt.slots["momentum"]["w"], [2.8], rtol=1e-12)


def test_nesterov_two_steps_known_values():
    # b1 = 2, d1 = 2 + 0.9*2 = 3.8, p1 = 1 - 0.38 = 0.62
    # b2 = 0.9*2 + 1 = 2.8, d2 = 1 + 0.9*2.8 = 3.52, p2 = 0.62 - 0.352 = 0.268
    p = {"w": np.array([1.0])}
    opt = SGD(lr=0.1, momentum=0.9, nesterov=True)
    opt.step(p, {"w": np.array([2.0])})
    np.testing.assert_allclose(p["w"], [0.62], rtol=1e-12)
    opt.step(p, {"w": np.array([1.0])})
    np.testing.assert_allclose(p["w"], [0.268], rtol=1e-12)


def test_weight_decay_is_l2_added_to_the_gradient():
    # g' = 0.5 + 0.1*2 = 0.7, p = 2 - 0.1*0.7 = 1.93; a zero gradient still decays p
    p = {"w": np.array([2.0, 2.0])}
    SGD(lr=0.1, weight_decay=0.1).step(p, {"w": np.array([0.5, 0.0])})
    np.testing.assert_allclose(p["w"], [1.93, 1.98], rtol=1e-12)


def test_weight_decay_goes_through_the_momentum():
    p = {"w": np.array([2.0])}
    opt = SGD(lr=0.1, momentum=0.5, weight_decay=0.1)
    opt.step(p, {"w": np.array([0.5])})
    np.testing.assert_allclose(opt.slots["momentum"]["w"], [0.7], rtol=1e-12)
    # g' = 0.5 + 0.1*1.93 = 0.693, b = 0.35 + 0.693 = 1.043, p = 1.93 - 0.1043
    opt.step(p, {"w": np.array([0.5])})
    np.testing.assert_allclose(p["w"], [1.8257], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("settings", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True},
                                      {"momentum": 0.5, "weight_decay": 1e-2}])
def test_dtype_kept_and_every_param_with_nonzero_grad_moves(dtype, settings):
    params, grads = _params(dtype), _grads(dtype)
    before = {k: p.copy() for k, p in params.items()}
    opt = SGD(lr=0.05, **settings)
    opt.step(params, grads)
    for k, p in params.items():
        assert p.dtype == dtype
        assert np.all(p != before[k])
    for arrays in opt.slots.values():
        assert all(a.dtype == dtype for a in arrays.values())


@pytest.mark.parametrize("settings", [{}, {"momentum": 0.9, "nesterov": True}])
def test_state_dict_round_trip_is_bit_identical(settings):
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)).astype(np.float32),
              "b": rng.standard_normal(4).astype(np.float32)}
    grads = [{k: rng.standard_normal(p.shape).astype(np.float32) for k, p in params.items()}
             for _ in range(5)]
    opt = SGD(lr=0.05, weight_decay=1e-3, **settings)
    for g in grads[:3]:
        opt.step(params, g)
    saved = {k: np.array(v) for k, v in opt.state_dict().items()}
    resumed_params = {k: p.copy() for k, p in params.items()}
    resumed = SGD(lr=0.05, weight_decay=1e-3, **settings)
    resumed.load_state_dict(saved)
    for g in grads[3:]:
        opt.step(params, g)
        resumed.step(resumed_params, g)
    for k in params:
        np.testing.assert_array_equal(resumed_params[k], params[k])


def test_state_dict_holds_momentum_and_lr():
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step({"w": np.ones(2)}, {"w": np.ones(2)})
    assert set(opt.state_dict()) == {"momentum/w", "#steps", "#lr"}
    assert set(SGD(lr=0.1).state_dict()) == {"#steps", "#lr"}


def test_nesterov_without_momentum_is_a_validation_error():
    with pytest.raises(ValidationError, match="nesterov=true needs momentum > 0"):
        SGD(lr=0.1, nesterov=True)


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"momentum": 1.0}, {"momentum": -0.1},
                                 {"weight_decay": -1.0}, {"lr": 0.1, "betas": 0.9}])
def test_config_bounds(bad):
    with pytest.raises(ValidationError):
        SGD(**bad)


def test_loading_state_of_other_settings_or_shapes_is_a_state_error():
    with pytest.raises(StateError, match="unexpected 'momentum/w'"):
        SGD(lr=0.1).load_state_dict({"momentum/w": np.zeros(2), "#steps": np.asarray(1),
                                     "#lr": np.asarray(0.1)})
    with pytest.raises(StateError, match="no 'momentum' arrays after 3 steps"):
        SGD(lr=0.1, momentum=0.9).load_state_dict({"#steps": np.asarray(3),
                                                   "#lr": np.asarray(0.1)})
    opt = SGD(lr=0.1, momentum=0.9)
    opt.load_state_dict({"momentum/w": np.zeros(3), "#steps": np.asarray(1),
                         "#lr": np.asarray(0.1)})
    with pytest.raises(StateError, match="shape"):
        opt.step({"w": np.ones(2)}, {"w": np.ones(2)})
