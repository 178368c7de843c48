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

from lamina import Loss, LossConfig, LossExample, LossReference, LossTraits, hookimpl
from lamina.loss import as_logits


class SoftmaxCrossEntropyConfig(LossConfig):
    """softmax_cross_entropy has no settings."""


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of z (N, C), finite for any finite z."""
    # Shifting by the row max makes the largest exponent exp(0) = 1: no overflow, and
    # the sum is at least 1, so its log never sees 0.
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


class SoftmaxCrossEntropy(Loss):
    """Mean cross-entropy of softmax(logits) against targets; gradient (p - y) / N."""

    name = "softmax_cross_entropy"
    Config = SoftmaxCrossEntropyConfig
    # Every form of target: indices and one-hot rows arrive as one-hot rows, soft labels
    # as they are (lamina.loss.as_target_rows), and the same formula serves all three.
    traits = LossTraits(targets=("indices", "one_hot", "soft"), softmax_cross_entropy=True)

    def compute(self, z: np.ndarray, y: np.ndarray) -> float:
        """z: (N, C) logits; y: (N, C) target rows -> mean loss."""
        log_p = log_softmax(z)
        # sum over y * log_p: entries with y = 0 contribute 0, log_p is finite.
        loss = -np.sum(y * log_p) / z.shape[0]
        self.cache = (np.exp(log_p), y)
        return float(loss)

    def backward(self) -> np.ndarray:
        """-> dL/dlogits: (N, C), in the logits dtype."""
        p, y = self.cached()
        dz = p - y
        dz /= dz.dtype.type(p.shape[0])
        return dz

    def export_onnx(self, graph, logits: str) -> str:
        """The probabilities of predict_proba as an ONNX Softmax over the classes."""
        return graph.add("Softmax", [logits], "softmax", axis=1)

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """logits: (N, C) -> softmax probabilities (N, C), rows summing to 1."""
        return np.exp(log_softmax(as_logits(logits, f"loss {self.name!r}")))

    @classmethod
    def examples(cls) -> list[LossExample]:
        return [
            # docs/losses/softmax_cross_entropy.md, "Hand-worked example"
            LossExample(config={}, n_classes=3, id="3_classes", reference=LossReference(
                z=[[2.0, 1.0, 0.1]], targets=[2], value=2.317030016278,
                dz=[[0.659001138886, 0.242432970705, -0.901434109591]],
                proba=[[0.659001138886, 0.242432970705, 0.098565890409]], tolerance=1e-9)),
            LossExample(config={}, n_classes=10, id="10_classes"),
        ]


@hookimpl
def lamina_register_losses():
    return [SoftmaxCrossEntropy]
