import numpy as np
import pytest

from lamina.config.strict import validate_settings
from lamina.plugins import leaky_relu, relu


def built(shape=(4,), dtype=np.float32, **settings):
    layer = leaky_relu.LeakyReLU(**settings)
    layer.build(shape, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_through_the_layer_hook():
    assert leaky_relu.lamina_register_layers() == [leaky_relu.LeakyReLU]
    assert leaky_relu.LeakyReLU.name == "leaky_relu"
    assert leaky_relu.LeakyReLU.traits.monotone_elementwise


def test_the_default_slope_is_pytorch_s():
    layer = built((3,))
    assert layer.config.slope == 0.01
    y = layer.forward(np.array([[-100.0, 0.0, 2.0]], dtype=np.float32), training=True)
    np.testing.assert_allclose(y, [[-1.0, 0.0, 2.0]], rtol=1e-7)
    dx = layer.backward(np.ones_like(y))
    np.testing.assert_allclose(dx, [[0.01, 0.01, 1.0]], rtol=1e-7)


def test_slope_0_is_relu_exactly():
    x = np.random.default_rng(1).normal(size=(5, 3, 4)).astype(np.float32)
    x[0, 0, :2] = 0.0
    dy = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
    leaky, plain = built((3, 4), slope=0.0), relu.ReLU()
    plain.build((3, 4), np.random.default_rng(0))
    np.testing.assert_array_equal(leaky.forward(x, training=True), plain.forward(x, training=True))
    np.testing.assert_array_equal(leaky.backward(dy), plain.backward(dy))


@pytest.mark.parametrize("slope", [-0.1, 1.5])
def test_a_slope_outside_0_to_1_is_refused(slope):
    config, issues = validate_settings(leaky_relu.LeakyReLUConfig, {"slope": slope}, "layer")
    assert config is None and [issue.path for issue in issues] == ["layer.slope"]


def test_pytorch_s_name_for_the_slope_gets_lamina_s():
    _, issues = validate_settings(leaky_relu.LeakyReLUConfig, {"negative_slope": 0.2}, "layer")
    assert [str(issue) for issue in issues] == [
        "layer.negative_slope: unknown key 'negative_slope'; lamina calls it 'slope'; known "
        "keys: slope"]
