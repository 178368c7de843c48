import re

import numpy as np
import pytest
from pydantic import ValidationError

from lamina import BackwardBeforeForwardError, ShapeError
from lamina.plugins import global_avgpool2d
from lamina.plugins.global_avgpool2d import GlobalAvgPool2D
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(input_shape, dtype=np.float64):
    layer = GlobalAvgPool2D()
    layer.build(input_shape, np.random.default_rng(0), dtype=dtype)
    return layer


def reference(x, dy):
    """The derivation entry by entry in float64: y[n, c] = sum / K, dx = dy / K."""
    n_count, c_count, h, w = x.shape
    y = np.zeros((n_count, c_count))
    dx = np.zeros(x.shape)
    for n in range(n_count):
        for c in range(c_count):
            total = 0.0
            for i in range(h):
                for j in range(w):
                    total += float(x[n, c, i, j])
            y[n, c] = total / (h * w)
            dx[n, c] = float(dy[n, c]) / (h * w)
    return y, dx


def test_registered_through_the_layer_hook():
    assert global_avgpool2d.lamina_register_layers() == [GlobalAvgPool2D]
    assert GlobalAvgPool2D.name == "global_avgpool2d"


@pytest.mark.parametrize("training", [True, False])
def test_hand_worked_2x3(training):
    layer = built((2, 2, 3))
    x = np.array([[[[1.0, 2.0, 3.0], [0.0, 2.0, 4.0]], [[-1.0, 0.0, 1.0], [-3.0, 0.0, 0.0]]]])
    np.testing.assert_array_equal(layer.forward(x, training=training), [[2.0, -0.5]])
    dx = layer.backward(np.array([[6.0, -3.0]]))
    np.testing.assert_array_equal(dx, [[np.ones((2, 3)), np.full((2, 3), -0.5)]])


@pytest.mark.parametrize("input_shape", [(2, 2, 3), (3, 5, 4), (4, 1, 1), (1, 7, 7), (2, 1, 9)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_the_derivation(input_shape, dtype):
    rng = np.random.default_rng(1)
    layer = built(input_shape, dtype=dtype)
    x = rng.standard_normal((3, *input_shape)).astype(dtype)
    dy = rng.standard_normal((3, input_shape[0])).astype(dtype)
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    assert y.shape == (3, input_shape[0]) and dx.shape == x.shape
    assert y.dtype == dx.dtype == dtype
    y_ref, dx_ref = reference(x, dy)
    tol = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol)


def test_one_by_one_image_is_the_identity_per_channel():
    layer = built((4, 1, 1))
    x = np.arange(8.0).reshape(2, 4, 1, 1)
    np.testing.assert_array_equal(layer.forward(x, training=True), x[:, :, 0, 0])
    dy = np.arange(8.0).reshape(2, 4) - 3
    np.testing.assert_array_equal(layer.backward(dy), dy[:, :, None, None])


def test_float32_mean_of_a_large_image_stays_accurate():
    layer = built((1, 256, 256), dtype=np.float32)
    x = np.full((1, 1, 256, 256), 0.1, dtype=np.float32)
    assert abs(float(layer.forward(x, training=False)[0, 0]) - float(np.float32(0.1))) < 1e-7


def test_finite_difference_gradient():
    rng = np.random.default_rng(2)
    layer = built((3, 4, 5))
    x = rng.standard_normal((2, 3, 4, 5))
    dy = rng.standard_normal((2, 3))
    layer.forward(x, training=True)
    dx = layer.backward(dy)

    def loss():
        return float(np.sum(layer.forward(x, training=True) * dy))

    assert max_relative_error(dx, numerical_gradient(loss, x)) < 1e-6


def test_dx_is_a_new_writable_array_and_inputs_are_untouched():
    rng = np.random.default_rng(3)
    layer = built((2, 3, 3))
    x = rng.standard_normal((2, 2, 3, 3))
    dy = rng.standard_normal((2, 2))
    x_copy, dy_copy = x.copy(), dy.copy()
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    assert dx.flags.writeable and dx.flags.c_contiguous
    assert not np.shares_memory(dx, dy) and not np.shares_memory(y, x)
    dx += 1.0  # a fan-out adds another gradient into it
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dy, dy_copy)


def test_views_in_any_layout_give_the_same_results():
    rng = np.random.default_rng(4)
    layer = built((3, 4, 5), dtype=np.float32)
    x = rng.standard_normal((4, 3, 4, 5)).astype(np.float32)
    dy = rng.standard_normal((4, 3)).astype(np.float32)
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(layer.forward(np.asfortranarray(x), training=True), y)
    np.testing.assert_array_equal(layer.backward(np.asfortranarray(dy)), dx)
    # summed in another order: float32 rounding only
    np.testing.assert_allclose(layer.forward(x[:, :, ::-1, ::-1], training=True), y,
                               rtol=1e-6, atol=1e-6)


def test_input_grad_false_returns_none():
    layer = built((2, 3, 3))
    layer.forward(np.ones((1, 2, 3, 3)), training=True)
    assert layer.backward(np.ones((1, 2)), input_grad=False) is None


def test_has_no_parameters():
    layer = built((2, 3, 3))
    assert layer.params() == {} and layer.grads() == {} and layer.output_shape == (2,)


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError):
        built((2, 3, 3)).backward(np.ones((1, 2)))


@pytest.mark.parametrize("input_shape", [(64,), (8, 5), (1, 2, 3, 4)])
def test_non_image_input_rejected_with_expected_received_and_fix(input_shape):
    with pytest.raises(ShapeError, match=r"global_avgpool2d expects \(channels, height, "
                       r"width\).*received " + re.escape(str(input_shape)) + r".*Fix:"):
        built(input_shape)


@pytest.mark.parametrize("bad", [{"pool_size": 2}, {"keepdims": True}])
def test_settings_rejected(bad):
    with pytest.raises(ValidationError):
        GlobalAvgPool2D(bad)
