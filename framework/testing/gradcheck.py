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
while a kink inside [x - 2h, x + 2h] makes their second difference jump. An element
at a kink, or disagreeing, is estimated again with h / 10 and h / 100, which step
inside the kink's distance; one still at a kink at every step is left out of the
comparison and counted; too many of them means the function is not differentiable
where the example samples it.

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
    smaller ``step``; 1e-5 still keeps rounding noise (eps / step) near 1e-11.

    An element found at a kink, or disagreeing, at ``step`` is estimated again at
    ``step / 10`` and ``step / 100`` (:data:`RETRY_STEPS`): a kink is only inside the
    stencil of the steps larger than its distance, and one too small for the kink
    test (a single relu of the many a normalisation couples to every element) still
    bends the five-point estimate. A wrong gradient disagrees at every step."""
    y0 = evaluate(indices[0], 0.0) if indices else None
    if not indices:
        return GradReport(name, 0, 0, None, 0.0, 0.0, 0.0)
    estimates = [_estimate(evaluate, index, y0, dy, step) for index in indices]
    a = np.array([analytic[i] for i in indices], dtype=np.float64)
    n = np.array([numeric for numeric, _ in estimates], dtype=np.float64)
    slopes = np.array([s for _, s in estimates])
    # Below this, a number is rounding noise: an element that barely moves L. L's own
    # rounding, about eps * sum|y * dy| per evaluation, reaches the estimate divided by
    # the step; a million times that is noise too (a block with a normalisation moves
    # every output with every element: a bias before it has a gradient of exactly 0,
    # and both sides are that rounding).
    def noise_at(h: float) -> float:
        return max(1e-7 * float(np.abs(dy).max()), 1e-10 / h * float(np.sum(np.abs(y0 * dy))))

    steepest = float(np.abs(slopes).max())

    def smooth_at(s: np.ndarray, h: float) -> bool:
        curvature = float(np.abs(np.diff(s, n=2)).max())
        return curvature <= _KINK_THRESHOLD * max(float(np.abs(s).max()),
                                                  1e-3 * steepest, noise_at(h))

    smooth = np.array([smooth_at(s, step) for s in slopes])
    noise = np.full(len(indices), noise_at(step))
    scale = _scale(a, n, smooth)

    def error_of(i: int) -> float:
        floor = max(1e-3 * scale, noise[i])
        return abs(a[i] - n[i]) / max(abs(a[i]) + abs(n[i]), floor)

    for i, index in enumerate(indices):
        if smooth[i] and error_of(i) < TOLERANCE:
            continue
        for factor in RETRY_STEPS:
            numeric, s = _estimate(evaluate, index, y0, dy, step * factor)
            if not smooth_at(s, step * factor):
                continue
            was = (n[i], smooth[i], noise[i])
            n[i], smooth[i], noise[i] = numeric, True, noise_at(step * factor)
            if error_of(i) < TOLERANCE:
                break
            if was[1] and abs(a[i] - was[0]) < abs(a[i] - numeric):
                n[i], smooth[i], noise[i] = was  # keep the closer of two smooth estimates
    kinks = int((~smooth).sum())
    if not smooth.any():
        return GradReport(name, len(indices), kinks, None, 0.0, 0.0, 0.0)
    scale = _scale(a, n, smooth)
    error = np.array([error_of(i) if smooth[i] else -1.0 for i in range(len(indices))])
    worst = int(np.argmax(error))
    return GradReport(name, len(indices), kinks, indices[worst],
                      float(a[worst]), float(n[worst]), float(error[worst]))


#: the fractions of the step an element is estimated at again when it sits at a kink or
#: disagrees at the full step
RETRY_STEPS = (0.1, 0.01)


def _estimate(evaluate: Evaluate, index: tuple[int, ...], y0: np.ndarray, dy: np.ndarray,
              h: float) -> tuple[float, np.ndarray]:
    """The five-point estimate at ``index`` with step ``h``, and the four one-sided
    slopes between its points (the kink test reads their second difference)."""
    # The outputs at -2h, -h, +h, +2h, as differences from y0.
    d = [np.sum((evaluate(index, k * h) - y0) * dy) for k in (-2, -1, 1, 2)]
    numeric = (-d[3] + 8 * d[2] - 8 * d[1] + d[0]) / (12 * h)
    return float(numeric), np.array([d[1] - d[0], -d[1], d[2], d[3] - d[2]]) / h


def _scale(a: np.ndarray, n: np.ndarray, smooth: np.ndarray) -> float:
    """The largest magnitude among the compared elements (0 when none is smooth)."""
    if not smooth.any():
        return 0.0
    return float(max(np.abs(a[smooth]).max(), np.abs(n[smooth]).max()))


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
