import numpy as np
import pytest

from lamina import ShapeError
from lamina.config.strict import validate_settings
from lamina.plugins import softmax


def built(shape=(3,), dtype=np.float64, **settings):
    layer = softmax.Softmax(**settings)
    layer.build(shape, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_through_the_layer_hook():
    assert softmax.lamina_register_layers() == [softmax.Softmax]
    assert softmax.Softmax.name == "softmax"
    assert not softmax.Softmax.traits.monotone_elementwise


def test_shifting_a_line_changes_nothing():
    x = np.array([[0.0, np.log(2.0), np.log(5.0)]])
    layer = built()
    np.testing.assert_allclose(layer.forward(x + 1000.0, training=False), [[0.125, 0.25, 0.625]],
                               rtol=1e-12)


def test_the_extremes_of_float32_give_the_limit_without_a_warning():
    layer = built((3,), np.float32)
    x = np.array([[-3.4e38, 3.4e38, 0.0], [-3.4e38, -3.4e38, -3.4e38]], dtype=np.float32)
    with np.errstate(all="raise", under="ignore"):
        y = layer.forward(x, training=True)
        dx = layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(y[0], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(y[1], [1 / 3] * 3, rtol=1e-7)
    np.testing.assert_allclose(dx, 0.0, atol=1e-7)  # a constant dy moves no probability


def test_axis_1_is_the_channels_of_an_image():
    x = np.random.default_rng(0).normal(size=(2, 4, 3, 5))
    y = built((4, 3, 5), axis=1).forward(x, training=False)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(y, np.exp(x) / np.exp(x).sum(axis=1, keepdims=True), rtol=1e-14)


def test_the_batch_axis_is_refused_with_the_fix():
    config, issues = validate_settings(softmax.SoftmaxConfig, {"axis": 0}, "layer")
    assert config is None and len(issues) == 1
    assert "axis 0 is the batch axis" in str(issues[0]) and "axis = -1" in str(issues[0])


@pytest.mark.parametrize("axis", [3, -3])
def test_an_axis_the_sample_lacks_is_a_shape_error(axis):
    with pytest.raises(ShapeError, match=f"softmax axis {axis} is not an axis of a sample of "
                                         r"shape \(4, 5\).*from 1 to 2 or from -2 to -1"):
        built((4, 5), axis=axis)


def test_pytorch_s_name_for_the_axis_gets_lamina_s():
    _, issues = validate_settings(softmax.SoftmaxConfig, {"dim": 1}, "layer")
    assert [str(issue) for issue in issues] == [
        "layer.dim: unknown key 'dim'; lamina calls it 'axis'; known keys: axis"]
