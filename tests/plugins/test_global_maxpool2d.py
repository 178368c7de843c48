import re

import numpy as np
import pytest
from pydantic import ValidationError

from lamina import BackwardBeforeForwardError, ShapeError
from lamina.plugins import global_maxpool2d
from lamina.plugins.global_maxpool2d import GlobalMaxPool2D
from lamina.plugins.maxpool2d import MaxPool2D
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(input_shape, dtype=np.float64):
    layer = GlobalMaxPool2D()
    layer.build(input_shape, np.random.default_rng(0), dtype=dtype)
    return layer


def reference(x, dy):
    """The derivation entry by entry: scan each channel in row-major order, keep the first
    entry that is strictly greater (or the first NaN); dy goes to that one entry."""
    n_count, c_count, h, w = x.shape
    y = np.zeros((n_count, c_count))
    dx = np.zeros(x.shape)
    for n in range(n_count):
        for c in range(c_count):
            best, at = None, None
            for i in range(h):
                for j in range(w):
                    value = float(x[n, c, i, j])
                    if best is None or (not np.isnan(best) and (value > best or np.isnan(value))):
                        best, at = value, (i, j)
            y[n, c] = best
            dx[n, c, at[0], at[1]] = dy[n, c]
    return y, dx


def test_registered_through_the_layer_hook():
    assert global_maxpool2d.lamina_register_layers() == [GlobalMaxPool2D]
    assert GlobalMaxPool2D.name == "global_maxpool2d"
    assert GlobalMaxPool2D.traits.max_selecting
    assert not GlobalMaxPool2D.traits.batch_dependent


@pytest.mark.parametrize("training", [True, False])
def test_hand_worked_ties_go_to_the_first_maximum(training):
    layer = built((2, 2, 3))
    x = np.array([[[[1.0, 3.0, 2.0], [5.0, 0.0, 4.0]], [[0.0, 4.0, 4.0], [4.0, -1.0, 2.0]]]])
    np.testing.assert_array_equal(layer.forward(x, training=training), [[5.0, 4.0]])
    dx = layer.backward(np.array([[2.0, -3.0]]))
    np.testing.assert_array_equal(dx, [[[[0, 0, 0], [2, 0, 0]], [[0, -3, 0], [0, 0, 0]]]])


def test_constant_channel_routes_to_its_top_left_entry():
    layer = built((3, 4, 5), dtype=np.float32)
    layer.forward(np.full((2, 3, 4, 5), -0.25, dtype=np.float32), training=True)
    dx = layer.backward(np.ones((2, 3), dtype=np.float32))
    assert dx.sum() == 6
    np.testing.assert_array_equal(dx[:, :, 0, 0], 1)


@pytest.mark.parametrize("input_shape", [(2, 2, 3), (3, 5, 4), (4, 1, 1), (1, 7, 7), (2, 1, 9)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_the_derivation_on_inputs_full_of_ties(input_shape, dtype):
    rng = np.random.default_rng(1)
    layer = built(input_shape, dtype=dtype)
    x = rng.integers(-2, 3, size=(4, *input_shape)).astype(dtype)
    dy = rng.standard_normal((4, input_shape[0])).astype(dtype)
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    assert y.dtype == dx.dtype == dtype
    y_ref, dx_ref = reference(x, dy)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref.astype(dtype))


@pytest.mark.parametrize("input_shape", [(2, 3, 4), (3, 5, 5), (1, 1, 6)])
def test_same_choice_as_maxpool2d_over_the_whole_image(input_shape):
    """maxpool2d with a window the size of the image (its general loop) picks the same
    entry, ties and NaN included."""
    rng = np.random.default_rng(2)
    x = rng.integers(-1, 2, size=(5, *input_shape)).astype(np.float32)
    x[0, 0, 0, -1] = x[1, -1, -1, 0] = x[1, -1, -1, -1] = np.nan
    dy = rng.standard_normal((5, input_shape[0])).astype(np.float32)
    layer = built(input_shape, dtype=np.float32)
    pool = MaxPool2D(pool_size=list(input_shape[1:]))
    pool.build(input_shape, np.random.default_rng(0), dtype=np.float32)
    with np.errstate(invalid="ignore"):
        y = layer.forward(x, training=True)
        y_pool = pool.forward(x, training=True)
    np.testing.assert_array_equal(y, y_pool[:, :, 0, 0])
    np.testing.assert_array_equal(layer.backward(dy), pool.backward(dy[:, :, None, None]))


def test_nan_wins_its_channel_and_the_first_nan_gets_the_gradient():
    layer = built((2, 2, 2))
    x = np.array([[[[1.0, np.nan], [9.0, np.nan]], [[1.0, 2.0], [3.0, 4.0]]]])
    y = layer.forward(x, training=True)
    assert np.isnan(y[0, 0]) and y[0, 1] == 4.0
    dx = layer.backward(np.array([[5.0, 7.0]]))
    np.testing.assert_array_equal(dx, [[[[0, 5], [0, 0]], [[0, 0], [0, 7]]]])


def test_finite_difference_gradient():
    rng = np.random.default_rng(3)
    layer = built((3, 4, 5))
    x = (rng.permutation(2 * 60) * 0.01 - 0.6).reshape(2, 3, 4, 5)  # entries 0.01 apart
    dy = rng.standard_normal((2, 3))
    layer.forward(x, training=True)
    dx = layer.backward(dy)

    def loss():
        return float(np.sum(layer.forward(x, training=True) * dy))

    assert max_relative_error(dx, numerical_gradient(loss, x)) < 1e-6


def test_backward_follows_the_latest_forward_and_outputs_are_kept():
    rng = np.random.default_rng(4)
    layer = built((2, 3, 3))
    x1, x2 = rng.standard_normal((2, 2, 2, 3, 3))
    dy = rng.standard_normal((2, 2))
    x1_copy, dy_copy = x1.copy(), dy.copy()
    y1 = layer.forward(x1, training=True)
    dx1 = layer.backward(dy)
    y1_copy, dx1_copy = y1.copy(), dx1.copy()
    layer.forward(x2, training=False)
    dx2 = layer.backward(dy)
    np.testing.assert_array_equal(dx2, reference(x2, dy)[1])
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(dx1, dx1_copy)
    np.testing.assert_array_equal(x1, x1_copy)
    np.testing.assert_array_equal(dy, dy_copy)


def test_views_in_any_layout_give_the_same_results():
    rng = np.random.default_rng(5)
    layer = built((3, 4, 5), dtype=np.float32)
    x = rng.integers(-2, 3, size=(4, 3, 4, 5)).astype(np.float32)
    dy = rng.standard_normal((4, 3)).astype(np.float32)
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(layer.forward(np.asfortranarray(x), training=True), y)
    np.testing.assert_array_equal(layer.backward(np.asfortranarray(dy)), dx)


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
    with pytest.raises(ShapeError, match=r"global_maxpool2d expects \(channels, height, "
                       r"width\).*received " + re.escape(str(input_shape)) + r".*Fix:"):
        built(input_shape)


@pytest.mark.parametrize("bad", [{"pool_size": 2}, {"keepdims": True}])
def test_settings_rejected(bad):
    with pytest.raises(ValidationError):
        GlobalMaxPool2D(bad)
