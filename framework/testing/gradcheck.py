"""Finite-difference gradient checking, in float64.

The scalar whose gradient is checked is ``L = sum(y * dy)`` for a fixed random
upstream gradient ``dy``, so ``dL/dx`` is exactly what ``backward(dy)`` returns.

Estimate: the five-point central difference

    dL/dx_i ~ (-L(x + 2h e_i) + 8 L(x + h e_i) - 8 L(x - h e_i) + L(x - 2h e_i)) / (12 h)

with h = 1e-3. Its truncation error is O(h^4) (about 1e-13 for smooth layers) and
its rounding error about eps / h (1e-13), far below the 1e-6 tolerance, where the
two-point formula would need h ~ 1e-6 and then lose half the digits to rounding.
``L(x') - L(x)`` is formed as ``sum((y' - y) * dy)`` so that outputs the element
does not reach cancel exactly instead of adding their rounding noise.

Kinks (relu at 0, ties in a max) are detected rather than guessed: the four
one-sided slopes between the five points agree to O(h^2) on a smooth function,
while a kink inside [x - 2h, x + 2h] makes their second difference jump. Such an
element is left out of the comparison and counted; too many of them means the
function is not differentiable where the example samples it.

Relative error of one element: ``|a - n| / max(|a| + |n|, floor)`` with
``floor = max(1e-3 * scale, noise)``, ``scale`` being the largest magnitude in the
checked part of the array and ``noise = max(1e-7 * max|dy|, 1e-10 / h * sum|y * dy|)``
a million times the rounding of L reaching the estimate: the floor keeps tiny
gradients (1e-9 next to 1, or an exact 0 against 1e-14 of rounding) from turning noise
into a failure, while a wrong sign or factor still gives an error near 1.
Arrays larger than ``MAX_ELEMENTS`` are checked on a random subset of that many
elements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

STEP = 1e-3
TOLERANCE = 1e-6
MAX_ELEMENTS = 100
#: allowed fraction of checked elements found next to a kink
MAX_KINK_FRACTION = 0.2
_KINK_THRESHOLD = 1e-3

#: evaluate(index, delta) -> the output with element ``index`` shifted by ``delta``
Evaluate = Callable[[tuple[int, ...], float], np.ndarray]


@dataclass(frozen=True)
class GradReport:
    """How an analytic gradient array compares with finite differences."""

    name: str
    checked: int
    kinks: int
    worst_index: tuple[int, ...] | None
    worst_analytic: float
    worst_numeric: float
    worst_error: float

    @property
    def too_many_kinks(self) -> bool:
        return self.kinks > max(1, MAX_KINK_FRACTION * self.checked)

    @property
    def ok(self) -> bool:
        return self.worst_error < TOLERANCE and not self.too_many_kinks

    def describe(self) -> str:
        where = (
            f"worst element {self.name}{list(self.worst_index)}: analytic "
            f"{self.worst_analytic:.10g}, numeric {self.worst_numeric:.10g}, relative error "
            f"{self.worst_error:.3g} (tolerance {TOLERANCE:g})"
            if self.worst_index is not None else f"{self.name}: no element compared"
        )
        kinks = f"{self.checked} elements checked, {self.kinks} skipped at kinks"
        if self.too_many_kinks:
            kinks += (f" (more than {MAX_KINK_FRACTION:.0%}: each element moves so many relu "
                      "or max units that one sits at a kink; give the example a smaller input "
                      "or fewer units, so that the gradient can be compared)")
        return f"{where}; {kinks}"


def sample_indices(shape: tuple[int, ...], rng: np.random.Generator,
                   limit: int = MAX_ELEMENTS) -> list[tuple[int, ...]]:
    """Every index of ``shape``, or ``limit`` of them drawn from ``rng`` when it has more."""
    size = int(np.prod(shape))
    flat = np.arange(size) if size <= limit else np.sort(rng.choice(size, limit, replace=False))
    return [tuple(int(i) for i in np.unravel_index(k, shape)) for k in flat]


def compare(
    name: str,
    analytic: np.ndarray,
    evaluate: Evaluate,
    dy: np.ndarray,
    indices: list[tuple[int, ...]],
    *,
    step: float = STEP,
) -> GradReport:
    """Compare ``analytic`` with five-point differences of ``sum(y * dy)`` at ``indices``.

    A deep network has many kinks within ``2 * STEP`` of a random point (every relu
    and max-pool downstream of the element), so an end-to-end check passes a
    smaller ``step``; 1e-5 still keeps rounding noise (eps / step) near 1e-11."""
    y0 = evaluate(indices[0], 0.0) if indices else None
    numeric, slopes = [], []
    for index in indices:
        # The outputs at -2h, -h, +h, +2h, as differences from y0.
        d = [np.sum((evaluate(index, k * step) - y0) * dy) for k in (-2, -1, 1, 2)]
        numeric.append((-d[3] + 8 * d[2] - 8 * d[1] + d[0]) / (12 * step))
        slopes.append(np.array([d[1] - d[0], -d[1], d[2], d[3] - d[2]]) / step)
    if not indices:
        return GradReport(name, 0, 0, None, 0.0, 0.0, 0.0)
    a = np.array([analytic[i] for i in indices], dtype=np.float64)
    n = np.array(numeric, dtype=np.float64)
    s = np.abs(np.array(slopes))
    # Below this, a number is rounding noise: an element that barely moves L. L's own
    # rounding, about eps * sum|y * dy| per evaluation, reaches the estimate divided by
    # the step; a million times that is noise too (a block with a normalisation moves
    # every output with every element: a bias before it has a gradient of exactly 0,
    # and both sides are that rounding).
    noise = max(1e-7 * float(np.abs(dy).max()), 1e-10 / step * float(np.sum(np.abs(y0 * dy))))
    curvature = np.abs(np.diff(np.array(slopes), n=2, axis=1)).max(axis=1)
    reference = np.maximum(s.max(axis=1), max(1e-3 * s.max(), noise))
    smooth = curvature <= _KINK_THRESHOLD * reference
    kinks = int((~smooth).sum())
    if not smooth.any():
        return GradReport(name, len(indices), kinks, None, 0.0, 0.0, 0.0)
    scale = max(np.abs(a[smooth]).max(), np.abs(n[smooth]).max())
    floor = max(1e-3 * scale, noise)
    error = np.where(smooth, np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor), -1.0)
    worst = int(np.argmax(error))
    return GradReport(name, len(indices), kinks, indices[worst],
                      float(a[worst]), float(n[worst]), float(error[worst]))


def numerical_gradient(f: Callable[[], float], a: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to every entry of ``a``.

    ``a`` is perturbed in place and restored; ``f`` reads it. The plain two-point
    formula with a small ``h``, for hand-written plugin tests on tiny arrays in
    float64 (the conformance checks use :func:`compare`).
    """
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + h
        f_plus = f()
        a[i] = old - h
        f_minus = f()
        a[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def max_relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |a - n| / (|a| + |n|) over all entries (with a 1e-12 floor against 0/0)."""
    scale = np.maximum(np.abs(analytic) + np.abs(numeric), 1e-12)
    return float(np.max(np.abs(analytic - numeric) / scale))
