import math

import numpy as np
import pytest
from pydantic import ValidationError

import lamina
from lamina import BackwardBeforeForwardError, DataError
from lamina.plugins import mse
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def reference(z, y):
    """The mean squared error and its gradient, entry by entry in Python floats."""
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64).reshape(z.shape)
    n, c = z.shape
    errors = [float(a) - float(b) for a, b in zip(z.flat, y.flat, strict=True)]
    value = math.fsum(e * e for e in errors) / (n * c)
    grad = [[2 * (float(z[i, j]) - float(y[i, j])) / (n * c) for j in range(c)]
            for i in range(n)]
    return value, np.array(grad)


def test_registered_through_the_loss_hook_as_a_value_loss():
    assert mse.lamina_register_losses() == [mse.MSE]
    assert mse.MSE.traits.targets == ("values",) and not mse.MSE.traits.classifies
    assert [e.n_classes for e in mse.MSE.examples()] == [3, 1]


def test_config_is_empty_and_strict():
    assert mse.MSE({}).config.model_dump() == {}
    with pytest.raises(ValidationError):
        mse.MSE(reduction="sum")


def test_hand_worked_value_and_gradient():
    # docs/losses/mse.md: d = [1, -2, 0.5], L = 5.25 / 3, dz = 2 d / 3
    loss = mse.MSE()
    assert loss.forward(np.array([[2.0, -1.0, 0.5]]), np.array([[1.0, 1.0, 0.0]])) == 1.75
    np.testing.assert_allclose(loss.backward(), [[2 / 3, -4 / 3, 1 / 3]], rtol=1e-15)


@pytest.mark.parametrize("shape", [(5, 3), (1, 1), (7, 1), (2, 10)])
def test_agrees_with_an_independent_float64_computation(shape):
    rng = np.random.default_rng(sum(shape))
    z, y = rng.normal(0, 3, shape), rng.normal(0, 3, shape)
    loss = mse.MSE()
    value, dz = loss.forward(z, y), loss.backward()
    want_value, want_dz = reference(z, y)
    assert value == pytest.approx(want_value, rel=1e-14)
    np.testing.assert_allclose(dz, want_dz, rtol=1e-14, atol=1e-16)


def test_one_output_takes_targets_of_shape_n():
    loss = mse.MSE()
    z = np.array([[3.0], [1.0]])
    assert loss.forward(z, np.array([2.5, 2.0])) == 0.625
    np.testing.assert_array_equal(loss.backward(), [[0.5], [-1.0]])
    assert loss.forward(z, np.array([3, 1])) == 0.0  # integer targets are numbers too


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keeps_the_dtype_and_stays_finite_at_large_outputs(dtype):
    loss = mse.MSE()
    z = np.array([[1e4, -1e4], [0.0, 5.0]], dtype=dtype)
    value = loss.forward(z, np.array([[0.0, 0.0], [0.0, 5.0]]))
    dz = loss.backward()
    assert value == pytest.approx(2e8 / 4) and dz.dtype == dtype
    np.testing.assert_allclose(dz, [[5e3, -5e3], [0.0, 0.0]])


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    z, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    loss = mse.MSE()
    loss.forward(z, y)
    dz = loss.backward()
    numeric = numerical_gradient(lambda: loss.forward(z, y), z, h=1e-5)
    assert max_relative_error(dz, numeric) < 1e-8


def test_predictions_are_the_outputs_themselves_as_a_copy():
    z = np.array([[1.5, -2.0]], dtype=np.float32)
    p = mse.MSE().predict_proba(z)
    np.testing.assert_array_equal(p, z)
    assert p.dtype == np.float32 and not np.shares_memory(p, z)


@pytest.mark.parametrize(("targets", "message"), [
    (np.array([0, 2]), "one-hot them with np.eye\\(3\\)\\[y\\]"),
    (np.zeros((2, 2)), "shape \\(2, 3\\); received an array of shape \\(2, 2\\)"),
    (np.array([[np.nan, 0, 0], [0, 0, 0]]), "NaN or infinite"),
])
def test_targets_that_do_not_fit_are_refused(targets, message):
    with pytest.raises(DataError, match=message):
        mse.MSE().forward(np.zeros((2, 3)), targets)


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="mse"):
        mse.MSE().backward()


def test_exported_as_an_identity_that_onnx_runtime_agrees_with():
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from lamina.export import to_onnx

    model = lamina.Model({
        "model": {"input_shape": [4], "layers": [{"type": "dense", "units": 2}]},
        "loss": {"type": "mse"}, "optimizer": {"type": "sgd", "lr": 0.1}}, seed=0)
    proto = to_onnx(model.network, model.loss)
    assert [node.op_type for node in proto.graph.node][-2:] == ["Identity", "Identity"]
    session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    [got] = session.run(["probabilities"], {"x": x})
    np.testing.assert_allclose(got, model.predict(x), atol=1e-6, rtol=0)
