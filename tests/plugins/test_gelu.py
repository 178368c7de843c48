import math

import numpy as np
import pytest

from lamina.config.strict import validate_settings
from lamina.plugins import gelu


def built(shape=(4,), dtype=np.float64, **settings):
    layer = gelu.GELU(**settings)
    layer.build(shape, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_through_the_layer_hook():
    assert gelu.lamina_register_layers() == [gelu.GELU]
    assert gelu.GELU.name == "gelu"
    assert not gelu.GELU.traits.monotone_elementwise  # its minimum is near x = -0.75


def test_exact_by_default_and_x_phi_of_x_as_math_erf_gives_it():
    """Within float64 rounding of x (1 + erf(x / sqrt(2))) / 2 where that does not cancel
    (x >= -1); below, erfc keeps digits that this form loses (the next test)."""
    x = np.linspace(-1, 6, 701)[None]
    y = built((701,)).forward(x, training=False)
    expected = [v * (1 + math.erf(v / math.sqrt(2))) / 2 for v in x[0]]
    assert built().config.approximate == "none"
    np.testing.assert_allclose(y[0], expected, rtol=1e-15, atol=0)


def test_the_lower_tail_keeps_its_relative_accuracy():
    # -10 Phi(-10) = -7.6198530241605e-23; (1 + erf(-10 / sqrt(2))) / 2 is exactly 0
    y = built((1,)).forward(np.array([[-10.0]]), training=False)
    np.testing.assert_allclose(y, [[-7.6198530241605260e-23]], rtol=1e-13)


def test_the_tanh_form_is_pytorch_s_formula():
    x = np.linspace(-6, 6, 97)[None]
    y = built((97,), approximate="tanh").forward(x, training=False)
    u = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
    np.testing.assert_allclose(y, 0.5 * x * (1 + np.tanh(u)), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_far_out_the_gate_is_exactly_0_or_1(approximate):
    layer = built((4,), np.float32, approximate=approximate)
    x = np.array([[-3e38, -41.0, 41.0, 3e38]], dtype=np.float32)
    with np.errstate(all="raise", under="ignore"):
        y = layer.forward(x, training=True)
        dx = layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 1.0, 1.0]])


def test_a_misspelt_form_gets_the_closest_choice():
    _, issues = validate_settings(gelu.GELUConfig, {"approximate": "tahn"}, "layer")
    assert len(issues) == 1 and "did you mean 'tanh'?" in str(issues[0])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_onnx_runtime_agrees_far_beyond_the_examples_range(approximate):
    """The export composes Erf or Sigmoid with Mul and Add (opset 17 has no Gelu)."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from lamina.export import layer_to_onnx

    layer = built((9,), np.float32, approximate=approximate)
    x = np.array([[-3e38, -50.0, -6.0, -0.75, 0.0, 0.5, 3.0, 50.0, 3e38]], dtype=np.float32)
    ops = {node.op_type for node in layer_to_onnx(layer, [(9,)]).graph.node}
    assert ("Erf" in ops) == (approximate == "none") and "Gelu" not in ops
    session = onnxruntime.InferenceSession(layer_to_onnx(layer, [(9,)]).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    [got] = session.run(["y"], {"x0": x})
    expected = layer.forward(x, training=False)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
