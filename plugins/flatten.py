"""flatten: collapse every per-sample axis into one feature axis.

Forward, for x of shape (N, d1, d2, ..., dk):

    y = reshape(x, (N, D))            D = d1 * d2 * ... * dk

Backward: flatten only relabels the entries, each y entry is exactly one x entry,
so the Jacobian is a permutation-free identity and the gradient is reshaped back:

    dx = reshape(dy, (N, d1, ..., dk))

Both directions are views when the array is contiguous (no copy). No parameters.
Derivation: docs/layers/flatten.md.
"""

from __future__ import annotations

import math

import numpy as np

from lamina import Example, Layer, LayerConfig, Reference, Shape, ShapeError, hookimpl


class FlattenConfig(LayerConfig):
    """flatten has no settings."""


class Flatten(Layer):
    """(N, d1, ..., dk) -> (N, d1 * ... * dk), as a view where possible."""

    name = "flatten"
    Config = FlattenConfig

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) == 0:
            raise ShapeError(
                "flatten expects at least one per-sample axis, e.g. (channels, height, width), "
                "received a scalar shape (); remove the flatten layer, there is nothing to flatten"
            )
        return (math.prod(input_shape),)

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, d1, ..., dk) -> y: (N, D)."""
        self.cache = x.shape
        return x.reshape(x.shape[0], *self.output_shape)

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        """dy: (N, D) -> dx: (N, d1, ..., dk)."""
        x_shape = self.cached()
        return dy.reshape(x_shape)

    def export_onnx(self, graph, inputs, name):
        return graph.add("Flatten", inputs, name, axis=1)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # entry (c, h, w) of a (3, 4, 5) sample lands at c * 20 + h * 5 + w
            Example(config={}, input_shape=(3, 4, 5), id="image", reference=Reference(
                x=np.arange(60.0).reshape(1, 3, 4, 5), y=np.arange(60.0)[None],
                dy=2 * np.arange(60.0)[None], dx=2 * np.arange(60.0).reshape(1, 3, 4, 5))),
            Example(config={}, input_shape=(6,), id="already_flat"),
        ]


@hookimpl
def lamina_register_layers():
    return [Flatten]
