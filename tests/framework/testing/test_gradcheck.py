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


def test_an_element_next_to_a_kink_is_skipped_and_counted():
    x = np.array([0.5, 4e-4, -0.8])  # |x| at 4e-4 is within the 2h = 2e-3 stencil
    dy = np.ones(3)
    report = gradcheck.compare("dx", np.sign(x), elementwise(np.abs, x), dy,
                               [(0,), (1,), (2,)])
    assert report.kinks == 1
    assert report.ok and report.worst_error < 1e-12


def test_too_many_kinks_fail():
    x = np.full(10, 1e-4)
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
