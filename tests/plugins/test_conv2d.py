import numpy as np
import pytest
from pydantic import ValidationError

from lamina import BackwardBeforeForwardError, ShapeError
from lamina.plugins import conv2d
from lamina.plugins.conv2d import Conv2D
from lamina.testing.gradcheck import max_relative_error
from lamina.testing.gradcheck import numerical_gradient as central_difference

X3 = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
W22 = np.array([[1.0, 2.0], [3.0, 4.0]])


def numerical_gradient(f, a):
    """Central differences with h = 1e-5, which balances the O(h^2) truncation against
    the O(eps/h) rounding of f in float64; at 1e-6 the rounding alone gave 2.5e-9
    absolute (1.8e-6 relative) on a gradient entry of 7e-4 when the bias is added
    inside the product."""
    return central_difference(f, a, h=1e-5)


def built(input_shape, dtype=np.float64, seed=0, **config):
    layer = Conv2D(**config)
    layer.build(input_shape, np.random.default_rng(seed), dtype=dtype)
    return layer


def test_registered_through_the_layer_hook():
    assert conv2d.lamina_register_layers() == [Conv2D]
    assert Conv2D.name == "conv2d"


def test_hand_worked_cross_correlation_and_gradients():
    layer = built((1, 3, 3), filters=1, kernel_size=2)
    layer.params()["W"][0, 0] = W22
    layer.params()["b"][...] = 0.5
    # Not flipped: y[0, 0] = 1*1 + 2*2 + 3*4 + 4*5 (a true convolution would give 23).
    y = layer.forward(X3, training=True)
    np.testing.assert_array_equal(y[0, 0], [[37.5, 47.5], [67.5, 77.5]])
    dx = layer.backward(np.ones((1, 1, 2, 2)))
    # dx[a, b] sums the weights of every window that covers (a, b).
    np.testing.assert_array_equal(dx[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    # dW[i, j] sums x over the windows' (i, j) taps; db counts the outputs.
    np.testing.assert_array_equal(layer.grads()["W"][0, 0], [[12, 16], [24, 28]])
    np.testing.assert_array_equal(layer.grads()["b"], [4])


def test_hand_worked_channels_sum_and_filters_stack():
    layer = built((2, 3, 3), filters=2, kernel_size=2, use_bias=False)
    W = layer.params()["W"]
    W[0, 0], W[0, 1] = W22, -W22          # filter 0: channel 0 minus channel 1
    W[1, 0], W[1, 1] = np.ones((2, 2)), 0  # filter 1: 2x2 window sums of channel 0
    x = np.concatenate([X3, 2 * X3], axis=1)
    y = layer.forward(x, training=False)
    np.testing.assert_array_equal(y[0, 0], -np.array([[37, 47], [67, 77]]))
    np.testing.assert_array_equal(y[0, 1], [[12, 16], [24, 28]])


def test_hand_worked_stride_two_with_padding():
    layer = built((1, 3, 3), filters=1, kernel_size=3, stride=2, padding=1, use_bias=False)
    layer.params()["W"][...] = 1.0
    # Windows centred on the corners see the 2x2 corner blocks of X3.
    y = layer.forward(X3, training=True)
    np.testing.assert_array_equal(y[0, 0], [[12, 16], [24, 28]])
    dx = layer.backward(np.array([[[[1.0, 10.0], [100.0, 1000.0]]]]))
    np.testing.assert_array_equal(
        dx[0, 0], [[1, 11, 10], [101, 1111, 1010], [100, 1100, 1000]]
    )


def test_same_padding_with_an_even_kernel_pads_after_the_image():
    layer = built((1, 2, 2), filters=1, kernel_size=2, padding="same", use_bias=False)
    layer.params()["W"][...] = 1.0
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    # TensorFlow's rule: the one extra zero row and column go at the bottom and right.
    np.testing.assert_array_equal(layer.forward(x, training=True)[0, 0], [[10, 6], [7, 4]])


@pytest.mark.parametrize(
    ("config", "input_shape", "output_shape"),
    [
        ({"filters": 32, "kernel_size": 3}, (1, 28, 28), (32, 26, 26)),
        ({"filters": 64, "kernel_size": 3}, (32, 13, 13), (64, 11, 11)),
        ({"filters": 4, "kernel_size": 3, "padding": "same"}, (2, 9, 8), (4, 9, 8)),
        ({"filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"}, (2, 7, 8), (4, 4, 4)),
        ({"filters": 4, "kernel_size": 3, "padding": 2}, (2, 5, 5), (4, 7, 7)),
        ({"filters": 1, "kernel_size": [3, 1], "stride": [2, 1]}, (1, 8, 5), (1, 3, 5)),
        ({"filters": 1, "kernel_size": 2, "stride": 3}, (1, 8, 8), (1, 3, 3)),
    ],
)
def test_output_shapes(config, input_shape, output_shape):
    layer = built(input_shape, dtype=np.float32, **config)
    assert layer.output_shape == output_shape
    y = layer.forward(np.zeros((2, *input_shape), dtype=np.float32), training=False)
    assert y.shape == (2, *output_shape)


def test_parameter_count_shapes_and_glorot_bound():
    layer = built((32, 13, 13), dtype=np.float32, filters=64, kernel_size=3)
    W, b = layer.params()["W"], layer.params()["b"]
    assert W.shape == (64, 32, 3, 3) and b.shape == (64,) and W.size + b.size == 18_496
    assert np.abs(W).max() <= np.sqrt(6 / (32 * 9 + 64 * 9))
    assert not b.any()
    he = built((32, 13, 13), dtype=np.float32, filters=64, kernel_size=3, initializer="he_normal")
    assert 0.8 < he.params()["W"].std() / np.sqrt(2 / (32 * 9)) < 1.2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    layer = built((2, 6, 6), dtype=dtype, filters=3, kernel_size=3, padding="same")
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(dtype)
    y = layer.forward(x, training=True)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == layer.grads()["W"].dtype == layer.grads()["b"].dtype == dtype


GRADIENT_CASES = [
    ({"filters": 2, "kernel_size": 3}, (2, 5, 5)),
    ({"filters": 3, "kernel_size": 3, "stride": 2}, (2, 7, 6)),
    ({"filters": 2, "kernel_size": 3, "stride": 2, "padding": "same"}, (2, 6, 5)),
    ({"filters": 2, "kernel_size": [2, 3], "padding": "same"}, (1, 4, 5)),
    ({"filters": 2, "kernel_size": 3, "stride": [1, 2], "padding": 2}, (2, 4, 5)),
    ({"filters": 2, "kernel_size": 2, "padding": 1, "use_bias": False}, (3, 3, 4)),
]


@pytest.mark.parametrize(("config", "input_shape"), GRADIENT_CASES)
def test_finite_difference_gradients(config, input_shape):
    assert_gradients_match_central_differences(config, input_shape)


def assert_gradients_match_central_differences(config, input_shape):
    rng = np.random.default_rng(3)
    layer = built(input_shape, **config)
    if "b" in layer.params():
        layer.params()["b"][...] = rng.standard_normal(layer.params()["b"].shape)
    x = rng.uniform(-1.0, 1.0, (2, *input_shape))
    dy = rng.standard_normal((2, *layer.output_shape))

    def loss():
        return float(np.sum(layer.forward(x, training=True) * dy))

    layer.forward(x, training=True)
    dx = layer.backward(dy)
    analytic = {key: grad.copy() for key, grad in layer.grads().items()}
    assert max_relative_error(dx, numerical_gradient(loss, x)) < 1e-6
    for key, param in layer.params().items():
        assert max_relative_error(analytic[key], numerical_gradient(loss, param)) < 1e-6


def test_outputs_stay_valid_after_later_calls():
    """Work buffers are reused, but never behind an array handed to the caller."""
    rng = np.random.default_rng(4)
    layer = built((2, 6, 6), filters=3, kernel_size=3, padding=1)
    x1, x2 = rng.standard_normal((2, 4, 2, 6, 6))
    dy1, dy2 = rng.standard_normal((2, 4, 3, 6, 6))
    y1 = layer.forward(x1, training=True)
    y1_copy = y1.copy()
    dx1 = layer.backward(dy1)
    dx1_copy = dx1.copy()
    y2 = layer.forward(x2, training=True)
    dx2 = layer.backward(dy2)
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(dx1, dx1_copy)
    assert not np.shares_memory(y1, y2) and not np.shares_memory(dx1, dx2)


def test_backward_uses_the_latest_forward_and_overwrites_grads():
    rng = np.random.default_rng(5)
    layer = built((1, 5, 5), filters=2, kernel_size=3)
    x1, x2 = rng.standard_normal((2, 3, 1, 5, 5))
    dy = rng.standard_normal((3, 2, 3, 3))
    grad_W = layer.grads()["W"]
    layer.forward(x2, training=True)
    expected = layer.backward(dy), grad_W.copy()
    layer.forward(x1, training=True)
    layer.forward(x2, training=False)
    dx = layer.backward(dy)
    layer.backward(dy)  # a second backward overwrites, it does not accumulate
    np.testing.assert_allclose(dx, expected[0])
    np.testing.assert_allclose(layer.grads()["W"], expected[1])
    assert layer.grads()["W"] is grad_W


def test_batch_size_may_change_between_calls():
    layer = built((1, 4, 4), filters=2, kernel_size=3)
    x = np.random.default_rng(6).standard_normal((5, 1, 4, 4))
    whole = layer.forward(x, training=True)
    np.testing.assert_allclose(layer.forward(x[:2], training=True), whole[:2])
    np.testing.assert_allclose(layer.forward(x, training=True), whole)


def test_input_and_upstream_gradient_not_mutated():
    rng = np.random.default_rng(7)
    layer = built((2, 5, 5), filters=2, kernel_size=3, padding="same")
    x = rng.standard_normal((2, 2, 5, 5))
    dy = rng.standard_normal((2, 2, 5, 5))
    x_copy, dy_copy = x.copy(), dy.copy()
    layer.forward(x, training=True)
    layer.backward(dy)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dy, dy_copy)


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError):
        built((1, 4, 4), filters=1, kernel_size=3).backward(np.ones((1, 1, 2, 2)))


