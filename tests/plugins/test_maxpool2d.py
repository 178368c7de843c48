import numpy as np
import pytest
from pydantic import ValidationError

from lamina import BackwardBeforeForwardError, ShapeError
from lamina.plugins import maxpool2d
from lamina.plugins.maxpool2d import MaxPool2D
from lamina.testing.gradcheck import max_relative_error, numerical_gradient

# Windows: top-left max 4 at (1, 0); top-right 7 at (1, 3); bottom-left a three-way
# tie of 2s (first: (2, 0)); bottom-right a tie of 0s (first: (2, 2)).
X4 = np.array(
    [[1.0, 2.0, 5.0, 3.0],
     [4.0, 0.0, 1.0, 7.0],
     [2.0, 2.0, 0.0, 0.0],
     [2.0, 1.0, 0.0, -1.0]]
).reshape(1, 1, 4, 4)


def built(input_shape, dtype=np.float64, **config):
    layer = MaxPool2D(**config)
    layer.build(input_shape, np.random.default_rng(0), dtype=dtype)
    return layer


def spaced_input(rng, shape):
    """Distinct values at least 0.01 apart, so a 1e-6 nudge never changes an argmax."""
    return (rng.permutation(int(np.prod(shape))) * 0.01 - 1.0).reshape(shape)


def test_registered_through_the_layer_hook():
    assert maxpool2d.lamina_register_layers() == [MaxPool2D]
    assert MaxPool2D.name == "maxpool2d"


@pytest.mark.parametrize("training", [True, False])
def test_hand_worked_4x4_with_ties_routes_to_the_first_maximum(training):
    layer = built((1, 4, 4))
    y = layer.forward(X4, training=training)
    np.testing.assert_array_equal(y[0, 0], [[4, 7], [2, 0]])
    dx = layer.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    np.testing.assert_array_equal(
        dx[0, 0], [[0, 0, 0, 0], [1, 0, 0, 2], [3, 0, 4, 0], [0, 0, 0, 0]]
    )


def test_constant_input_sends_each_gradient_to_exactly_one_input():
    layer = built((2, 6, 6), dtype=np.float32)
    x = np.full((3, 2, 6, 6), 0.5, dtype=np.float32)
    layer.forward(x, training=True)
    dx = layer.backward(np.ones((3, 2, 3, 3), dtype=np.float32))
    assert dx.sum() == 3 * 2 * 9
    np.testing.assert_array_equal(dx[:, :, ::2, ::2], 1)  # the top-left of every window


@pytest.mark.parametrize(
    ("config", "input_shape", "output_shape"),
    [
        ({}, (32, 26, 26), (32, 13, 13)),
        ({}, (64, 11, 11), (64, 5, 5)),
        ({"pool_size": 3}, (1, 10, 9), (1, 3, 3)),
        ({"pool_size": 3, "stride": 1}, (1, 5, 6), (1, 3, 4)),
        ({"pool_size": [2, 3], "stride": [1, 2]}, (1, 4, 7), (1, 3, 3)),
        ({"pool_size": 2, "stride": 3}, (1, 7, 8), (1, 2, 3)),
    ],
)
def test_output_shapes(config, input_shape, output_shape):
    layer = built(input_shape, dtype=np.float32, **config)
    assert layer.output_shape == output_shape
    y = layer.forward(np.zeros((2, *input_shape), dtype=np.float32), training=True)
    assert y.shape == (2, *output_shape)
    assert layer.backward(np.ones_like(y)).shape == (2, *input_shape)


def test_odd_size_drops_the_last_row_and_column():
    layer = built((1, 11, 11))
    x = np.zeros((1, 1, 11, 11))
    x[0, 0, 10, :] = x[0, 0, :, 10] = 100.0  # the cropped edge must not win anything
    y = layer.forward(x, training=True)
    assert y.shape == (1, 1, 5, 5) and not y.any()
    dx = layer.backward(np.ones((1, 1, 5, 5)))
    assert not dx[0, 0, 10, :].any() and not dx[0, 0, :, 10].any()
    assert dx.sum() == 25


