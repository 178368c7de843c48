"""The finite-difference comparison: accuracy, relative error and kink detection."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.testing import gradcheck


def elementwise(f, x):
    def evaluate(index, delta):
        shifted = x.copy()
        shifted[index] += delta
        return f(shifted)
    return evaluate


def test_a_smooth_function_agrees_far_below_the_tolerance():
    x = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    dy = np.random.default_rng(0).uniform(-1, 1, x.shape)
    analytic = dy * np.cos(x)
    report = gradcheck.compare("dx", analytic, elementwise(np.sin, x), dy,
                               gradcheck.sample_indices(x.shape, np.random.default_rng(1)))
    assert report.ok and report.kinks == 0 and report.checked == 12
    assert report.worst_error < 1e-10


def test_a_flipped_sign_has_relative_error_one_at_the_worst_element():
    x = np.array([0.3, -0.7, 1.1])
    dy = np.array([1.0, 0.5, -2.0])
    analytic = dy * 2 * x * np.array([1.0, 1.0, -1.0])  # only the last element is wrong
    report = gradcheck.compare("dx", analytic, elementwise(np.square, x), dy,
                               [(0,), (1,), (2,)])
    assert not report.ok
    assert report.worst_error == pytest.approx(1.0)
    assert report.worst_index == (2,)
    assert "worst element dx[2]: analytic 4.4, numeric -4.4" in report.describe()


def test_an_element_next_to_a_kink_is_estimated_again_with_a_smaller_step():
    x = np.array([0.5, 4e-4, -0.8])  # |x| at 4e-4 is within the 2h = 2e-3 stencil
    dy = np.ones(3)
    report = gradcheck.compare("dx", np.sign(x), elementwise(np.abs, x), dy,
                               [(0,), (1,), (2,)])
    assert report.kinks == 0  # h / 10 steps inside the kink's distance
    assert report.ok and report.worst_error < 1e-10


def test_an_element_at_a_kink_at_every_step_is_skipped_and_counted():
    x = np.array([0.5, 1e-6, -0.8])  # within 2 * h / 100 = 2e-5 of the kink
    report = gradcheck.compare("dx", np.sign(x), elementwise(np.abs, x), np.ones(3),
                               [(0,), (1,), (2,)])
    assert report.kinks == 1
    assert report.ok and report.worst_error < 1e-12


def test_a_kink_too_small_for_the_kink_test_does_not_fail_a_right_gradient():
    """One relu among many that a normalisation couples to the element bends the slope
    by a fraction too small to be seen as a kink, yet enough to move the five-point
    estimate by 1e-4: the smaller step agrees (as lamina check --config found on a
    conv -> batchnorm -> relu block)."""
    def f(v):
        return v + 5e-4 * np.abs(v - 1.5e-3)

    x = np.array([0.0])
    report = gradcheck.compare("dx", np.array([1.0 - 5e-4]), elementwise(f, x), np.ones(1),
                               [(0,)])
    assert report.ok and report.kinks == 0
    wrong = gradcheck.compare("dx", np.array([1.0 - 4e-4]), elementwise(f, x), np.ones(1),
                              [(0,)])
    assert not wrong.ok  # a gradient off by 1e-4 still fails at every step


def test_too_many_kinks_fail():
    x = np.full(10, 1e-6)
    report = gradcheck.compare("dx", np.ones(10), elementwise(np.abs, x), np.ones(10),
                               [(i,) for i in range(10)])
    assert report.kinks == 10 and not report.ok


def test_tiny_gradients_next_to_large_ones_do_not_fail_on_rounding():
    x = np.array([1.0, 1.0])
    scale = np.array([1.0, 1e-9])
    report = gradcheck.compare("dx", scale, elementwise(lambda v: v * scale, x), np.ones(2),
                               [(0,), (1,)])
    assert report.ok


def test_large_arrays_are_checked_on_a_subset():
    indices = gradcheck.sample_indices((20, 30), np.random.default_rng(0))
    assert len(indices) == gradcheck.MAX_ELEMENTS == len(set(indices))
    assert all(0 <= i < 20 and 0 <= j < 30 for i, j in indices)
