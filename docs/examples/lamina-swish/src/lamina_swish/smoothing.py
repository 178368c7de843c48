"""smoothed_cross_entropy: softmax cross-entropy against label-smoothed targets.

For logits z (N, C) and target rows y (N, C) (class indices arrive as one-hot rows),
with smoothing e in [0, 1):

    y'  = (1 - e) * y + e / C                  (N, C)  every class keeps e / C
    p   = softmax(z)                           (N, C)  computed as exp(log_softmax(z))
    L   = -(1 / N) sum_n sum_c y'_nc log p_nc

Backward: y' rows still sum to 1, so the fused softmax cross-entropy gradient holds
with y' in place of y:

    dL/dz = (p - y') / N                       (N, C)

Smoothing keeps the network from driving one logit to infinity for a hard label.
The loss uses every entry of its target rows, so soft labels are accepted too.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lamina import Loss, LossConfig, LossExample, LossReference, LossTraits, hookimpl


class SmoothedCrossEntropyConfig(LossConfig):
    """Settings of smoothed_cross_entropy."""

    smoothing: float = Field(
        0.1, ge=0.0, lt=1.0,
        description="the share e of each target spread evenly over the classes; 0 is plain "
        "cross-entropy",
    )


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, shifted by the row max so that exp never overflows."""
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


class SmoothedCrossEntropy(Loss):
    """Mean cross-entropy of softmax(z) against (1 - e) y + e / C; gradient (p - y') / N."""

    name = "smoothed_cross_entropy"
    Config = SmoothedCrossEntropyConfig
    # Built on a softmax but not plain cross-entropy: the suite skips its comparison
    # with the unfused softmax cross-entropy.
    traits = LossTraits(targets=("indices", "one_hot", "soft"), softmax_cross_entropy=False)

    def compute(self, z: np.ndarray, y: np.ndarray) -> float:
        """z: (N, C) logits; y: (N, C) target rows -> mean loss."""
        e = z.dtype.type(self.config.smoothing)
        y_smooth = (1 - e) * y + e / z.dtype.type(z.shape[1])
        log_p = log_softmax(z)
        self.cache = (np.exp(log_p), y_smooth)
        return float(-np.sum(y_smooth * log_p) / z.shape[0])

    def backward(self) -> np.ndarray:
        """-> dL/dz: (N, C), in the logits' dtype."""
        p, y_smooth = self.cached()
        return (p - y_smooth) / p.dtype.type(p.shape[0])

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        return np.exp(log_softmax(np.asarray(logits)))

    def export_onnx(self, graph, logits: str) -> str:
        """For lamina export: the probabilities above, an ONNX Softmax."""
        return graph.add("Softmax", [logits], "softmax", axis=1)

    @classmethod
    def examples(cls) -> list[LossExample]:
        return [
            # Worked by hand: equal logits give p = 1/4 everywhere; class 0 smoothed by 0.1
            # is y' = [0.925, 0.025, 0.025, 0.025], so L = -sum y' log(1/4) = log 4 and
            # dL/dz = p - y' = [-0.675, 0.225, 0.225, 0.225].
            LossExample(config={}, n_classes=4, id="default", reference=LossReference(
                z=[[0.0, 0.0, 0.0, 0.0]], targets=[0], value=1.386294361120,
                dz=[[-0.675, 0.225, 0.225, 0.225]], proba=[[0.25, 0.25, 0.25, 0.25]],
                tolerance=1e-9)),
            LossExample(config={"smoothing": 0.3}, n_classes=10, id="strong"),
        ]


@hookimpl
def lamina_register_losses():
    return [SmoothedCrossEntropy]
