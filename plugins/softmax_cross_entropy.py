"""softmax_cross_entropy: softmax and cross-entropy fused into one loss on logits.

Forward, for logits z (N, C) and targets y (N, C) whose rows are probability
distributions (class indices t (N,) are turned into one-hot rows y_nc = [c == t_n]):

    s        = z - max_c z                      (N, C)  shift by the row max (stability)
    log_p    = s - log(sum_c exp(s))            (N, C)  log-softmax; equal to that of z
    p        = exp(log_p)                       (N, C)
    L        = -(1 / N) sum_n sum_c y_nc log_p_nc       mean over the batch (a float)

Backward: d(-sum_c y_c log p_c) / dz_j = p_j sum_c y_c - y_j = p_j - y_j because each
row of y sums to 1; the mean divides by N:

    dL/dz    = (p - y) / N                      (N, C)

The softmax has no backward step of its own: its Jacobian diag(p) - p p^T, multiplied
by the cross-entropy gradient -y / p, collapses to p - y, which is cheaper and exact
where p underflows to 0. Derivation: docs/losses/softmax_cross_entropy.md.
"""

from __future__ import annotations

import numpy as np

from lamina import DataError, LayerConfig, Loss, LossExample, hookimpl


class SoftmaxCrossEntropyConfig(LayerConfig):
    """softmax_cross_entropy has no settings."""


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of z (N, C), finite for any finite z."""
    # Shifting by the row max makes the largest exponent exp(0) = 1: no overflow, and
    # the sum is at least 1, so its log never sees 0.
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def _as_logits(logits) -> np.ndarray:
    z = np.asarray(logits)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise DataError(
            f"softmax_cross_entropy expects logits of shape (N, C) with N, C >= 1, received "
            f"an array of shape {z.shape}; the last layer should be a dense layer with one "
            "unit per class"
        )
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float64)
    return z


def _as_distribution(targets, n_samples: int, n_classes: int, dtype: np.dtype) -> np.ndarray:
    """Targets as (N, C) rows of a probability distribution, in the logits dtype."""
    t = np.asarray(targets)
    rule = (
        f"targets must be class indices of shape ({n_samples},) with an integer dtype and "
        f"values in [0, {n_classes}), or one-hot / soft-label rows of shape "
        f"({n_samples}, {n_classes}) that are non-negative and sum to 1"
    )
    if t.ndim == 1:
        if t.shape[0] != n_samples:
            raise DataError(f"{rule}; received {t.shape[0]} indices for {n_samples} logit rows")
        if not np.issubdtype(t.dtype, np.integer):
            raise DataError(
                f"{rule}; received class indices of dtype {t.dtype}, convert them with "
                ".astype(int) (a float array is ambiguous and is not accepted as indices)"
            )
        if t.min() < 0 or t.max() >= n_classes:
            raise DataError(
                f"{rule}; received indices from {t.min()} to {t.max()}, check that the last "
                f"layer has one unit per class ({n_classes} now)"
            )
        y = np.zeros((n_samples, n_classes), dtype=dtype)
        y[np.arange(n_samples), t] = 1
        return y
    if t.ndim != 2 or t.shape != (n_samples, n_classes):
        raise DataError(f"{rule}; received an array of shape {t.shape}")
    if not (np.issubdtype(t.dtype, np.number) or t.dtype == np.bool_):
        raise DataError(f"{rule}; received an array of dtype {t.dtype}")
    if not np.all(np.isfinite(t)):
        raise DataError(f"{rule}; received NaN or infinite values")
    if np.any(t < 0):
        raise DataError(f"{rule}; received negative values (smallest {t.min()})")
    # Float32 soft labels made by a softmax are off 1 by a few ulps per class.
    eps = np.finfo(t.dtype).eps if np.issubdtype(t.dtype, np.floating) else 0.0
    tolerance = max(1e-6, 4 * n_classes * float(eps))
    row_sums = t.sum(axis=1, dtype=np.float64)
    worst = int(np.argmax(np.abs(row_sums - 1.0)))
    if abs(row_sums[worst] - 1.0) > tolerance:
        raise DataError(f"{rule}; received row {worst} summing to {row_sums[worst]:.8g}")
    return t.astype(dtype, copy=False)


class SoftmaxCrossEntropy(Loss):
    """Mean cross-entropy of softmax(logits) against targets; gradient (p - y) / N."""

    name = "softmax_cross_entropy"
    Config = SoftmaxCrossEntropyConfig

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        """logits: (N, C); targets: (N,) indices or (N, C) rows -> mean loss."""
        z = _as_logits(logits)
        n_samples, n_classes = z.shape
        y = _as_distribution(targets, n_samples, n_classes, z.dtype)
        log_p = log_softmax(z)
        # sum over y * log_p: entries with y = 0 contribute 0, log_p is finite.
        loss = -np.sum(y * log_p) / n_samples
        self.cache = (np.exp(log_p), y)
        return float(loss)

    def backward(self) -> np.ndarray:
        """-> dL/dlogits: (N, C), in the logits dtype."""
        p, y = self.cached()
        dz = p - y
        dz /= dz.dtype.type(p.shape[0])
        return dz

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """logits: (N, C) -> softmax probabilities (N, C), rows summing to 1."""
        return np.exp(log_softmax(_as_logits(logits)))

    @classmethod
    def examples(cls) -> list[LossExample]:
        return [
            LossExample(config={}, n_classes=3, id="3_classes"),
            LossExample(config={}, n_classes=10, id="10_classes"),
        ]


@hookimpl
def lamina_register_losses():
    return [SoftmaxCrossEntropy]
