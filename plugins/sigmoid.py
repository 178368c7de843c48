"""sigmoid: the logistic function, applied element-wise.

Forward, for x of any shape (N, ...):

    y = sigma(x) = 1 / (1 + exp(-x))              (N, ...) in [0, 1]

computed with no positive exponent, so that nothing overflows for any finite x:

    y = exp(min(x, 0)) / (1 + exp(-|x|))          (N, ...)

which is 1 / (1 + exp(-x)) where x >= 0 and exp(x) / (1 + exp(x)) where x < 0 (the same
fraction times exp(x) / exp(x)); the latter keeps its relative accuracy in the lower
tail, where 1 - sigma(-x) would cancel.

Backward: sigma' = sigma (1 - sigma), a function of the output alone:

    dx = dy * y * (1 - y)                         (N, ...)

No parameters; the per-sample shape is unchanged. Derivation: docs/layers/sigmoid.md.
"""

from __future__ import annotations

import numpy as np

from lamina import Example, Layer, LayerConfig, LayerTraits, Reference, Shape, hookimpl
from lamina.kernels.special import sigmoid


class SigmoidConfig(LayerConfig):
    """sigmoid has no settings."""


class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)) element-wise; dx = dy * y * (1 - y)."""

    name = "sigmoid"
    Config = SigmoidConfig
    # sigma is increasing and has no parameters, so max-pooling it equals applying it to the
    # pooled maximum: the runner may run it after a max pool, on fewer entries (lamina.layer).
    traits = LayerTraits(monotone_elementwise=True)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, ...) -> y: (N, ...)."""
        y = sigmoid(x)
        self.cache = y
        return y

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        """dy: (N, ...) -> dx: (N, ...)."""
        y = self.cached()
        return dy * y * (1 - y)

    def export_onnx(self, graph, inputs, name):
        return graph.add("Sigmoid", inputs, name)

    @classmethod
    def examples(cls) -> list[Example]:
        ln3, ln9 = np.log(3.0), np.log(9.0)
        return [
            # docs/layers/sigmoid.md, "Hand-worked example": sigma(ln k) = k / (k + 1)
            Example(config={}, input_shape=(5,), id="flat", reference=Reference(
                x=[[-ln9, -ln3, 0.0, ln3, ln9]],
                y=[[0.1, 0.25, 0.5, 0.75, 0.9]],
                dy=[[1.0, 2.0, 3.0, 4.0, 5.0]],
                dx=[[0.09, 0.375, 0.75, 0.75, 0.45]])),
            Example(config={}, input_shape=(2, 4, 3), id="image"),
        ]


@hookimpl
def lamina_register_layers():
    return [Sigmoid]