def test_flat_input_rejected_with_expected_received_and_fix():
    with pytest.raises(ShapeError, match=r"expects \(channels, height, width\).*received "
                       r"\(1600,\) \(1-D\)\. Fix:"):
        built((1600,), filters=4, kernel_size=3)


def test_kernel_larger_than_input_rejected():
    with pytest.raises(ShapeError, match=r"kernel_size \(5, 5\) is larger than its input "
                       r"\(3, 3\) padded to \(3, 3\).*Fix: use a smaller kernel_size"):
        built((1, 3, 3), filters=4, kernel_size=5)
    # With enough padding the same kernel fits.
    assert built((1, 3, 3), filters=4, kernel_size=5, padding=1).output_shape == (4, 1, 1)


@pytest.mark.parametrize(
    "bad",
    [
        {"filters": 0, "kernel_size": 3},
        {"filters": 4, "kernel_size": 0},
        {"filters": 4, "kernel_size": [3, 0]},
        {"filters": 4, "kernel_size": [3, 3, 3]},
        {"filters": 4, "kernel_size": 3, "stride": 0},
        {"filters": 4, "kernel_size": 3, "padding": -1},
        {"filters": 4, "kernel_size": 3, "padding": "full"},
        {"filters": 4, "kernel_size": 3, "initializer": "zeros"},
        {"filters": 4, "kernel_size": 3, "dilation": 2},
        {"filters": 4.5, "kernel_size": 3},
    ],
)
def test_bad_configs_rejected(bad):
    with pytest.raises(ValidationError):
        Conv2D(bad)


