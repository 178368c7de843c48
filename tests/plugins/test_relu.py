import numpy as np
import pytest

from lamina import BackwardBeforeForwardError
from lamina.plugins import relu
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(input_shape=(4,), dtype=np.float32):
    layer = relu.ReLU()
    layer.build(input_shape, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_through_the_layer_hook():
    assert relu.lamina_register_layers() == [relu.ReLU]
    assert relu.ReLU.name == "relu"


def test_hand_worked_forward_and_backward():
    layer = built()
    x = np.array([[-2.0, -0.5, 0.5, 3.0]], dtype=np.float32)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, [[0.0, 0.0, 0.5, 3.0]])
    dx = layer.backward(np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32))
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 3.0, 4.0]])


def test_shape_unchanged_for_any_input():
    assert built((2, 5, 5)).output_shape == (2, 5, 5)
    assert built((7,)).output_shape == (7,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_and_input_untouched(dtype):
    layer = built((2, 3), dtype=dtype)
    x = np.random.default_rng(1).normal(size=(4, 2, 3)).astype(dtype)
    x_before = x.copy()
    y = layer.forward(x, training=False)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_array_equal(x, x_before)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    layer = built((3, 4), dtype=np.float64)
    # Magnitudes in [0.1, 1] keep every entry a finite step away from the kink at 0.
    x = rng.uniform(0.1, 1.0, size=(5, 3, 4)) * rng.choice([-1.0, 1.0], size=(5, 3, 4))
    dy = rng.normal(size=(5, 3, 4))
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    numeric = numerical_gradient(lambda: np.sum(layer.forward(x, training=True) * dy), x)
    assert max_relative_error(dx, numeric) < 1e-6


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="relu"):
        built().backward(np.ones((1, 4), dtype=np.float32))
