"""relu's two passes as single compiled loops.

    y = x * (x > 0)        mask = x > 0        dx = dy * mask

(the same products NumPy's ``np.multiply(x, mask)`` forms, so every entry is bit for bit
the same, -0.0 for negative x and NaN for NaN and -inf included). NumPy needs a pass for
the mask, one for the product and an allocation for each; one loop writing both halves
relu's time on the reference network, where it runs on pooled (N, 32, 13, 13) arrays
(docs/performance.md).
"""

from __future__ import annotations

import numpy as np

from lamina.kernels.jit import run


def relu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y, mask): y = x * (x > 0) and the boolean mask x > 0, new arrays of x's shape."""
    x = np.ascontiguousarray(x)
    y, mask = np.empty_like(x), np.empty(x.shape, dtype=np.bool_)
    run("relu", x.reshape(-1), y.reshape(-1), mask.reshape(-1))
    return y, mask


def relu_backward(dy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """dx = dy * mask, a new array of dy's shape and dtype."""
    dy = np.ascontiguousarray(dy)
    dx = np.empty_like(dy)
    run("relu_backward", dy.reshape(-1), np.ascontiguousarray(mask).reshape(-1), dx.reshape(-1))
    return dx
