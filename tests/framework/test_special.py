"""lamina.kernels.special: erfc, which NumPy lacks, from the C library as math.erfc."""

import math

import numpy as np

from lamina.kernels.special import erfc


def test_float64_is_math_erfc_bit_for_bit():
    x = np.concatenate([np.linspace(-8, 30, 3801), [-0.0, 0.0, 1e-300, -1e300, 1e300, 27.3]])
    assert np.array_equal(erfc(x), [math.erfc(v) for v in x])
    assert math.isnan(erfc(np.array([math.nan]))[0])


def test_float32_keeps_its_dtype_and_rounds_math_erfc():
    x = np.linspace(-4, 9, 1301).astype(np.float32)
    y = erfc(x)
    assert y.dtype == np.float32
    exact = np.array([math.erfc(v) for v in x.astype(np.float64)])
    np.testing.assert_allclose(y, exact, rtol=4 * np.finfo(np.float32).eps,
                               atol=float(np.finfo(np.float32).tiny))


def test_any_layout_and_shape():
    x = np.random.default_rng(0).normal(size=(3, 8, 5))
    view = x[:, ::2, ::-1].transpose(2, 0, 1)
    got = erfc(view)
    assert got.shape == view.shape and got.flags.c_contiguous
    assert np.array_equal(got, erfc(np.ascontiguousarray(view)))
    np.testing.assert_array_equal(view, x[:, ::2, ::-1].transpose(2, 0, 1))  # untouched
