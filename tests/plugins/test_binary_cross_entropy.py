import math

import numpy as np
import pytest
from pydantic import ValidationError

import lamina
from lamina import BackwardBeforeForwardError, DataError
from lamina.plugins import binary_cross_entropy as bce
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def reference(z, y):
    """The textbook formula, entry by entry in Python floats: p = 1 / (1 + exp(-z)),
    l = -(y log p + (1 - y) log(1 - p)), dl/dz = p - y; means over every entry.
    Accurate for |z| up to ~30 (beyond, 1 - p rounds to 0)."""
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64).reshape(z.shape)
    size = z.size
    p = [1 / (1 + math.exp(-float(a))) for a in z.flat]
    losses = [-(float(t) * math.log(q) + (1 - float(t)) * math.log(1 - q))
              for q, t in zip(p, y.flat, strict=True)]
    grad = [(q - float(t)) / size for q, t in zip(p, y.flat, strict=True)]
    return math.fsum(losses) / size, np.array(grad).reshape(z.shape), np.array(p).reshape(z.shape)


def test_registered_through_the_loss_hook_as_a_multilabel_loss():
    assert bce.lamina_register_losses() == [bce.BinaryCrossEntropy]
    assert bce.BinaryCrossEntropy.traits.targets == ("multilabel",)
    assert not bce.BinaryCrossEntropy.traits.classifies


def test_config_is_empty_and_strict():
    assert bce.BinaryCrossEntropy({}).config.model_dump() == {}
    with pytest.raises(ValidationError):
        bce.BinaryCrossEntropy(pos_weight=2.0)


def test_hand_worked_value_gradient_and_probabilities():
    # docs/losses/binary_cross_entropy.md: log 2 + (2 + log(1 + e^-2)) + (3 + log(1 + e^-3))
    loss = bce.BinaryCrossEntropy()
    value = loss.forward(np.array([[0.0, 2.0, -3.0]]), np.array([[1, 0, 1]]))
    assert value == pytest.approx((math.log(2) + 2 + math.log1p(math.exp(-2)) + 3
                                   + math.log1p(math.exp(-3))) / 3, rel=1e-15)
    assert value == pytest.approx(1.956221, abs=1e-6)
    np.testing.assert_allclose(loss.backward(), [[-0.166667, 0.293599, -0.317525]], atol=1e-6)
    np.testing.assert_allclose(loss.predict_proba(np.array([[0.0, 2.0, -3.0]])),
                               [[0.5, 0.880797, 0.047426]], atol=1e-6)


@pytest.mark.parametrize(("shape", "binary"), [((5, 3), False), ((5, 3), True), ((1, 1), True),
                                               ((6, 1), False), ((2, 10), True)])
def test_agrees_with_the_textbook_formula_in_float64(shape, binary):
    rng = np.random.default_rng(sum(shape) + binary)
    z = rng.normal(0, 4, shape)
    y = (rng.random(shape) < 0.5).astype(float) if binary else rng.random(shape)
    loss = bce.BinaryCrossEntropy()
    value, dz = loss.forward(z, y), loss.backward()
    want_value, want_dz, want_p = reference(z, y)
    assert value == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(dz, want_dz, rtol=1e-12, atol=1e-17)
    np.testing.assert_allclose(loss.predict_proba(z), want_p, rtol=1e-13)


def test_one_output_takes_labels_or_probabilities_of_shape_n():
    loss = bce.BinaryCrossEntropy()
    z = np.array([[1.0], [-1.0]])
    value = loss.forward(z, np.array([1.0, 0.25]))
    assert value == pytest.approx(reference(z, [1.0, 0.25])[0], rel=1e-14)
    assert value == pytest.approx(0.438262, abs=1e-6)
    assert loss.forward(z, np.array([True, False])) == pytest.approx(
        reference(z, [1, 0])[0], rel=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_at_any_finite_logit_in_its_dtype(dtype):
    big = float(np.finfo(dtype).max) / 2
    z = np.array([[1e4, -1e4, 1e4, -1e4, 100.0, -100.0, big, -big]], dtype=dtype)
    y = np.array([[0, 1, 1, 0, 0, 1, 1, 0]], dtype=float)
    loss = bce.BinaryCrossEntropy()
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        value = loss.forward(z, y)
        dz = loss.backward()
        p = loss.predict_proba(z)
    # wrong by 1e4 twice and by 100 twice, right (to underflow) four times; mean over 8
    assert value == pytest.approx((2e4 + 200) / 8, rel=1e-6)
    assert dz.dtype == dtype and p.dtype == dtype
    np.testing.assert_allclose(dz * 8, [[1, -1, 0, 0, 1, -1, 0, 0]], atol=1e-6)
    np.testing.assert_array_equal(p[0, [0, 2, 6]], 1.0)
    np.testing.assert_array_equal(p[0, [1, 3, 7]], 0.0)


def test_small_probabilities_keep_their_relative_accuracy():
    z = np.array([[-20.0, -50.0, -80.0]], dtype=np.float32)
    p = bce.BinaryCrossEntropy().predict_proba(z)
    exact = np.exp(z.astype(np.float64)) / (1 + np.exp(z.astype(np.float64)))
    np.testing.assert_allclose(p, exact, rtol=3e-7)


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(4)
    z, y = rng.normal(0, 5, (8, 4)), rng.random((8, 4))
    a, b = bce.BinaryCrossEntropy(), bce.BinaryCrossEntropy()
    assert a.forward(z.astype(np.float32), y) == pytest.approx(b.forward(z, y), rel=1e-6)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-5, atol=1e-8)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    z, y = rng.normal(0, 2, (4, 3)), rng.random((4, 3))
    loss = bce.BinaryCrossEntropy()
    loss.forward(z, y)
    dz = loss.backward()
    numeric = numerical_gradient(lambda: loss.forward(z, y), z, h=1e-5)
    assert max_relative_error(dz, numeric) < 1e-7


@pytest.mark.parametrize(("targets", "message"), [
    (np.array([[0.5, 1.5, 0.0], [0, 0, 1]]), "received values from 0 to 1.5, outside \\[0, 1\\]"),
    (np.array([[-1.0, 0, 0], [0, 0, 1]]), "outside \\[0, 1\\].*such as mse"),
    (np.array([2, 0]), "class indices .*np.eye\\(3\\)\\[y\\]"),
    (np.array([[np.inf, 0, 0], [0, 0, 1]]), "NaN or infinite"),
])
def test_targets_outside_the_unit_interval_or_indices_are_refused(targets, message):
    with pytest.raises(DataError, match=message):
        bce.BinaryCrossEntropy().forward(np.zeros((2, 3)), targets)


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="binary_cross_entropy"):
        bce.BinaryCrossEntropy().backward()


def test_exported_as_a_sigmoid_that_onnx_runtime_agrees_with():
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from lamina.export import to_onnx

    model = lamina.Model({
        "model": {"input_shape": [4], "layers": [{"type": "dense", "units": 3}]},
        "loss": {"type": "binary_cross_entropy"}, "optimizer": {"type": "sgd", "lr": 0.1}},
        seed=0)
    for value in model.network.params().values():
        value *= 20  # logits far into both tails
    proto = to_onnx(model.network, model.loss)
    assert [node.op_type for node in proto.graph.node][-2:] == ["Sigmoid", "Identity"]
    session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    [got] = session.run(["probabilities"], {"x": x})
    np.testing.assert_allclose(got, model.predict(x), atol=1e-6, rtol=0)
