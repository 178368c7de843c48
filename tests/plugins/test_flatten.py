import numpy as np
import pytest

from lamina import BackwardBeforeForwardError, ShapeError
from lamina.plugins import flatten
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(input_shape=(2, 3, 4), dtype=np.float32):
    layer = flatten.Flatten()
    layer.build(input_shape, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_through_the_layer_hook():
    assert flatten.lamina_register_layers() == [flatten.Flatten]


def test_output_shape_is_the_product():
    assert built((64, 5, 5)).output_shape == (1600,)
    assert built((6,)).output_shape == (6,)


def test_scalar_input_rejected():
    with pytest.raises(ShapeError, match=r"received a scalar shape \(\)"):
        built(())


def test_forward_is_row_major_view_and_backward_restores_shape():
    layer = built((2, 3, 4))
    x = np.arange(2 * 24, dtype=np.float32).reshape(2, 2, 3, 4)
    y = layer.forward(x, training=True)
    assert y.shape == (2, 24)
    np.testing.assert_array_equal(y[1], np.arange(24, 48))
    assert np.shares_memory(x, y)
    dy = np.arange(48, dtype=np.float32).reshape(2, 24) * -1
    dx = layer.backward(dy)
    assert dx.shape == (2, 2, 3, 4)
    assert dx[1, 0, 2, 3] == -(24 + 2 * 4 + 3)
    assert np.shares_memory(dx, dy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    layer = built((3, 2), dtype=dtype)
    y = layer.forward(np.zeros((4, 3, 2), dtype=dtype), training=False)
    assert y.dtype == dtype
    assert layer.backward(np.ones_like(y)).dtype == dtype


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    layer = built((2, 3, 2), dtype=np.float64)
    x = rng.normal(size=(3, 2, 3, 2))
    dy = rng.normal(size=(3, 12))
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    numeric = numerical_gradient(lambda: np.sum(layer.forward(x, training=True) * dy), x)
    assert max_relative_error(dx, numeric) < 1e-6


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="flatten"):
        built().backward(np.ones((1, 24), dtype=np.float32))
