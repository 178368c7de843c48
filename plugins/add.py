"""add: element-wise sum of two or more inputs of the same shape (residual merges).

Forward, for K >= 2 inputs x_1, ..., x_K, each (N, ...) with the same shape:

    y = x_1 + x_2 + ... + x_K         (N, ...)

Backward: dy/dx_k is the identity for every k, so each input receives the upstream
gradient unchanged:

    dx_k = dy                         (N, ...), for k = 1..K

The K gradients are returned as K independent copies. The graph runner sums the
gradients of a node that feeds several consumers (fan-out, e.g. the shortcut of a
residual block), and a copy is safe to add into, whereas K references to one array
would turn one in-place sum into K. Derivation: docs/layers/add.md.
"""

from __future__ import annotations

import numpy as np

from lamina import (
    Example,
    Layer,
    LayerConfig,
    LayerTraits,
    Reference,
    Shape,
    ShapeError,
    hookimpl,
)


class AddConfig(LayerConfig):
    """add has no settings; its inputs are named by the node's ``inputs`` in the graph."""


class Add(Layer):
    """y = sum of the inputs; every input gets a copy of dy."""

    name = "add"
    Config = AddConfig
    traits = LayerTraits(multi_input=True)

    def compute_output_shape(self, input_shape: tuple[Shape, ...]) -> Shape:
        if len(input_shape) < 2:
            raise ShapeError(
                f"add expects two or more inputs, received {len(input_shape)}; list at least "
                'two nodes in this layer\'s inputs, e.g. inputs = ["conv2d_2", "relu_1"]'
            )
        expected = input_shape[0]
        for k, shape in enumerate(input_shape[1:], start=1):
            if shape != expected:
                raise ShapeError(
                    f"add expects inputs of equal shape: expected {expected} (the shape of "
                    f"input 0), received {shape} for input {k}; make the branches agree (e.g. "
                    'the same filters and padding="same" on the convolutions) or project the '
                    "shortcut to the same shape"
                )
        return expected

    def forward(self, x: list[np.ndarray], *, training: bool) -> np.ndarray:
        """x: K arrays (N, ...) -> y: (N, ...)."""
        y = x[0] + x[1]
        for x_k in x[2:]:
            y += x_k
        self.cache = len(x)
        return y

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> list[np.ndarray]:
        """dy: (N, ...) -> K arrays (N, ...), each a fresh copy of dy."""
        n_inputs = self.cached()
        return [dy.copy() for _ in range(n_inputs)]

    def export_onnx(self, graph, inputs, name):
        return graph.add("Sum", inputs, name)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # y = x_1 + x_2; each input's gradient is dy itself
            Example(config={}, input_shape=((6,), (6,)), id="two_flat", reference=Reference(
                x=[[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], [[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]]],
                y=[[11.0, 22.0, 33.0, 44.0, 55.0, 66.0]],
                dy=[[1.0, -1.0, 2.0, -2.0, 3.0, -3.0]],
                dx=[[[1.0, -1.0, 2.0, -2.0, 3.0, -3.0]], [[1.0, -1.0, 2.0, -2.0, 3.0, -3.0]]])),
            Example(config={}, input_shape=((2, 3, 3),) * 3, id="three_images"),
        ]


@hookimpl
def lamina_register_layers():
    return [Add]
