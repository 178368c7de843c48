"""binary_cross_entropy: a sigmoid and the binary cross-entropy fused into one loss on logits.

Each of the C outputs is an independent yes/no: its logit z gives the probability
p = sigmoid(z) = 1 / (1 + exp(-z)) that the output is 1. Forward, for logits z (N, C)
and targets y (N, C) in [0, 1] (0/1 labels or probabilities; (N,) when C == 1):

    l_nc = -(y log p + (1 - y) log(1 - p))                    per entry
         = max(z, 0) - z y + log(1 + exp(-|z|))               the same, stable
    L    = (1 / (N C)) sum_n sum_c l_nc                       mean over every entry

The second form follows from log p = -log(1 + exp(-z)) and log(1 - p) = -z + log p; it
takes the exponential of -|z| only, which never overflows, and log1p keeps its accuracy
where exp(-|z|) is tiny. It is finite for any finite z, even where p rounds to 0 or 1
(the first form would take log 0 there).

Backward: dl/dz = p - y (the sigmoid's derivative p (1 - p) cancels the cross-entropy's
denominators), averaged over the N·C entries:

    dz = (sigmoid(z) - y) / (N C)                             (N, C)

The mean over all entries is Keras's BinaryCrossentropy(from_logits=True) and PyTorch's
BCEWithLogitsLoss(reduction='mean'). predict_proba gives p, computed stably; the ONNX
export is a Sigmoid. Derivation: docs/losses/binary_cross_entropy.md.
"""

from __future__ import annotations

import numpy as np

from lamina import Loss, LossConfig, LossExample, LossReference, LossTraits, hookimpl
from lamina.loss import as_logits


class BinaryCrossEntropyConfig(LossConfig):
    """binary_cross_entropy has no settings."""


def sigmoid(z: np.ndarray, e: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-z)) entry by entry, in z's dtype, for any finite z (no overflow);
    ``e`` is exp(-|z|) when the caller has it already."""
    # With e = exp(-|z|): 1 / (1 + e) for z >= 0, and e / (1 + e) = exp(z) / (1 + exp(z))
    # for z < 0. No positive exponent, and full relative accuracy in the lower tail.
    e = np.exp(-np.abs(z)) if e is None else e
    return np.where(z >= 0, 1, e) / (1 + e)


class BinaryCrossEntropy(Loss):
    """Mean over N·C entries of the binary cross-entropy of sigmoid(z) against y;
    gradient (sigmoid(z) - y) / (N C)."""

    name = "binary_cross_entropy"
    Config = BinaryCrossEntropyConfig
    # A value loss on independent entries in [0, 1]: 0/1 labels (one-hot rows too, read as
    # C independent labels) or probabilities; anything outside [0, 1] is refused.
    traits = LossTraits(targets=("multilabel",))

    def compute(self, z: np.ndarray, y: np.ndarray) -> float:
        """z: (N, C) logits; y: (N, C) targets in [0, 1] -> mean loss."""
        e = np.exp(-np.abs(z))
        per_entry = np.maximum(z, 0) - z * y + np.log1p(e)  # l_nc
        self.cache = (sigmoid(z, e), y)
        # summed in float64: each entry is finite, their float32 sum need not be
        return float(np.sum(per_entry, dtype=np.float64) / per_entry.size)

    def backward(self) -> np.ndarray:
        """-> dL/dz: (N, C), in the logits' dtype."""
        p, y = self.cached()
        dz = p - y
        dz /= dz.dtype.type(dz.size)
        return dz

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """z: (N, C) -> p = sigmoid(z) (N, C): each output's probability of being 1."""
        return sigmoid(as_logits(logits, f"loss {self.name!r}"))

    def export_onnx(self, graph, logits: str) -> str:
        """The probabilities of predict_proba, an ONNX Sigmoid."""
        return graph.add("Sigmoid", [logits], "sigmoid")

    @classmethod
    def examples(cls) -> list[LossExample]:
        return [
            # docs/losses/binary_cross_entropy.md, "Hand-worked example"
            LossExample(config={}, n_classes=3, id="3_labels", reference=LossReference(
                z=[[0.0, 2.0, -3.0]], targets=[[1.0, 0.0, 1.0]], value=1.956220847726,
                dz=[[-0.166666666667, 0.293599025993, -0.317524708941]],
                proba=[[0.5, 0.880797077978, 0.047425873178]], tolerance=1e-9)),
            # one output, targets (N,): a 0/1 label and a probability
            LossExample(config={}, n_classes=1, id="1_output", reference=LossReference(
                z=[[1.0], [-1.0]], targets=[1.0, 0.25], value=0.438261687518,
                dz=[[-0.134470710685], [0.009470710685]],
                proba=[[0.731058578630], [0.268941421370]], tolerance=1e-9)),
        ]


@hookimpl
def lamina_register_losses():
    return [BinaryCrossEntropy]
