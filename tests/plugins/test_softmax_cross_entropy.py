import numpy as np
import pytest
from pydantic import ValidationError

from lamina import BackwardBeforeForwardError, DataError
from lamina.plugins import softmax_cross_entropy as sce
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def test_registered_through_the_loss_hook():
    assert sce.lamina_register_losses() == [sce.SoftmaxCrossEntropy]
    assert [e.n_classes for e in sce.SoftmaxCrossEntropy.examples()] == [3, 10]


def test_config_is_empty_and_strict():
    assert sce.SoftmaxCrossEntropy({}).config.model_dump() == {}
    with pytest.raises(ValidationError):
        sce.SoftmaxCrossEntropy(label_smoothing=0.1)


def test_hand_worked_probabilities_loss_and_gradient():
    # exp(2) = 7.389, exp(1) = 2.718, exp(0.1) = 1.105; their sum is 11.212.
    loss = sce.SoftmaxCrossEntropy()
    logits = np.array([[2.0, 1.0, 0.1]])
    np.testing.assert_allclose(loss.predict_proba(logits), [[0.659, 0.242, 0.099]], atol=1e-3)
    value = loss.forward(logits, np.array([2]))
    assert value == pytest.approx(-np.log(np.exp(0.1) / (np.exp(2) + np.exp(1) + np.exp(0.1))))
    assert value == pytest.approx(2.317, abs=1e-3)
    np.testing.assert_allclose(loss.backward(), [[0.659, 0.242, -0.901]], atol=1e-3)


def test_confident_prediction_has_a_small_gradient():
    # p_2 = 1 / (1 + exp(-4.9) + exp(-4.8)) = 0.984566, so dL/dz_2 = p_2 - 1 = -0.015434.
    loss = sce.SoftmaxCrossEntropy()
    loss.forward(np.array([[0.1, 0.2, 5.0]]), np.array([2]))
    dz = loss.backward()
    assert dz[0, 2] == pytest.approx(-0.0154344, abs=1e-7)
    assert round(abs(dz[0, 2]), 2) == 0.02
    assert dz.sum() == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_stay_finite(dtype):
    loss = sce.SoftmaxCrossEntropy()
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=dtype)
    value = loss.forward(logits, np.array([1, 2]))
    dz = loss.backward()
    # Sample 0 is wrong by 2e4 nats, sample 1 exactly right: the mean is 1e4.
    assert np.isfinite(value) and value == pytest.approx(1e4)
    assert dz.dtype == dtype and np.all(np.isfinite(dz))
    np.testing.assert_allclose(dz, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]])
    assert np.all(np.isfinite(loss.predict_proba(logits)))


def test_indices_and_one_hot_agree():
    logits = np.random.default_rng(7).normal(size=(4, 5))
    indices = np.array([0, 4, 2, 2])
    a, b = sce.SoftmaxCrossEntropy(), sce.SoftmaxCrossEntropy()
    assert a.forward(logits, indices) == b.forward(logits, np.eye(5)[indices])
    np.testing.assert_array_equal(a.backward(), b.backward())
    assert a.forward(logits, indices.astype(np.uint8)) == b.forward(logits, indices)


def test_soft_labels_hand_worked():
    # Uniform logits: p = [1/2, 1/2]; y = [0.25, 0.75]: loss log 2, gradient p - y.
    loss = sce.SoftmaxCrossEntropy()
    value = loss.forward(np.zeros((1, 2)), np.array([[0.25, 0.75]]))
    assert value == pytest.approx(np.log(2))
    np.testing.assert_allclose(loss.backward(), [[0.25, -0.25]])


def test_float32_soft_labels_from_a_softmax_accepted():
    logits = np.random.default_rng(8).normal(size=(6, 100)).astype(np.float32)
    targets = sce.SoftmaxCrossEntropy().predict_proba(logits[::-1].copy())
    assert targets.dtype == np.float32
    assert np.isfinite(sce.SoftmaxCrossEntropy().forward(logits, targets))


def test_gradient_is_divided_by_batch_size_and_keeps_dtype():
    loss = sce.SoftmaxCrossEntropy()
    logits = np.array([[2.0, 1.0, 0.1]] * 4, dtype=np.float32)
    loss.forward(logits, np.array([2, 2, 2, 2]))
    dz = loss.backward()
    assert dz.dtype == np.float32
    np.testing.assert_allclose(dz[0], np.array([0.659, 0.242, -0.901]) / 4, atol=1e-3)


def test_loss_invariant_to_a_constant_per_row():
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(3, 4))
    shift = np.array([[100.0], [-7.5], [0.25]])
    targets = np.array([1, 3, 0])
    a, b = sce.SoftmaxCrossEntropy(), sce.SoftmaxCrossEntropy()
    assert a.forward(logits, targets) == pytest.approx(b.forward(logits + shift, targets))
    np.testing.assert_allclose(a.backward(), b.backward(), atol=1e-15)


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (np.array([0, 3]), "values in \\[0, 3\\)"),
        (np.array([-1, 0]), "received indices from -1"),
        (np.array([0.0, 1.0]), "dtype float64"),
        (np.array([0, 1, 2]), "received 3 indices for 2"),
        (np.array([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]]), "row 0 summing to 1.5"),
        (np.array([[1.5, -0.5, 0.0], [1.0, 0.0, 0.0]]), "negative values"),
        (np.array([[np.nan, 1.0, 0.0], [1.0, 0.0, 0.0]]), "NaN"),
        (np.eye(3)[:2, :2], "shape \\(2, 2\\)"),
        (np.zeros((2, 3, 1)), "shape \\(2, 3, 1\\)"),
        (np.array(["a", "b"]), "dtype"),
    ],
)
def test_invalid_targets_rejected(targets, message):
    with pytest.raises(DataError, match=message):
        sce.SoftmaxCrossEntropy().forward(np.zeros((2, 3)), targets)


def test_logits_must_be_a_batch_of_rows():
    with pytest.raises(DataError, match="logits of shape \\(N, C\\)"):
        sce.SoftmaxCrossEntropy().forward(np.zeros(3), np.array([0]))


@pytest.mark.parametrize("soft", [False, True])
def test_gradient_matches_finite_differences(soft):
    rng = np.random.default_rng(10)
    logits = rng.normal(size=(4, 5))
    if soft:
        targets = rng.uniform(0.1, 1.0, size=(4, 5))
        targets /= targets.sum(axis=1, keepdims=True)
    else:
        targets = np.array([1, 0, 4, 4])
    loss = sce.SoftmaxCrossEntropy()
    loss.forward(logits, targets)
    dz = loss.backward()
    numeric = numerical_gradient(lambda: loss.forward(logits, targets), logits, h=1e-5)
    assert max_relative_error(dz, numeric) < 1e-6


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="softmax_cross_entropy"):
        sce.SoftmaxCrossEntropy().backward()
