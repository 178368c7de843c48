"""relu's two passes as single compiled loops.

    y = x * (x > 0)        mask = x > 0        dx = dy * mask

(the same products NumPy's ``np.multiply(x, mask)`` forms, so every entry is bit for bit
the same, -0.0 for negative x and NaN for NaN and -inf included). NumPy needs a pass for
the mask, one for the product and an allocation for each; one loop writing both halves
relu's time on the reference network, where it runs on pooled (N, 32, 13, 13) arrays
(docs/performance.md). The loops run in the arrays' memory order, so the channels-last
output of a fused conv2d (lamina.kernels.fused) is neither copied nor transposed.
"""

from __future__ import annotations

import numpy as np

from lamina.kernels.jit import run


def relu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y, mask): y = x * (x > 0) and the boolean mask x > 0, new arrays of x's shape laid out
    in memory as x is (a channels-last view stays channels-last)."""
    y, mask = np.empty_like(x), np.empty_like(x, dtype=np.bool_)
    flat = _flat(x, y, mask)
    if flat is None:  # no common memory order: one C-ordered copy
        x = np.ascontiguousarray(x)
        y, mask = np.empty_like(x), np.empty_like(x, dtype=np.bool_)
        flat = _flat(x, y, mask)
    run("relu", *flat)
    return y, mask


def relu_backward(dy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """dx = dy * mask, a new array of dy's shape and dtype."""
    dx = np.empty_like(dy)
    flat = _flat(dy, mask, dx)
    if flat is None:  # dy and the mask lie differently: NumPy walks both
        return np.multiply(dy, mask, dtype=dy.dtype)
    run("relu_backward", *flat)
    return dx


def _flat(*arrays: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """1-D views of ``arrays`` entry for entry (each contiguous in one and the same memory
    order), or None when they are not all laid out alike."""
    order = np.argsort([-abs(s) for s in arrays[0].strides], kind="stable")
    views = []
    for a in arrays:
        view = a.transpose(order)
        if not view.flags.c_contiguous:
            return None
        views.append(view.reshape(-1))
    return tuple(views)
