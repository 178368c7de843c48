"""The special functions NumPy lacks, entry by entry, in the input's dtype.

    erfc(x)    = 1 - erf(x) = (2 / sqrt(pi)) * integral from x to infinity of exp(-t^2) dt
    sigmoid(x) = 1 / (1 + exp(-x))                          (SciPy's expit)

NumPy has no erf or erfc. A compiled loop calls the C library's erfc, the very function
:func:`math.erfc` calls, so its float64 results are bit for bit those of math.erfc,
several times faster than looping math.erfc in Python (measured in docs/performance.md,
with its accuracy in docs/layers/gelu.md). erfc rather than erf: the normal distribution
function Phi(x) = erfc(-x / sqrt(2)) / 2 then keeps its relative accuracy in the lower
tail, where (1 + erf(x / sqrt(2))) / 2 cancels to 0.

sigmoid is NumPy, written so that no exponent is positive (docs/layers/sigmoid.md).
"""

from __future__ import annotations

import numpy as np

from lamina.kernels.jit import run


def erfc(x: np.ndarray) -> np.ndarray:
    """erfc of every entry of a float32 or float64 array: a new array, x's shape and dtype."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    run("erfc", x.reshape(-1), out.reshape(-1))
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) of every entry, in x's dtype, for any finite x without overflow:
    exp(min(x, 0)) / (1 + exp(-|x|)) is 1 / (1 + exp(-x)) where x >= 0 and
    exp(x) / (1 + exp(x)) where x < 0, which keeps the lower tail's relative accuracy."""
    return np.exp(np.minimum(x, 0)) / (1 + np.exp(-np.abs(x)))
