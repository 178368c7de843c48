import numpy as np
import pytest
from pydantic import ValidationError

from lamina import BackwardBeforeForwardError, ShapeError
from lamina.plugins import layernorm
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(input_shape=(4,), dtype=np.float32, **settings):
    layer = layernorm.LayerNorm(**settings)
    layer.build(input_shape, np.random.default_rng(0), dtype=dtype)
    return layer


def plain_layernorm(x, gamma, beta, n_axes, eps):
    """The forward written out sample by sample and group by group in float64, as the
    derivation states it (statistics from Python's own sums)."""
    x = np.asarray(x, dtype=np.float64)
    groups = x.reshape(-1, int(np.prod(x.shape[x.ndim - n_axes:])))
    out = np.empty_like(groups)
    for row, group in enumerate(groups):
        mu = sum(group) / len(group)
        var = sum((v - mu) ** 2 for v in group) / len(group)
        out[row] = [(v - mu) / np.sqrt(var + eps) for v in group]
    return out.reshape(x.shape) * gamma + beta


def plain_input_gradient(x, gamma, dy, n_axes, eps):
    """dx from the explicit Jacobian d x_hat_i / d x_j = (s/M)(M delta_ij - 1 -
    x_hat_i x_hat_j) of each group, in float64: g = gamma * dy times it."""
    x = np.asarray(x, dtype=np.float64)
    m = int(np.prod(x.shape[x.ndim - n_axes:]))
    gs = (dy * gamma).reshape(-1, m)
    dx = np.empty_like(gs)
    for row, group in enumerate(x.reshape(-1, m)):
        s = 1 / np.sqrt(group.var() + eps)
        x_hat = (group - group.mean()) * s
        jacobian = s / m * (m * np.eye(m) - 1 - np.outer(x_hat, x_hat))
        dx[row] = gs[row] @ jacobian
    return dx.reshape(x.shape)


def test_registered_and_declares_nothing():
    assert layernorm.lamina_register_layers() == [layernorm.LayerNorm]
    assert layernorm.LayerNorm.traits == layernorm.LayerNorm.traits.__class__()


def test_defaults():
    config = layernorm.LayerNorm().config
    assert config.axis == 1 and config.epsilon == 1e-5


@pytest.mark.parametrize(("input_shape", "axis", "norm"), [
    ((3, 4, 5), 1, (3, 4, 5)),      # every per-sample axis: PyTorch LayerNorm([C, H, W])
    ((3, 4, 5), 2, (4, 5)),         # each channel's map
    ((3, 4, 5), -2, (4, 5)),
    ((3, 4, 5), 3, (5,)),
    ((3, 4, 5), -1, (5,)),          # Keras's default
    ((6,), 1, (6,)),
    ((6,), -1, (6,)),
])
def test_params_have_the_normalised_shape(input_shape, axis, norm):
    layer = built(input_shape, axis=axis)
    assert layer.output_shape == input_shape
    np.testing.assert_array_equal(layer.params()["gamma"], np.ones(norm))
    np.testing.assert_array_equal(layer.params()["beta"], np.zeros(norm))
    assert set(layer.grads()) == {"gamma", "beta"} and layer.state() == {}


