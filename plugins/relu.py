"""relu: the rectified linear unit, applied element-wise.

Forward, for x of any shape (N, ...):

    mask = x > 0                      (N, ...) booleans
    y    = x * mask = max(x, 0)       (N, ...)

Backward: dy/dx is 1 where x > 0 and 0 elsewhere (the kink at 0 gets 0, the usual
subgradient choice), so the upstream gradient passes through the mask:

    dx = dy * mask                    (N, ...)

No parameters; the per-sample shape is unchanged. Both passes are single compiled loops
(lamina.kernels.elementwise). Derivation: docs/layers/relu.md.
"""

from __future__ import annotations

import numpy as np

from lamina import Example, Layer, LayerConfig, LayerTraits, Reference, Shape, hookimpl
from lamina.kernels import relu, relu_backward


class ReLUConfig(LayerConfig):
    """relu has no settings."""


class ReLU(Layer):
    """y = max(x, 0) element-wise; the gradient flows only where x was positive."""

    name = "relu"
    Config = ReLUConfig
    # max(x, 0) is non-decreasing, its derivative is 0 on the whole flat piece x <= 0
    # (the kink included) and it has no parameters: the runner may apply it after a
    # max pool instead of before (lamina.layer), on 4x fewer entries behind a 2x2 pool.
    traits = LayerTraits(monotone_elementwise=True)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, ...) -> y: (N, ...)."""
        y, self.cache = relu(x)  # the mask and the product in one pass
        return y

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        """dy: (N, ...) -> dx: (N, ...)."""
        return relu_backward(dy, self.cached())

    def export_onnx(self, graph, inputs, name):
        return graph.add("Relu", inputs, name)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # y = max(x, 0); dx = dy where x > 0, else 0 (0 at the kink itself)
            Example(config={}, input_shape=(7,), id="flat", reference=Reference(
                x=[[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0]],
                y=[[0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 3.0]],
                dy=[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]],
                dx=[[0.0, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0]])),
            Example(config={}, input_shape=(2, 4, 3), id="image"),
        ]


@hookimpl
def lamina_register_layers():
    return [ReLU]
