"""The element-wise activations over the whole float32 range.

Every 4096th float32 (a million values from -3.4e38 to 3.4e38: both zeros, subnormals,
the largest magnitudes) goes through forward and backward with every floating-point
warning an error (an underflow to 0 is not one). Outputs and gradients must be finite,
and agree with the float64 layer on the same values: outputs to a few float32 roundings
of their own size, gradients to a few roundings of the largest gradient (a gradient
computed from a saturated output is exactly 0 in float32 where float64 still holds
1e-9, as PyTorch's are).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lamina.plugins.elu import ELU
from lamina.plugins.gelu import GELU
from lamina.plugins.leaky_relu import LeakyReLU
from lamina.plugins.sigmoid import Sigmoid
from lamina.plugins.tanh import Tanh

TINY = float(np.finfo(np.float32).tiny)
EPS = float(np.finfo(np.float32).eps)

#: (layer, settings, largest relative error of a normal float32 output, in float32 eps)
CASES = [
    (Sigmoid, {}, 2),
    (Tanh, {}, 2),
    (LeakyReLU, {}, 1),
    (LeakyReLU, {"slope": 0.0}, 0),
    (LeakyReLU, {"slope": 1.0}, 0),
    (ELU, {}, 2),
    (ELU, {"alpha": 0.0}, 0),
    (ELU, {"alpha": 100.0}, 2),
    # Phi's relative condition number is about x^2 in its lower tail: the rounding of x
    # itself (half an eps) grows to ~170 eps of y near x = -13, where y leaves float32's
    # normal range
    (GELU, {}, 200),
    (GELU, {"approximate": "tanh"}, 200),
]


def every_float32(step: int = 1 << 12) -> np.ndarray:
    bits = np.append(np.arange(0, 0x7F800000, step, dtype=np.uint32), np.uint32(0x7F7FFFFF))
    positive = bits.view(np.float32)
    return np.concatenate([-positive[::-1], positive])[None]


def run(plugin: type, settings: dict, x: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    layer = plugin(settings)
    layer.build(x.shape[1:], np.random.default_rng(0), dtype=dtype)
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        y = layer.forward(x.astype(dtype), training=True)
        dx = layer.backward(np.ones_like(y))
    return y, dx


@pytest.mark.parametrize(("plugin", "settings", "ulps"), CASES,
                         ids=[f"{plugin.name}-{settings}" for plugin, settings, _ in CASES])
def test_finite_and_accurate_over_every_float32(plugin, settings, ulps):
    x = every_float32()
    y, dx = run(plugin, settings, x, np.float32)
    y64, dx64 = run(plugin, settings, x, np.float64)
    assert y.dtype == dx.dtype == np.float32
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    normal = np.abs(y64) >= TINY
    relative = np.abs(y - y64)[normal] / np.abs(y64)[normal]
    assert relative.max() <= max(ulps, 0.5) * EPS
    assert np.abs(y - y64)[~normal].max(initial=0) <= TINY
    assert np.abs(dx - dx64).max() <= 4 * EPS * np.abs(dx64).max()
