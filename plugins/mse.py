"""mse: the mean squared error of the network's outputs against real-valued targets.

Forward, for outputs z (N, C) (the last layer's values, used as they are) and targets
y (N, C) of any finite numbers ((N,) when C == 1):

    d = z - y                                   (N, C)  the errors
    L = (1 / (N C)) sum_n sum_c d_nc^2          mean over every entry (a float)

the convention of Keras's MeanSquaredError and of PyTorch's MSELoss(reduction='mean'):
the mean over all N·C entries, so a loss value reads as one squared error whatever C.

Backward: dL/dz_nc = 2 d_nc / (N C):

    dz = 2 (z - y) / (N C)                      (N, C)

predict_proba returns the outputs themselves (the predictions; no squashing), and the
ONNX export is an Identity. Derivation: docs/losses/mse.md.
"""

from __future__ import annotations

import numpy as np

from lamina import Loss, LossConfig, LossExample, LossReference, LossTraits, hookimpl
from lamina.loss import as_logits


class MSEConfig(LossConfig):
    """mse has no settings."""


class MSE(Loss):
    """Mean over N·C entries of (z - y)^2; gradient 2 (z - y) / (N C)."""

    name = "mse"
    Config = MSEConfig
    # A value loss: rows of any finite numbers (one-hot rows and 0/1 labels are numbers
    # too); class indices are refused with the way to one-hot them.
    traits = LossTraits(targets=("values",))

    def compute(self, z: np.ndarray, y: np.ndarray) -> float:
        """z: (N, C) outputs; y: (N, C) targets -> mean squared error."""
        d = z - y
        self.cache = d
        # squared in float64: a float32 error beyond 1.8e19 would overflow when squared
        return float(np.sum(np.square(d, dtype=np.float64)) / d.size)

    def backward(self) -> np.ndarray:
        """-> dL/dz: (N, C), in the outputs' dtype."""
        d = self.cached()
        return d * d.dtype.type(2.0 / d.size)

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """z: (N, C) -> the predictions, z itself (a copy)."""
        return np.array(as_logits(logits, f"loss {self.name!r}"), copy=True)

    def export_onnx(self, graph, logits: str) -> str:
        """The predictions of predict_proba: the outputs, an ONNX Identity."""
        return graph.add("Identity", [logits], "predictions")

    @classmethod
    def examples(cls) -> list[LossExample]:
        return [
            # docs/losses/mse.md, "Hand-worked example": d = [1, -2, 0.5], sum d^2 = 5.25
            LossExample(config={}, n_classes=3, id="3_outputs", reference=LossReference(
                z=[[2.0, -1.0, 0.5]], targets=[[1.0, 1.0, 0.0]], value=1.75,
                dz=[[2.0 / 3.0, -4.0 / 3.0, 1.0 / 3.0]], proba=[[2.0, -1.0, 0.5]],
                tolerance=1e-12)),
            # one output, targets given as (N,): d = [0.5, -1], L = (0.25 + 1) / 2
            LossExample(config={}, n_classes=1, id="1_output", reference=LossReference(
                z=[[3.0], [1.0]], targets=[2.5, 2.0], value=0.625, dz=[[0.5], [-1.0]],
                proba=[[3.0], [1.0]], tolerance=1e-12)),
        ]


@hookimpl
def lamina_register_losses():
    return [MSE]
