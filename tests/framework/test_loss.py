"""The loss contract: the two kinds of loss LossTraits declares, and the targets each takes
(lamina.loss.as_target_rows), with messages that say what to pass."""

from __future__ import annotations

import numpy as np
import pytest

from lamina import DataError, LossTraits, as_target_rows
from lamina.loss import CLASS_TARGETS, TARGET_FORMS, VALUE_TARGETS

VALUES, MULTILABEL = ("values",), ("multilabel",)


def test_the_forms_and_the_two_kinds_of_loss():
    assert TARGET_FORMS == CLASS_TARGETS + VALUE_TARGETS == (
        "indices", "one_hot", "soft", "values", "multilabel")
    assert LossTraits().targets == CLASS_TARGETS and LossTraits().classifies
    assert LossTraits(targets=("indices",)).classifies
    assert not LossTraits(targets=VALUES).classifies
    assert not LossTraits(targets=("multilabel", "values")).classifies
    with pytest.raises(AttributeError):
        LossTraits().classifies = False  # read-only: it follows from targets


@pytest.mark.parametrize(("traits", "message"), [
    ({"targets": ("indices", "values")}, "mixes class forms \\('indices',\\) with value forms "
                                         "\\('values',\\)"),
    ({"targets": ("one_hot", "multilabel")}, "either a classification loss .* or a value loss"),
    ({"targets": ("one_hot",)}, "must include 'indices' for a classification loss"),
    ({"targets": ("regression",)}, "must be a subset of"),
    ({"targets": ()}, "must be a subset of"),
    ({"targets": VALUES, "softmax_cross_entropy": True}, "a value loss .* leaves it None or "
                                                         "False"),
])
def test_mixed_or_unknown_declarations_are_refused(traits, message):
    with pytest.raises(TypeError, match=message):
        LossTraits(**traits)


def test_a_value_loss_may_say_it_is_no_softmax():
    assert LossTraits(targets=MULTILABEL, softmax_cross_entropy=False).targets == MULTILABEL


def test_value_rows_are_checked_and_cast_to_the_logits_dtype():
    y = np.array([[1.5, -2.0], [0.0, 1e3]])
    rows = as_target_rows(y, 2, 2, np.float32, accept=VALUES)
    assert rows.dtype == np.float32 and np.array_equal(rows, y.astype(np.float32))
    # integers and booleans are numbers too; one-hot rows are real-valued rows
    assert as_target_rows(np.eye(3, dtype=int), 3, 3, accept=VALUES).dtype == np.float64
    np.testing.assert_array_equal(as_target_rows(np.array([[True, False]]), 1, 2,
                                                 accept=MULTILABEL), [[1.0, 0.0]])


def test_one_output_takes_a_1d_array_as_a_column():
    rows = as_target_rows(np.array([0.5, 2.0, -1.0]), 3, 1, accept=VALUES)
    assert rows.shape == (3, 1) and rows[:, 0].tolist() == [0.5, 2.0, -1.0]
    # 0/1 labels of one sigmoid output, as integers
    labels = as_target_rows(np.array([1, 0, 1]), 3, 1, np.float32, accept=MULTILABEL)
    assert labels.shape == (3, 1) and labels.dtype == np.float32


@pytest.mark.parametrize(("targets", "accept", "message"), [
    (np.array([0, 2, 1]), VALUES,
     "received class indices \\(a 1-D array of integers\\), which it does not take: it is a "
     "value loss, fitting each of the 3 outputs; one-hot them with np.eye\\(3\\)\\[y\\] if you "
     "mean to regress onto one-hot rows"),
    (np.array([0.5, 1.0, 2.0]), VALUES, "received a 1-D array, one value per sample, for 3 "
                                        "outputs; pass rows \\(3, 3\\)"),
    (np.zeros((3, 2)), VALUES, "shape \\(3, 3\\); received an array of shape \\(3, 2\\)"),
    (np.zeros(2), VALUES, "received 2 values for 3 logit rows"),
    (np.full((3, 3), np.inf), VALUES, "NaN or infinite"),
    (np.array([["a"] * 3] * 3), VALUES, "dtype <U1"),
    (np.full((3, 3), 1j), VALUES, "dtype complex128"),
    (np.full((3, 3), 0.5) + np.eye(3), MULTILABEL,
     "rows of numbers in \\[0, 1\\] \\(0/1 labels or probabilities\\).*received values from "
     "0.5 to 1.5, outside \\[0, 1\\].*use a loss that takes any values \\(such as mse\\)"),
    (np.full((3, 3), 1e39), VALUES, "beyond what float32 \\(the logits' dtype\\) holds"),
])
def test_value_targets_that_do_not_fit_say_what_to_pass(targets, accept, message):
    with pytest.raises(DataError, match=message) as info:
        as_target_rows(targets, 3, 3, np.float32, accept=accept, who="loss 'mine'")
    assert str(info.value).startswith("loss 'mine' expects targets as rows of ")


def test_one_output_s_rule_names_the_1d_form():
    with pytest.raises(DataError, match="shape \\(2, 1\\), or \\(2,\\) as the network has one "
                                        "output; received 3 values for 2 logit rows"):
        as_target_rows(np.zeros(3), 2, 1, accept=VALUES)


@pytest.mark.parametrize(("targets", "message"), [
    (np.array([0.25, 1.5]), "received real numbers of dtype float64: loss 'ce' is a "
                            "classification loss, taking class indices; for real-valued "
                            "targets use a value loss \\(the built-in mse"),
    (np.array([0.0, 1.0]), "convert them with .astype\\(int\\).*or, if they are values to fit, "
                           "for real-valued targets use a value loss"),
    (np.array([[0.5, 2.0, -1.0], [1.0, 0.0, 0.0]]),
     "negative values \\(smallest -1.0\\) \\(loss 'ce' is a classification loss; for "
     "real-valued targets use a value loss"),
    (np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
     "row 0 summing to 2 \\(loss 'ce' is a classification loss; .*binary_cross_entropy for "
     "independent 0/1 labels"),
])
def test_real_targets_given_to_a_classification_loss_name_the_value_losses(targets, message):
    with pytest.raises(DataError, match=message):
        as_target_rows(targets, 2, 3, who="loss 'ce'")


def test_class_targets_are_read_as_before():
    np.testing.assert_array_equal(as_target_rows(np.array([2, 0]), 2, 3),
                                  [[0, 0, 1], [1, 0, 0]])
    soft = np.array([[0.25, 0.75], [0.5, 0.5]])
    np.testing.assert_array_equal(as_target_rows(soft, 2, 2), soft)
    with pytest.raises(DataError, match="received soft labels, which it does not take"):
        as_target_rows(soft, 2, 2, accept=("indices", "one_hot"))