def test_hand_worked_values():
    # docs/layers/layernorm.md: epsilon 1 makes var + eps = 3 + 1 a square.
    layer = built((4,), dtype=np.float64, epsilon=1.0)
    layer.params()["gamma"][...] = [1.0, 2.0, -1.0, 0.5]
    layer.params()["beta"][...] = [0.0, 1.0, 0.0, -1.0]
    x = np.array([[1.0, 1.0, 1.0, 5.0], [7.0, 7.0, 7.0, 7.0]])
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, [[-0.5, 0.0, 0.5, -0.25], [0.0, 1.0, 0.0, -1.0]])
    dx = layer.backward(np.array([[1.0, 0.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(dx, [[5 / 16, -3 / 16, -3 / 16, 1 / 16],
                                    [3 / 8, 11 / 8, -13 / 8, -1 / 8]], atol=1e-15)
    np.testing.assert_array_equal(layer.grads()["gamma"], [-0.5, 0.0, 0.0, 3.0])
    np.testing.assert_array_equal(layer.grads()["beta"], [2.0, 1.0, 1.0, 3.0])


def test_image_default_normalises_the_whole_sample():
    rng = np.random.default_rng(1)
    layer = built((3, 4, 5), dtype=np.float64)
    offsets = np.array([10.0, -5.0, 0.0]).reshape(1, 3, 1, 1)
    x = rng.normal(size=(2, 3, 4, 5)) + offsets
    y = layer.forward(x, training=False)
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), [0.0, 0.0], atol=1e-12)
    var = x.var(axis=(1, 2, 3))
    np.testing.assert_allclose(y.var(axis=(1, 2, 3)), var / (var + 1e-5), rtol=1e-12)
    # the channels keep their offsets relative to each other: not normalised one by one
    assert y[:, 0].mean() > 0.5 and y[:, 1].mean() < -0.5


@pytest.mark.parametrize(("axis", "stat_axes"), [(2, (2, 3)), (-1, (3,))])
def test_image_trailing_axes(axis, stat_axes):
    rng = np.random.default_rng(2)
    layer = built((3, 4, 5), dtype=np.float64, axis=axis)
    x = rng.normal(size=(2, 3, 4, 5)) * 3 + 7
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=stat_axes), 0.0, atol=1e-12)
    var = x.var(axis=stat_axes)
    np.testing.assert_allclose(y.var(axis=stat_axes), var / (var + 1e-5), rtol=1e-12)


@pytest.mark.parametrize(("input_shape", "axis"), [((6,), 1), ((3, 4, 5), 1), ((3, 4, 5), 2),
                                                   ((3, 4, 5), -1), ((2, 3, 4), -2)])
@pytest.mark.parametrize("training", [True, False])
def test_forward_and_gradient_match_the_plain_derivation(input_shape, axis, training):
    rng = np.random.default_rng(3)
    layer = built(input_shape, dtype=np.float64, axis=axis, epsilon=1e-3)
    gamma, beta = layer.params()["gamma"], layer.params()["beta"]
    gamma[...] = rng.uniform(0.5, 2.0, size=gamma.shape) * rng.choice([-1, 1], gamma.shape)
    beta[...] = rng.normal(size=beta.shape)
    x = rng.normal(size=(3, *input_shape)) * 2 + 1
    dy = rng.normal(size=x.shape)
    n_axes = gamma.ndim
    np.testing.assert_allclose(layer.forward(x, training=training),
                               plain_layernorm(x, gamma, beta, n_axes, 1e-3), rtol=1e-12,
                               atol=1e-12)
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx, plain_input_gradient(x, gamma, dy, n_axes, 1e-3),
                               rtol=1e-10, atol=1e-12)
    lead = tuple(range(x.ndim - n_axes))
    x_hat = plain_layernorm(x, 1.0, 0.0, n_axes, 1e-3)
    np.testing.assert_allclose(layer.grads()["gamma"], (dy * x_hat).sum(axis=lead), rtol=1e-12)
    np.testing.assert_allclose(layer.grads()["beta"], dy.sum(axis=lead), rtol=1e-12)

    def loss():
        return np.sum(layer.forward(x, training=training) * dy)

    assert max_relative_error(dx, numerical_gradient(loss, x)) < 1e-6
    for key, param in layer.params().items():
        assert max_relative_error(layer.grads()[key], numerical_gradient(loss, param)) < 1e-6