def test_config_accepts_pairs_and_round_trips_json():
    config = Conv2D.Config(filters=4, kernel_size=[3, 2], stride=(2, 1), padding=0)
    assert config.kernel_size == (3, 2) and config.stride == (2, 1)
    assert Conv2D.Config.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize("filters_in", [1, 8])
def test_no_input_gradient_when_not_needed_and_same_parameter_gradients(filters_in):
    rng = np.random.default_rng(10)
    layer = built((filters_in, 6, 6), filters=4, kernel_size=3)
    x = rng.standard_normal((2, filters_in, 6, 6))
    dy = rng.standard_normal((2, 4, 4, 4))
    layer.forward(x, training=True)
    assert layer.backward(dy) is not None
    expected = {k: g.copy() for k, g in layer.grads().items()}
    assert layer.backward(dy, input_grad=False) is None
    for key, grad in layer.grads().items():
        np.testing.assert_array_equal(grad, expected[key])


# -- groups ------------------------------------------------------------------------------
def loop_conv2d(x, W, b, groups, stride, padding, dy):
    """y, dW, db, dx of a grouped convolution by plain loops over every index, in float64:
    filter f of group g = f // (F/G) reads channels g*Cg ... g*Cg + Cg - 1 only."""
    n, c, h, w = x.shape
    f, cg, kh, kw = W.shape
    (sh, sw), ((top, bottom), (left, right)) = stride, padding
    xp = np.zeros((n, c, h + top + bottom, w + left + right))
    xp[:, :, top:top + h, left:left + w] = x
    h_out, w_out = dy.shape[2:]
    y, dW, dxp = np.zeros(dy.shape), np.zeros(W.shape), np.zeros(xp.shape)
    db = dy.sum(axis=(0, 2, 3))
    for s in range(n):
        for k in range(f):
            first = (k // (f // groups)) * cg
            for p in range(h_out):
                for q in range(w_out):
                    y[s, k, p, q] = 0.0 if b is None else b[k]
                    for ch in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                pixel = (s, first + ch, p * sh + i, q * sw + j)
                                y[s, k, p, q] += W[k, ch, i, j] * xp[pixel]
                                dW[k, ch, i, j] += dy[s, k, p, q] * xp[pixel]
                                dxp[pixel] += dy[s, k, p, q] * W[k, ch, i, j]
    return y, dW, db, dxp[:, :, top:top + h, left:left + w]


GROUPED_CASES = [  # (config, input shape): depthwise, depthwise with m filters per channel,
    # groups of several channels in either patch layout (K per group <= 32 or > 32)
    ({"filters": 3, "kernel_size": 3, "groups": 3}, (3, 5, 6)),
    ({"filters": 4, "kernel_size": [2, 3], "stride": [2, 1], "padding": "same", "groups": 2},
     (2, 5, 4)),
    ({"filters": 6, "kernel_size": 3, "stride": 2, "padding": 1, "groups": 3}, (3, 6, 7)),
    ({"filters": 4, "kernel_size": 3, "padding": 1, "groups": 2, "use_bias": False}, (4, 4, 5)),
    ({"filters": 6, "kernel_size": 3, "stride": [1, 2], "padding": "same", "groups": 2},
     (8, 5, 5)),
    ({"filters": 2, "kernel_size": 5, "padding": 2, "groups": 2}, (2, 3, 3)),
]


@pytest.mark.parametrize(("config", "input_shape"), GROUPED_CASES)
def test_groups_match_a_plain_loop_convolution(config, input_shape):
    rng = np.random.default_rng(11)
    layer = built(input_shape, **config)
    params = layer.params()
    if "b" in params:
        params["b"][...] = rng.standard_normal(params["b"].shape)
    x = rng.standard_normal((2, *input_shape))
    y = layer.forward(x, training=True)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    want = loop_conv2d(x, params["W"], params.get("b"), config["groups"], layer.stride,
                       layer.padding, dy)
    got = (y, layer.grads()["W"], layer.grads().get("b"), dx)
    for name, a, e in zip(("y", "dW", "db", "dx"), got, want, strict=True):
        if a is not None:
            np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12, err_msg=name)
    layer.forward(x, training=True)
    assert layer.backward(dy, input_grad=False) is None
    np.testing.assert_allclose(layer.grads()["W"], want[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("config", "input_shape"), GROUPED_CASES)
def test_groups_finite_difference_gradients(config, input_shape):
    assert_gradients_match_central_differences(config, input_shape)


@pytest.mark.parametrize(("config", "input_shape"), GROUPED_CASES[:2] + GROUPED_CASES[4:5])
def test_groups_keep_float32(config, input_shape):
    rng = np.random.default_rng(12)
    low, high = built(input_shape, np.float32, **config), built(input_shape, **config)
    x = rng.standard_normal((3, *input_shape))
    y = low.forward(x.astype(np.float32), training=True)
    dx = low.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == low.grads()["W"].dtype == np.float32
    np.testing.assert_allclose(y, high.forward(x, training=True), rtol=1e-5, atol=1e-5)


def test_hand_worked_depthwise_keeps_channels_apart():
    layer = built((2, 3, 3), filters=2, kernel_size=2, groups=2, use_bias=False)
    layer.params()["W"][0, 0], layer.params()["W"][1, 0] = W22, np.eye(2)
    x = np.concatenate([X3, 100 * X3], axis=1)
    y = layer.forward(x, training=True)
    # filter 0 on channel 0 alone (as in the first hand-worked test, less the bias);
    # filter 1 on channel 1 alone: x[p, q] + x[p+1, q+1] of 100 * X3
    np.testing.assert_array_equal(y[0, 0], [[37, 47], [67, 77]])
    np.testing.assert_array_equal(y[0, 1], [[600, 800], [1200, 1400]])
    dx = layer.backward(np.stack([np.zeros((2, 2)), np.ones((2, 2))])[None])
    # no gradient from filter 1 reaches channel 0, nor from filter 0 channel 1
    np.testing.assert_array_equal(dx[0, 0], np.zeros((3, 3)))
    np.testing.assert_array_equal(dx[0, 1], [[1, 1, 0], [1, 2, 1], [0, 1, 1]])
    np.testing.assert_array_equal(layer.grads()["W"][0, 0], np.zeros((2, 2)))
    np.testing.assert_array_equal(layer.grads()["W"][1, 0], [[1200, 1600], [2400, 2800]])


def test_groups_weights_are_laid_out_as_pytorch_and_onnx_lay_them_out():
    layer = built((32, 13, 13), dtype=np.float32, filters=64, kernel_size=3, groups=4)
    W = layer.params()["W"]
    assert W.shape == (64, 8, 3, 3) and W.size + layer.params()["b"].size == 4_672
    # fans (C/G)*kh*kw in and F*kh*kw out, as PyTorch computes them for this shape
    assert np.abs(W).max() <= np.sqrt(6 / (8 * 9 + 64 * 9))
    assert built((32, 13, 13), filters=32, kernel_size=3, groups=32).params()["W"].shape == \
        (32, 1, 3, 3)


@pytest.mark.parametrize(("input_shape", "config", "numbers"), [
    ((32, 13, 13), {"filters": 64, "groups": 3}, "received 32 input channels and 64 filters"),
    ((6, 8, 8), {"filters": 8, "groups": 3}, "received 6 input channels and 8 filters"),
    ((8, 8, 8), {"filters": 6, "groups": 4}, "received 8 input channels and 6 filters"),
])
def test_groups_must_divide_channels_and_filters(input_shape, config, numbers):
    groups = config["groups"]
    with pytest.raises(ShapeError, match=rf"conv2d groups = {groups} must divide both its "
                       rf"input channels and its filters; {numbers}\. Fix: choose groups "
                       r"among the common divisors"):
        built(input_shape, kernel_size=3, **config)


def test_groups_message_lists_the_common_divisors():
    with pytest.raises(ShapeError, match=r"common divisors of 12 and 18 \(1, 2, 3, 6\)"):
        built((12, 8, 8), filters=18, kernel_size=3, groups=4)


def test_groups_rejected_by_the_config_below_one():
    for bad in (0, -2, 1.5, "2"):
        with pytest.raises(ValidationError):
            Conv2D(filters=4, kernel_size=3, groups=bad)


def test_groups_1_runs_the_ungrouped_kernels_unchanged(monkeypatch):
    """groups = 1 (written or left out) calls lamina.kernels.conv2d and conv2d_backward with
    the arguments it always had, and never the grouped kernels."""
    from lamina.kernels import Workspace, conv2d_backward
    from lamina.kernels import conv2d as conv2d_kernel

    def refuse(*args, **kwargs):
        raise AssertionError("groups = 1 reached the grouped kernels")

    monkeypatch.setattr(conv2d, "grouped_conv2d", refuse)
    monkeypatch.setattr(conv2d, "grouped_conv2d_backward", refuse)
    rng = np.random.default_rng(13)
    for channels in (1, 8):  # both patch layouts
        written = built((channels, 7, 7), np.float32, filters=4, kernel_size=3, groups=1)
        x = rng.standard_normal((3, channels, 7, 7)).astype(np.float32)
        dy = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
        y, dx = written.forward(x, training=True), written.backward(dy)
        W, b = written.params()["W"], written.params()["b"]
        work = Workspace()
        y_kernel, cache = conv2d_kernel(x, W, b, (1, 1), ((0, 0), (0, 0)), work,
                                        training=True)
        dW, db = np.empty_like(W), np.empty_like(b)
        dx_kernel = conv2d_backward(dy, cache, W, dW, db, (1, 1), ((0, 0), (0, 0)), work)
        for got, want in ((y, y_kernel), (dx, dx_kernel), (written.grads()["W"], dW),
                          (written.grads()["b"], db)):
            assert got.tobytes() == want.tobytes()
    assert Conv2D(filters=4, kernel_size=3).config == Conv2D(filters=4, kernel_size=3,
                                                              groups=1).config
