import numpy as np
import pytest
from pydantic import ValidationError

from lamina import BackwardBeforeForwardError
from lamina.plugins import dropout
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(rate=0.5, input_shape=(8,), dtype=np.float32, seed=0):
    layer = dropout.Dropout(rate=rate)
    layer.build(input_shape, np.random.default_rng(seed), dtype=dtype)
    return layer


def test_registered_and_flagged_stochastic():
    assert dropout.lamina_register_layers() == [dropout.Dropout]
    assert dropout.Dropout.traits.stochastic


def test_rate_one_rejected_with_the_fix():
    with pytest.raises(ValidationError, match=r"must be in \[0, 1\), received 1\.0"):
        dropout.Dropout(rate=1.0)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_rate_out_of_range_rejected(rate):
    with pytest.raises(ValidationError):
        dropout.Dropout(rate=rate)


def test_rate_zero_is_identity_in_training():
    layer = built(rate=0.0)
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    np.testing.assert_array_equal(layer.forward(x, training=True), x)


def test_mask_entries_are_zero_or_inverse_keep_probability():
    layer = built(rate=0.25, input_shape=(1000,))
    x = np.ones((100, 1000), dtype=np.float32)
    y = layer.forward(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    # 100 000 seeded draws: the kept fraction is 0.75 within a few standard deviations (0.0014).
    assert abs(kept.mean() - 0.75) < 0.01
    assert abs(y.mean() - 1.0) < 0.02


def test_same_seed_same_mask_and_different_seed_different_mask():
    x = np.ones((4, 8), dtype=np.float32)
    y_a = built(seed=7).forward(x, training=True)
    y_b = built(seed=7).forward(x, training=True)
    y_c = built(seed=8).forward(x, training=True)
    np.testing.assert_array_equal(y_a, y_b)
    assert not np.array_equal(y_a, y_c)


def test_backward_uses_the_forward_mask():
    layer = built(rate=0.5, input_shape=(6,))
    x = np.full((3, 6), 2.0, dtype=np.float32)
    y = layer.forward(x, training=True)
    dy = np.arange(18, dtype=np.float32).reshape(3, 6) + 1
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, dy * (y / 2.0))


def test_eval_is_identity_forward_and_backward():
    layer = built(rate=0.5)
    x = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    dy = np.ones((3, 8), dtype=np.float32)
    np.testing.assert_array_equal(layer.backward(dy), dy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_and_input_untouched(dtype):
    layer = built(input_shape=(2, 3, 3), dtype=dtype)
    x = np.random.default_rng(2).normal(size=(4, 2, 3, 3)).astype(dtype)
    x_before = x.copy()
    y = layer.forward(x, training=True)
    assert y.dtype == dtype and layer.backward(np.ones_like(y)).dtype == dtype
    np.testing.assert_array_equal(x, x_before)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    layer = built(rate=0.3, input_shape=(2, 3, 3), dtype=np.float64)
    x = rng.normal(size=(4, 2, 3, 3))
    dy = rng.normal(size=(4, 2, 3, 3))

    def forward():
        # A fresh generator with the same seed redraws the same mask on every call.
        layer.rng = np.random.default_rng(11)
        return layer.forward(x, training=True)

    forward()
    dx = layer.backward(dy)
    numeric = numerical_gradient(lambda: np.sum(forward() * dy), x)
    assert np.count_nonzero(dx == 0) > 0
    assert max_relative_error(dx, numeric) < 1e-6


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="dropout"):
        built().backward(np.ones((1, 8), dtype=np.float32))