def test_overlapping_windows_sum_the_gradients_of_a_shared_maximum():
    layer = built((1, 3, 3), pool_size=2, stride=1)
    x = np.array([[[[1.0, 2.0, 3.0], [4.0, 9.0, 5.0], [6.0, 7.0, 8.0]]]])
    np.testing.assert_array_equal(layer.forward(x, training=True)[0, 0], [[9, 9], [9, 9]])
    dx = layer.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    expected = np.zeros((3, 3))
    expected[1, 1] = 10.0
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_overlapping_windows_with_ties_pick_each_windows_first_element():
    layer = built((1, 2, 3), pool_size=2, stride=1)
    layer.forward(np.ones((1, 1, 2, 3)), training=True)
    dx = layer.backward(np.array([[[[5.0, 7.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[5, 7, 0], [0, 0, 0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    layer = built((2, 6, 6), dtype=dtype, pool_size=3, stride=2)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(dtype)
    y = layer.forward(x, training=True)
    assert y.dtype == layer.backward(np.ones_like(y)).dtype == dtype


GRADIENT_CASES = [
    ({}, (2, 4, 4)),
    ({}, (2, 5, 7)),
    ({"pool_size": 3, "stride": 2}, (2, 7, 6)),
    ({"pool_size": 3, "stride": 1}, (1, 5, 5)),
    ({"pool_size": [2, 3], "stride": [1, 3]}, (1, 4, 7)),
    ({"pool_size": 2, "stride": 3}, (2, 7, 8)),
]


@pytest.mark.parametrize(("config", "input_shape"), GRADIENT_CASES)
@pytest.mark.parametrize("training", [True, False])
def test_finite_difference_gradient(config, input_shape, training):
    rng = np.random.default_rng(1)
    layer = built(input_shape, **config)
    x = spaced_input(rng, (2, *input_shape))
    dy = rng.standard_normal((2, *layer.output_shape))
    layer.forward(x, training=training)
    dx = layer.backward(dy)

    def loss():
        return float(np.sum(layer.forward(x, training=True) * dy))

    assert max_relative_error(dx, numerical_gradient(loss, x)) < 1e-6


def test_outputs_stay_valid_after_later_calls():
    """Work buffers are reused, but never behind an array handed to the caller."""
    rng = np.random.default_rng(2)
    for config in ({}, {"pool_size": 3, "stride": 1}):
        layer = built((2, 6, 6), **config)
        x1, x2 = rng.standard_normal((2, 3, 2, 6, 6))
        dy = rng.standard_normal((3, *layer.output_shape))
        y1 = layer.forward(x1, training=True)
        dx1 = layer.backward(dy)
        y1_copy, dx1_copy = y1.copy(), dx1.copy()
        layer.forward(x2, training=True)
        layer.backward(2 * dy)
        np.testing.assert_array_equal(y1, y1_copy)
        np.testing.assert_array_equal(dx1, dx1_copy)


def test_backward_follows_the_latest_forward():
    rng = np.random.default_rng(3)
    layer = built((1, 4, 4))
    x1, x2 = spaced_input(rng, (2, 2, 1, 4, 4))
    dy = rng.standard_normal((2, 1, 2, 2))
    layer.forward(x2, training=True)
    expected = layer.backward(dy)
    layer.forward(x1, training=True)
    layer.forward(x2, training=False)
    np.testing.assert_array_equal(layer.backward(dy), expected)


def test_input_and_upstream_gradient_not_mutated():
    rng = np.random.default_rng(4)
    layer = built((2, 5, 5), pool_size=2, stride=1)
    x, dy = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 2, 4, 4))
    x_copy, dy_copy = x.copy(), dy.copy()
    layer.forward(x, training=True)
    layer.backward(dy)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dy, dy_copy)


def test_has_no_parameters():
    layer = built((1, 4, 4))
    assert layer.params() == {} and layer.grads() == {}


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError):
        built((1, 4, 4)).backward(np.ones((1, 1, 2, 2)))


def test_pool_larger_than_input_rejected():
    with pytest.raises(ShapeError, match=r"pool_size \(3, 3\) is larger than its input "
                       r"\(2, 2\).*Fix: use a smaller pool_size"):
        built((8, 2, 2), pool_size=3)
    with pytest.raises(ShapeError, match=r"pool_size \(1, 4\)"):
        built((8, 5, 3), pool_size=[1, 4])


def test_flat_input_rejected_with_expected_received_and_fix():
    with pytest.raises(ShapeError, match=r"expects \(channels, height, width\).*received "
                       r"\(64, 5\) \(2-D\)\. Fix:"):
        built((64, 5))


def test_stride_defaults_to_pool_size():
    assert built((1, 9, 9), pool_size=3).stride == (3, 3)
    assert built((1, 9, 9), pool_size=3, stride=[1, 2]).stride == (1, 2)


@pytest.mark.parametrize(
    "bad",
    [{"pool_size": 0}, {"pool_size": [2, 0]}, {"stride": 0}, {"pool_size": 2.5},
     {"size": 2}],
)
def test_bad_configs_rejected(bad):
    with pytest.raises(ValidationError):
        MaxPool2D(bad)


def first_max_reference(x, pool, stride, dy):
    """Max pooling by np.argmax over stacked windows (argmax keeps the first maximum)."""
    (ph, pw), (sh, sw) = pool, stride
    h_out, w_out = (x.shape[2] - ph) // sh + 1, (x.shape[3] - pw) // sw + 1
    views = [x[:, :, i:i + sh * (h_out - 1) + 1:sh, j:j + sw * (w_out - 1) + 1:sw]
             for i in range(ph) for j in range(pw)]
    stacked = np.stack(views, axis=-1)
    winner = np.argmax(stacked, axis=-1)
    dx = np.zeros_like(x)
    for k in range(ph * pw):
        i, j = divmod(k, pw)
        dx[:, :, i:i + sh * (h_out - 1) + 1:sh, j:j + sw * (w_out - 1) + 1:sw] += dy * (winner == k)
    return stacked.max(axis=-1), dx


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    ("pool", "stride"), [((2, 2), (2, 2)), ((2, 2), (1, 1)), ((2, 2), (1, 2)), ((2, 2), (3, 3)),
                         ((3, 3), (2, 2)), ((2, 3), (2, 3))]
)
def test_ties_route_like_argmax_for_every_stride(pool, stride, training):
    """Every stride sends each gradient to the first maximum of its window."""
    rng = np.random.default_rng(8)
    x = rng.integers(-1, 2, size=(3, 2, 7, 8)).astype(np.float32)  # ties everywhere
    layer = built((2, 7, 8), dtype=np.float32, pool_size=list(pool), stride=list(stride))
    y = layer.forward(x, training=training)
    dy = rng.normal(size=y.shape).astype(np.float32)
    y_ref, dx_ref = first_max_reference(x, pool, stride, dy)
    np.testing.assert_array_equal(y, y_ref)
    # An input that wins several overlapping windows sums their gradients; the layer adds
    # them in window order, the reference in offset order: float32 rounding may differ.
    np.testing.assert_allclose(layer.backward(dy), dx_ref, rtol=1e-6, atol=1e-6)
