import numpy as np
import pytest
from pydantic import ValidationError

from lamina import BackwardBeforeForwardError, ShapeError
from lamina.plugins import dense
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(units=3, input_shape=(2,), dtype=np.float32, **settings):
    layer = dense.Dense(units=units, **settings)
    layer.build(input_shape, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_through_the_layer_hook():
    assert dense.lamina_register_layers() == [dense.Dense]


def test_hand_worked_forward_and_backward():
    layer = built(units=3, input_shape=(2,))
    layer.params()["W"][...] = [[1, 2, 3], [4, 5, 6]]
    layer.params()["b"][...] = [0.5, -0.5, 1.0]
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(layer.forward(x, training=True), [[9.5, 11.5, 16.0]])
    dx = layer.backward(np.array([[1.0, 0.0, -1.0]], dtype=np.float32))
    np.testing.assert_array_equal(dx, [[-2.0, -2.0]])
    np.testing.assert_array_equal(layer.grads()["W"], [[1, 0, -1], [2, 0, -2]])
    np.testing.assert_array_equal(layer.grads()["b"], [1, 0, -1])


def test_gradients_overwritten_not_accumulated():
    layer = built()
    x = np.ones((2, 2), dtype=np.float32)
    layer.forward(x, training=True)
    layer.backward(np.ones((2, 3), dtype=np.float32))
    first = {k: v.copy() for k, v in layer.grads().items()}
    layer.backward(np.ones((2, 3), dtype=np.float32))
    for key, value in layer.grads().items():
        np.testing.assert_array_equal(value, first[key])


def test_parameter_shapes_and_glorot_bound():
    layer = built(units=10, input_shape=(1600,))
    W = layer.params()["W"]
    assert W.shape == (1600, 10) and layer.params()["b"].shape == (10,)
    assert np.abs(W).max() <= np.sqrt(6 / 1610)
    assert W.size + 10 == 16_010


def test_without_bias_has_no_b():
    layer = built(use_bias=False)
    assert set(layer.params()) == set(layer.grads()) == {"W"}
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    np.testing.assert_allclose(layer.forward(x, training=False), x @ layer.params()["W"])


def test_image_input_rejected_with_flatten_hint():
    message = (
        r"dense expects a flat input \(features,\), received \(64, 5, 5\); "
        r"add a flatten layer before it"
    )
    with pytest.raises(ShapeError, match=message):
        built(units=10, input_shape=(64, 5, 5))


@pytest.mark.parametrize(
    "settings", [{"units": 0}, {"units": True}, {"units": 3, "initializer": "zeros"}]
)
def test_bad_config_rejected(settings):
    with pytest.raises(ValidationError):
        dense.Dense(**settings)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    layer = built(dtype=dtype)
    assert layer.params()["W"].dtype == dtype
    y = layer.forward(np.ones((4, 2), dtype=dtype), training=False)
    assert y.dtype == dtype and layer.backward(np.ones_like(y)).dtype == dtype


@pytest.mark.parametrize("use_bias", [True, False])
def test_gradients_match_finite_differences(use_bias):
    rng = np.random.default_rng(4)
    layer = built(units=4, input_shape=(5,), dtype=np.float64, use_bias=use_bias)
    if use_bias:
        layer.params()["b"][...] = rng.normal(size=4)
    x = rng.normal(size=(3, 5))
    dy = rng.normal(size=(3, 4))
    layer.forward(x, training=True)
    dx = layer.backward(dy)

    def loss():
        return np.sum(layer.forward(x, training=True) * dy)

    assert max_relative_error(dx, numerical_gradient(loss, x)) < 1e-6
    for key, param in layer.params().items():
        assert max_relative_error(layer.grads()[key], numerical_gradient(loss, param)) < 1e-6


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="dense"):
        built().backward(np.ones((1, 3), dtype=np.float32))
