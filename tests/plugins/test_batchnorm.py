import numpy as np
import pytest
from pydantic import ValidationError

from lamina import BackwardBeforeForwardError, ShapeError
from lamina.plugins import batchnorm
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(input_shape=(1,), dtype=np.float32, **settings):
    layer = batchnorm.BatchNorm(**settings)
    layer.build(input_shape, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_and_flagged_batch_dependent():
    assert batchnorm.lamina_register_layers() == [batchnorm.BatchNorm]
    assert batchnorm.BatchNorm.traits.batch_dependent


def test_params_and_state():
    layer = built((3, 4, 4))
    np.testing.assert_array_equal(layer.params()["gamma"], np.ones(3))
    np.testing.assert_array_equal(layer.params()["beta"], np.zeros(3))
    np.testing.assert_array_equal(layer.state()["running_mean"], np.zeros(3))
    np.testing.assert_array_equal(layer.state()["running_var"], np.ones(3))
    assert set(layer.grads()) == {"gamma", "beta"}
    assert layer.config.momentum == 0.99 and layer.config.epsilon == 1e-3


def test_hand_worked_training_step_and_running_statistics():
    # One feature, batch [1, 5]: mean 3, biased variance 4.
    layer = built((1,), dtype=np.float64)
    y = layer.forward(np.array([[1.0], [5.0]]), training=True)
    np.testing.assert_allclose(y, [[-2 / np.sqrt(4.001)], [2 / np.sqrt(4.001)]], rtol=1e-12)
    np.testing.assert_allclose(layer.state()["running_mean"], [0.99 * 0 + 0.01 * 3])
    np.testing.assert_allclose(layer.state()["running_var"], [0.99 * 1 + 0.01 * 4])
    y_eval = layer.forward(np.array([[1.0]]), training=False)
    np.testing.assert_allclose(y_eval, [[(1 - 0.03) / np.sqrt(1.03 + 0.001)]], rtol=1e-12)


def test_hand_worked_backward():
    # x_hat = [-1, 1] / sqrt(1.001) for the batch [1, 3]; with dy = [1, 0]:
    # dbeta = 1, dgamma = -1/sqrt(1.001), and dx = inv_std * (dy - mean dy - x_hat mean(dy x_hat))
    # = inv_std * ([1, 0] - 0.5 - x_hat * (-0.5 * inv_std)) = inv_std * [0.5, -0.5] * eps / 1.001.
    layer = built((1,), dtype=np.float64)
    layer.forward(np.array([[1.0], [3.0]]), training=True)
    dx = layer.backward(np.array([[1.0], [0.0]]))
    inv_std = 1 / np.sqrt(1.001)
    np.testing.assert_allclose(layer.grads()["beta"], [1.0])
    np.testing.assert_allclose(layer.grads()["gamma"], [-inv_std])
    np.testing.assert_allclose(dx, inv_std * np.array([[0.5], [-0.5]]) * 0.001 / 1.001)


def test_statistics_per_channel_over_batch_and_space():
    rng = np.random.default_rng(1)
    layer = built((3, 4, 5), dtype=np.float64)
    layer.params()["gamma"][...] = [1.0, 2.0, 3.0]
    layer.params()["beta"][...] = [-1.0, 0.0, 4.0]
    offsets = np.array([10.0, -5.0, 0.0]).reshape(1, 3, 1, 1)
    x = rng.normal(size=(6, 3, 4, 5)) * 2 + offsets
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), [-1.0, 0.0, 4.0], atol=1e-12)
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), [1, 2, 3] * np.sqrt(var / (var + 1e-3)))
    np.testing.assert_allclose(layer.state()["running_mean"], 0.01 * x.mean(axis=(0, 2, 3)))


def test_eval_uses_running_statistics_and_is_batch_independent():
    layer = built((2,), dtype=np.float64)
    layer.state()["running_mean"][...] = [1.0, -1.0]
    layer.state()["running_var"][...] = [4.0, 0.25]
    x = np.array([[3.0, 0.0], [1.0, -1.0]])
    y = layer.forward(x, training=False)
    expected = (x - [1.0, -1.0]) / np.sqrt(np.array([4.0, 0.25]) + 1e-3)
    np.testing.assert_allclose(y, expected)
    np.testing.assert_allclose(layer.forward(x[:1], training=False), expected[:1])
    np.testing.assert_array_equal(layer.state()["running_mean"], [1.0, -1.0])


@pytest.mark.parametrize("input_shape", [(3, 4), (2, 3, 4, 5), ()])
def test_unsupported_layout_rejected(input_shape):
    with pytest.raises(ShapeError, match=r"\(features,\) or \(channels, height, width\)"):
        built(input_shape)


@pytest.mark.parametrize("settings", [{"momentum": 1.5}, {"epsilon": 0.0}, {"axis": 1}])
def test_bad_config_rejected(settings):
    with pytest.raises(ValidationError):
        batchnorm.BatchNorm(**settings)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_dtype_preserved(dtype, training):
    layer = built((2, 3, 3), dtype=dtype)
    x = np.random.default_rng(2).normal(size=(4, 2, 3, 3)).astype(dtype)
    x_before = x.copy()
    y = layer.forward(x, training=training)
    assert y.dtype == dtype and layer.backward(np.ones_like(y)).dtype == dtype
    assert all(v.dtype == dtype for v in [*layer.state().values(), *layer.grads().values()])
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("input_shape", [(4,), (2, 3, 3)])
def test_gradients_match_finite_differences(input_shape, training):
    rng = np.random.default_rng(5)
    layer = built(input_shape, dtype=np.float64)
    layer.params()["gamma"][...] = rng.uniform(0.5, 2.0, size=input_shape[0])
    layer.params()["beta"][...] = rng.normal(size=input_shape[0])
    layer.state()["running_mean"][...] = rng.normal(size=input_shape[0])
    layer.state()["running_var"][...] = rng.uniform(0.5, 2.0, size=input_shape[0])
    x = rng.normal(size=(5, *input_shape))
    dy = rng.normal(size=(5, *input_shape))
    layer.forward(x, training=training)
    dx = layer.backward(dy)

    def loss():
        return np.sum(layer.forward(x, training=training) * dy)

    assert max_relative_error(dx, numerical_gradient(loss, x)) < 1e-6
    for key, param in layer.params().items():
        assert max_relative_error(layer.grads()[key], numerical_gradient(loss, param)) < 1e-6


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="batchnorm"):
        built().backward(np.ones((2, 1), dtype=np.float32))