def test_input_gradient_sums_to_zero_per_group():
    rng = np.random.default_rng(4)
    layer = built((3, 4), dtype=np.float64, axis=-1, epsilon=0.5)
    layer.params()["gamma"][...] = rng.normal(size=4)
    x, dy = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 3, 4))
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx.sum(axis=-1), 0.0, atol=1e-13)
    # and the component along x_hat is eps / (var + eps) of sum(g * x_hat) times s
    var = x.var(axis=-1)
    s = 1 / np.sqrt(var + 0.5)
    x_hat = (x - x.mean(axis=-1, keepdims=True)) * s[..., None]
    g = dy * layer.params()["gamma"]
    np.testing.assert_allclose((dx * x_hat).sum(axis=-1),
                               s * 0.5 / (var + 0.5) * (g * x_hat).sum(axis=-1), rtol=1e-10)


def test_samples_do_not_interact():
    rng = np.random.default_rng(5)
    layer = built((2, 3, 3), dtype=np.float64)
    x = rng.normal(size=(4, 2, 3, 3))
    y = layer.forward(x, training=True)
    for n in range(4):
        np.testing.assert_allclose(layer.forward(x[n:n + 1], training=True), y[n:n + 1],
                                   rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("noise", [1.0, 0.01])
def test_float32_stable_at_a_large_offset(noise):
    """x = 1e4 + noise in float32 agrees with float64 on the same float32 inputs."""
    rng = np.random.default_rng(6)
    x = (1e4 + noise * rng.normal(size=(4, 2, 3, 5))).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    low, high = built((2, 3, 5), dtype=np.float32), built((2, 3, 5), dtype=np.float64)
    y = low.forward(x, training=True)
    expected = high.forward(x.astype(np.float64), training=True)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, atol=2e-5)
    dx, dx_expected = low.backward(dy), high.backward(dy.astype(np.float64))
    np.testing.assert_allclose(dx, dx_expected, atol=2e-5 * np.abs(dx_expected).max())
    np.testing.assert_allclose(low.grads()["gamma"], high.grads()["gamma"], atol=1e-4)
    # what the inputs are chosen to catch: the one-pass variance in float32 is far off
    mu = x.mean(axis=(1, 2, 3), keepdims=True)
    one_pass = (x * x).mean(axis=(1, 2, 3), keepdims=True) - mu * mu
    naive = (x - mu) / np.sqrt(np.maximum(one_pass, 0) + np.float32(1e-5))
    assert np.abs(naive - expected).max() > 0.1


def test_float32_plain_two_pass_would_drift_where_the_layer_does_not():
    """At 1e4 + 0.01 noise the float32 mean's own rounding is a visible share of the
    spread: two passes without the second centring are off, the layer is not."""
    rng = np.random.default_rng(7)
    x = (1e4 + 0.01 * rng.normal(size=(4, 20))).astype(np.float32)
    expected = plain_layernorm(x, 1.0, 0.0, 1, 1e-5)
    d = x - x.mean(axis=1, keepdims=True)
    two_pass = d / np.sqrt((d * d).mean(axis=1, keepdims=True) + np.float32(1e-5))
    assert np.abs(two_pass - expected).max() > 1e-2
    y = built((20,), dtype=np.float32).forward(x, training=True)
    np.testing.assert_allclose(y, expected, atol=2e-5)


def test_constant_sample_gives_beta_and_a_finite_gradient():
    layer = built((5,), dtype=np.float32)
    layer.params()["beta"][...] = [1, 2, 3, 4, 5]
    x = np.full((2, 5), 3.25, dtype=np.float32)
    np.testing.assert_array_equal(layer.forward(x, training=True), [[1, 2, 3, 4, 5]] * 2)
    dx = layer.backward(np.ones((2, 5), dtype=np.float32) * [1, 0, 0, 0, -1])
    # x_hat = 0 and s = 1/sqrt(eps): dx = s (g - mean g) with mean g = 0
    np.testing.assert_allclose(dx, [[1, 0, 0, 0, -1]] * 2 / np.sqrt(np.float32(1e-5)),
                               rtol=1e-6)


