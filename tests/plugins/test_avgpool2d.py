import math

import numpy as np
import pytest
from pydantic import ValidationError

import lamina
from lamina import BackwardBeforeForwardError, ConfigError, ShapeError
from lamina.plugins import avgpool2d
from lamina.plugins.avgpool2d import AvgPool2D
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(input_shape, dtype=np.float64, **config):
    layer = AvgPool2D(**config)
    layer.build(input_shape, np.random.default_rng(0), dtype=dtype)
    return layer


def tf_same(size, kernel, stride):
    """TensorFlow's "same": ceil(size / stride) outputs, the odd padding row at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2


def reference(x, pool, stride, padding, dy):
    """The derivation, one window at a time in float64: the mean of the entries a window
    covers inside the image, and dy / (their number) back to each of them."""
    (ph, pw), (sh, sw) = pool, stride
    h, w = x.shape[2:]
    if padding == "same":
        (h_out, top), (w_out, left) = tf_same(h, ph, sh), tf_same(w, pw, sw)
    else:
        h_out, w_out, top, left = (h - ph) // sh + 1, (w - pw) // sw + 1, 0, 0
    x = x.astype(np.float64)
    y = np.zeros((*x.shape[:2], h_out, w_out))
    dx = np.zeros_like(x)
    for p in range(h_out):
        for q in range(w_out):
            r0, c0 = p * sh - top, q * sw - left
            rows = slice(max(r0, 0), min(r0 + ph, h))
            cols = slice(max(c0, 0), min(c0 + pw, w))
            window = x[:, :, rows, cols]
            y[:, :, p, q] = window.sum(axis=(2, 3)) / window[0, 0].size
            dx[:, :, rows, cols] += (dy[:, :, p, q] / window[0, 0].size)[:, :, None, None]
    return y, dx


def test_registered_through_the_layer_hook():
    assert avgpool2d.lamina_register_layers() == [AvgPool2D]
    assert AvgPool2D.name == "avgpool2d"


@pytest.mark.parametrize("training", [True, False])
def test_hand_worked_same_3x3_leaves_the_padding_out(training):
    # "same" 2x2/2 on 3x3: one padded row and column after the image, so the right and
    # bottom windows cover 2 entries and the corner window 1
    layer = built((1, 3, 3), padding="same")
    assert layer.padding == ((0, 1), (0, 1))
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    y = layer.forward(x, training=training)
    np.testing.assert_array_equal(y[0, 0], [[12 / 4, 9 / 2], [15 / 2, 9]])
    dx = layer.backward(np.array([[[[4.0, 6.0], [2.0, 5.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 3], [1, 1, 3], [1, 1, 5]])


def test_hand_worked_3x3_stride_1_same_as_keras():
    # Keras AveragePooling2D(3, strides=1, padding="same") on 0..8: a corner averages 4
    # entries, an edge 6, the centre all 9
    layer = built((1, 3, 3), pool_size=3, stride=1, padding="same")
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(
        y[0, 0], [[8 / 4, 15 / 6, 12 / 4], [21 / 6, 36 / 9, 27 / 6], [20 / 4, 33 / 6, 24 / 4]])
    # dy = 1 everywhere: an entry gets 1/count of every window covering it; the corner
    # (0, 0) is in windows (0, 0), (0, 1), (1, 0), (1, 1) of counts 4, 6, 6, 9
    dx = layer.backward(np.ones((1, 1, 3, 3)))
    assert dx[0, 0, 0, 0] == pytest.approx(1 / 4 + 1 / 6 + 1 / 6 + 1 / 9, rel=1e-15)
    assert dx[0, 0, 1, 1] == pytest.approx(4 / 4 + 4 / 6 + 1 / 9, rel=1e-15)


def test_hand_worked_valid_2x2_drops_the_odd_column():
    layer = built((1, 4, 5))
    x = np.array([[1, 3, 5, 7, 100], [3, 5, 7, 9, 100], [0, 2, 4, 6, 100],
                  [-2, 0, 2, 8, 100]], dtype=np.float64).reshape(1, 1, 4, 5)
    np.testing.assert_array_equal(layer.forward(x, training=True)[0, 0], [[3, 7], [0, 5]])
    dx = layer.backward(np.array([[[[4.0, 8.0], [-4.0, 2.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 2, 2, 0], [1, 1, 2, 2, 0],
                                             [-1, -1, 0.5, 0.5, 0], [-1, -1, 0.5, 0.5, 0]])


@pytest.mark.parametrize(("config", "input_shape"), [
    ({"pool_size": 3, "stride": 1, "padding": "same"}, (1, 5, 6)),
    ({"pool_size": 2, "padding": "same"}, (1, 5, 7)),
    ({"pool_size": [2, 3], "stride": [1, 2], "padding": "same"}, (1, 4, 7)),
    ({"pool_size": 4, "stride": 1, "padding": "same"}, (1, 3, 2)),
])
def test_same_padding_keeps_a_constant_image_constant(config, input_shape):
    """The padding is left out of every average, so the border windows, which cover
    fewer entries, still average to the constant (counting the padding as zeros would
    shrink them)."""
    layer = built(input_shape, **config)
    y = layer.forward(np.full((2, *input_shape), 3.5), training=True)
    assert layer.padding != ((0, 0), (0, 0))
    np.testing.assert_array_equal(y, 3.5)


CASES = [
    ({}, (2, 4, 4)),                                      # the compiled 2x2 loop
    ({}, (2, 5, 7)),                                      # 2x2 loop, cropped edges
    ({"padding": "same"}, (2, 6, 8)),                     # "same" on even sizes: no padding
    ({"padding": "same"}, (2, 5, 7)),                     # partial windows at bottom, right
    ({"pool_size": 3, "stride": 2}, (2, 7, 6)),
    ({"pool_size": 3, "stride": 1, "padding": "same"}, (1, 5, 6)),
    ({"pool_size": 3, "stride": 2, "padding": "same"}, (2, 6, 5)),
    ({"pool_size": [2, 3], "stride": [1, 3]}, (1, 4, 7)),
    ({"pool_size": [2, 3], "stride": [1, 2], "padding": "same"}, (1, 4, 7)),
    ({"pool_size": 2, "stride": 3}, (2, 7, 8)),
    ({"pool_size": 2, "stride": 3, "padding": "same"}, (2, 7, 8)),
    ({"pool_size": 5, "stride": 2, "padding": "same"}, (1, 4, 3)),  # pool > input
    ({"pool_size": 1}, (2, 3, 3)),
]


@pytest.mark.parametrize(("config", "input_shape"), CASES)
@pytest.mark.parametrize("training", [True, False])
def test_matches_the_derivation_window_by_window(config, input_shape, training):
    rng = np.random.default_rng(1)
    layer = built(input_shape, **config)
    x = rng.standard_normal((3, *input_shape))
    y = layer.forward(x, training=training)
    dy = rng.standard_normal(y.shape)
    y_ref, dx_ref = reference(x, layer.pool, layer.stride, layer.config.padding, dy)
    assert y.shape == y_ref.shape == (3, *layer.output_shape)
    np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(layer.backward(dy), dx_ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("config", "input_shape"), CASES)
def test_float32_matches_the_float64_derivation(config, input_shape):
    rng = np.random.default_rng(2)
    layer = built(input_shape, dtype=np.float32, **config)
    x = rng.standard_normal((3, *input_shape)).astype(np.float32)
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    assert y.dtype == dx.dtype == np.float32
    y_ref, dx_ref = reference(x, layer.pool, layer.stride, layer.config.padding,
                              dy.astype(np.float64))
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("config", "input_shape"), CASES)
def test_finite_difference_gradient(config, input_shape):
    rng = np.random.default_rng(3)
    layer = built(input_shape, **config)
    x = rng.standard_normal((2, *input_shape))
    dy = rng.standard_normal((2, *layer.output_shape))
    layer.forward(x, training=True)
    dx = layer.backward(dy)

    def loss():
        return float(np.sum(layer.forward(x, training=True) * dy))

    assert max_relative_error(dx, numerical_gradient(loss, x)) < 1e-6


@pytest.mark.parametrize(("config", "input_shape"), [({}, (2, 6, 6)),
                                                     ({"pool_size": 3, "padding": "same"},
                                                      (2, 7, 5))])
def test_views_in_any_layout_give_the_same_results(config, input_shape):
    rng = np.random.default_rng(4)
    layer = built(input_shape, dtype=np.float32, **config)
    x = rng.standard_normal((4, *input_shape)).astype(np.float32)
    dy = rng.standard_normal((4, *layer.output_shape)).astype(np.float32)
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    x_view = np.asfortranarray(x)
    dy_view = np.asfortranarray(dy)
    np.testing.assert_array_equal(layer.forward(x_view, training=True), y)
    np.testing.assert_array_equal(layer.backward(dy_view), dx)
    np.testing.assert_array_equal(layer.forward(x[::-1], training=True), y[::-1])


@pytest.mark.parametrize(("config", "input_shape", "output_shape"), [
    ({}, (32, 26, 26), (32, 13, 13)),
    ({}, (16, 10, 10), (16, 5, 5)),
    ({}, (64, 11, 11), (64, 5, 5)),
    ({"padding": "same"}, (64, 11, 11), (64, 6, 6)),
    ({"pool_size": 3, "stride": 1, "padding": "same"}, (1, 5, 6), (1, 5, 6)),
    ({"pool_size": 3, "stride": 2, "padding": "same"}, (1, 7, 8), (1, 4, 4)),
    ({"pool_size": 3}, (1, 10, 9), (1, 3, 3)),
    ({"pool_size": [2, 3], "stride": [1, 2]}, (1, 4, 7), (1, 3, 3)),
    ({"pool_size": 5, "padding": "same"}, (1, 3, 4), (1, 1, 1)),
])
def test_output_shapes(config, input_shape, output_shape):
    layer = built(input_shape, dtype=np.float32, **config)
    assert layer.output_shape == output_shape


@pytest.mark.parametrize(("size", "kernel", "stride", "expected"), [
    (3, 2, 2, (0, 1)),   # odd total: the extra row at the end
    (4, 2, 2, (0, 0)),
    (5, 3, 1, (1, 1)),
    (6, 3, 2, (0, 1)),
    (7, 3, 2, (1, 1)),
    (3, 4, 1, (1, 2)),
    (7, 2, 3, (0, 1)),
])
def test_same_padding_follows_tensorflow(size, kernel, stride, expected):
    layer = built((1, size, size), pool_size=kernel, stride=stride, padding="same")
    assert layer.padding == (expected, expected)


def test_overlapping_windows_sum_the_shares_of_an_entry():
    layer = built((1, 1, 3), pool_size=[1, 2], stride=1)
    layer.forward(np.array([[[[1.0, 2.0, 3.0]]]]), training=True)
    dx = layer.backward(np.array([[[[2.0, 4.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[1, 1 + 2, 2]])


def test_non_overlapping_gradient_is_conserved():
    layer = built((2, 6, 6), dtype=np.float32, padding="same", pool_size=4)
    dy = np.random.default_rng(5).uniform(size=(3, 2, 2, 2)).astype(np.float32)
    layer.forward(np.zeros((3, 2, 6, 6), dtype=np.float32), training=True)
    dx = layer.backward(dy)
    # each window spreads its dy evenly over the entries it covers, real ones only
    assert float(dx.sum()) == pytest.approx(float(dy.sum()), rel=1e-6)


def test_nan_and_inf_propagate_to_their_windows_only():
    layer = built((1, 4, 4))
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 3, 3] = np.inf
    y = layer.forward(x, training=True)
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 1, 1] == np.inf
    assert y[0, 0, 0, 1] == y[0, 0, 1, 0] == 0


def test_input_grad_false_returns_none():
    layer = built((1, 4, 4))
    layer.forward(np.ones((1, 1, 4, 4)), training=True)
    assert layer.backward(np.ones((1, 1, 2, 2)), input_grad=False) is None


def test_input_and_upstream_gradient_not_mutated_and_outputs_kept():
    rng = np.random.default_rng(6)
    for config in ({}, {"pool_size": 3, "stride": 1, "padding": "same"}):
        layer = built((2, 5, 6), **config)
        x, dy = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((2, *layer.output_shape))
        x_copy, dy_copy = x.copy(), dy.copy()
        y = layer.forward(x, training=True)
        dx = layer.backward(dy)
        y_copy, dx_copy = y.copy(), dx.copy()
        layer.forward(2 * x, training=True)
        layer.backward(3 * dy)
        np.testing.assert_array_equal(x, x_copy)
        np.testing.assert_array_equal(dy, dy_copy)
        np.testing.assert_array_equal(y, y_copy)
        np.testing.assert_array_equal(dx, dx_copy)


def test_has_no_parameters():
    layer = built((1, 4, 4))
    assert layer.params() == {} and layer.grads() == {}


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError):
        built((1, 4, 4)).backward(np.ones((1, 1, 2, 2)))


def test_valid_pool_larger_than_input_rejected_and_same_accepted():
    with pytest.raises(ShapeError, match=r"pool_size \(3, 3\) is larger than its input "
                       r"\(2, 2\).*Fix: use a smaller pool_size, padding = \"same\""):
        built((8, 2, 2), pool_size=3)
    with pytest.raises(ShapeError, match=r"pool_size \(1, 4\)"):
        built((8, 5, 3), pool_size=[1, 4])
    assert built((8, 2, 2), pool_size=3, padding="same").output_shape == (8, 1, 1)


def test_flat_input_rejected_with_expected_received_and_fix():
    with pytest.raises(ShapeError, match=r"avgpool2d expects \(channels, height, width\).*"
                       r"received \(64, 5\) \(2-D\)\. Fix:"):
        built((64, 5))


def test_stride_defaults_to_pool_size():
    assert built((1, 9, 9), pool_size=3).stride == (3, 3)
    assert built((1, 9, 9), pool_size=3, stride=[1, 2]).stride == (1, 2)
    assert built((1, 9, 9), pool_size=[2, 3]).stride == (2, 3)


@pytest.mark.parametrize("bad", [
    {"pool_size": 0}, {"pool_size": [2, 0]}, {"pool_size": [2, 2, 2]}, {"stride": 0},
    {"stride": [1, -1]}, {"pool_size": 2.5}, {"pool_size": "2"}, {"padding": "full"},
    {"padding": "SAME"}, {"padding": 1}, {"size": 2},
])
def test_bad_configs_rejected(bad):
    with pytest.raises(ValidationError):
        AvgPool2D(bad)


def test_misspelt_padding_gets_a_suggestion():
    with pytest.raises(ConfigError, match=r"avgpool2d.padding: .*did you mean 'same'\?"):
        lamina.layers(AvgPool2D, padding="smae")
