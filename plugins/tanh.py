"""tanh: the hyperbolic tangent, applied element-wise.

Forward, for x of any shape (N, ...):

    y = tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))     (N, ...) in [-1, 1]

np.tanh computes it for any finite x without overflow (it tends to +-1, not to a ratio of
two infinities). Backward: tanh' = 1 - tanh^2, a function of the output alone:

    dx = dy * (1 - y^2)                                        (N, ...)

No parameters; the per-sample shape is unchanged. Derivation: docs/layers/tanh.md.
"""

from __future__ import annotations

import numpy as np

from lamina import Example, Layer, LayerConfig, LayerTraits, Reference, Shape, hookimpl


class TanhConfig(LayerConfig):
    """tanh has no settings."""


class Tanh(Layer):
    """y = tanh(x) element-wise; dx = dy * (1 - y^2)."""

    name = "tanh"
    Config = TanhConfig
    # tanh is increasing and has no parameters, so max-pooling it equals applying it to the
    # pooled maximum: the runner may run it after a max pool, on fewer entries (lamina.layer).
    traits = LayerTraits(monotone_elementwise=True)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, ...) -> y: (N, ...)."""
        y = np.tanh(x)
        self.cache = y
        return y

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        """dy: (N, ...) -> dx: (N, ...)."""
        y = self.cached()
        return dy * (1 - y * y)

    def export_onnx(self, graph, inputs, name):
        return graph.add("Tanh", inputs, name)

    @classmethod
    def examples(cls) -> list[Example]:
        ln2, ln3 = np.log(2.0), np.log(3.0)
        return [
            # docs/layers/tanh.md, "Hand-worked example": tanh(ln k) = (k^2 - 1) / (k^2 + 1)
            Example(config={}, input_shape=(5,), id="flat", reference=Reference(
                x=[[-ln3, -ln2, 0.0, ln2, ln3]],
                y=[[-0.8, -0.6, 0.0, 0.6, 0.8]],
                dy=[[1.0, 2.0, 3.0, 4.0, 5.0]],
                dx=[[0.36, 1.28, 3.0, 2.56, 1.8]])),
            Example(config={}, input_shape=(2, 4, 3), id="image"),
        ]


@hookimpl
def lamina_register_layers():
    return [Tanh]