@pytest.mark.parametrize(("input_shape", "settings", "message"), [
    ((), {}, r"received a scalar shape \(\)"),
    ((3, 4, 4), {"axis": 4}, r"axis 4 is not an axis of its input \(N, 3, 4, 4\).*1 to 3 or "
                             r"from -3 to -1"),
    ((3, 4, 4), {"axis": -4}, r"axis -4 is not an axis"),
    ((3, 4, 1), {"axis": -1}, r"groups of \(1,\).*a single entry"),
    ((1,), {}, r"a single entry"),
])
def test_unfit_inputs_rejected(input_shape, settings, message):
    with pytest.raises(ShapeError, match=message):
        built(input_shape, **settings)


@pytest.mark.parametrize("settings", [
    {"axis": 0}, {"axis": 65}, {"axis": -65}, {"axis": 1.0}, {"axis": "1"},
    {"epsilon": 0.0}, {"epsilon": 1e-13}, {"epsilon": -1.0}, {"epsilon": "1e-5"},
    {"eps": 1e-5}, {"normalized_shape": [4]},
])
def test_bad_config_rejected(settings):
    with pytest.raises(ValidationError):
        layernorm.LayerNorm(**settings)


def test_batch_axis_refused_with_the_fix():
    with pytest.raises(ValidationError, match="axis 0 is the batch axis.*Use axis = 1"):
        layernorm.LayerNorm(axis=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept_and_input_untouched(dtype):
    layer = built((2, 3, 3), dtype=dtype)
    x = np.random.default_rng(8).normal(size=(4, 2, 3, 3)).astype(dtype)
    x_before = x.copy()
    y = layer.forward(x, training=True)
    assert y.dtype == dtype and layer.backward(np.ones_like(y)).dtype == dtype
    assert all(g.dtype == dtype for g in layer.grads().values())
    np.testing.assert_array_equal(x, x_before)


def test_backward_without_input_grad_fills_the_same_gradients():
    rng = np.random.default_rng(9)
    layer = built((3, 4), dtype=np.float64, axis=-1)
    x, dy = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    layer.forward(x, training=True)
    layer.backward(dy)
    expected = {k: v.copy() for k, v in layer.grads().items()}
    assert layer.backward(dy, input_grad=False) is None
    for key, value in expected.items():
        np.testing.assert_array_equal(layer.grads()[key], value)


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="layernorm"):
        built().backward(np.ones((2, 4), dtype=np.float32))


# -- ONNX ---------------------------------------------------------------------------------
def exported_session(layer, input_shape, opset):
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    from lamina.export import OnnxGraph, assemble

    graph = OnnxGraph(opset=opset, taken={"x", "y"})
    out = layer.export_onnx(graph, ["x"], "ln")
    graph.nodes.append(("Identity", [out], "y", {}))
    model = assemble(graph, [("x", ["N", *input_shape])], [("y", ["N", *input_shape])], "")
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return model, session


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize(("input_shape", "axis"), [((2, 3, 5), 1), ((2, 3, 5), -1), ((6,), 1)])
def test_export_matches_forward_at_a_large_offset(opset, input_shape, axis):
    rng = np.random.default_rng(10)
    layer = built(input_shape, axis=axis)
    layer.params()["gamma"][...] = rng.normal(size=layer.params()["gamma"].shape)
    layer.params()["beta"][...] = rng.normal(size=layer.params()["beta"].shape)
    model, session = exported_session(layer, input_shape, opset)
    ops = [node.op_type for node in model.graph.node]
    assert "LayerNormalization" not in ops and ops.count("ReduceMean") == 3
    reduce_mean = next(node for node in model.graph.node if node.op_type == "ReduceMean")
    assert ([a.name for a in reduce_mean.attribute if a.name == "axes"] == ["axes"]) == (
        opset < 18)
    for x in [rng.uniform(-1, 1, size=(3, *input_shape)),
              1e4 + 0.01 * rng.normal(size=(1, *input_shape))]:
        x = x.astype(np.float32)
        [got] = session.run(["y"], {"x": x})
        np.testing.assert_allclose(got, layer.forward(x, training=False), atol=1e-5)
