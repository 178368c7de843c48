"""softmax: exponentials normalised to sum to 1 along one axis of each sample.

Forward, for x (N, ...) and an axis a of the sample (counted as in the (N, ...) array:
1 is the first axis after the batch axis, -1 the last, as Keras, PyTorch and ONNX count;
the batch axis 0 is refused):

    s = x - max_a x                  (N, ...)  shift by the max along a: the largest
                                               exponent is exp(0) = 1, nothing overflows
    e = exp(s)                       (N, ...)
    y = e / sum_a e                  (N, ...)  each line along a sums to 1

Backward: along one line, dy_i/dx_j = y_i ([i == j] - y_j) (the Jacobian diag(y) - y y^T),
so by the chain rule

    dx = y * (dy - sum_a (dy * y))   (N, ...)  the sum kept as a size-1 axis

No parameters; the per-sample shape is unchanged. A network trained with
softmax_cross_entropy must not end with this layer: that loss takes logits and applies
its own softmax. Derivation: docs/layers/softmax.md.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from lamina import Example, Layer, LayerConfig, Reference, Shape, hookimpl, sample_axis


class SoftmaxConfig(LayerConfig):
    """Settings of softmax."""

    axis: int = Field(
        -1,
        strict=True,
        ge=-64,
        le=64,
        description=(
            "the axis along which the outputs sum to 1, counted as in the (N, ...) arrays "
            "(batch axis 0, as Keras, PyTorch and ONNX count): -1 (default) is the last "
            "axis, 1 the channel axis of images; 0 is refused (the batch axis)"
        ),
    )

    @field_validator("axis")
    @classmethod
    def _not_the_batch_axis(cls, axis: int) -> int:
        if axis == 0:
            raise ValueError(
                "softmax axis 0 is the batch axis, received 0; a sample's outputs never depend "
                "on another sample. Use axis = -1 (the last axis: the features of (N, F)) or "
                "1 (the channels of (N, C, H, W))"
            )
        return axis


class Softmax(Layer):
    """y = exp(x) / sum(exp(x)) along one axis of each sample."""

    name = "softmax"
    Config = SoftmaxConfig

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        axis = self.config.axis
        sample_axis(axis, len(input_shape), f"softmax axis {axis} is not an axis of a sample "
                                            f"of shape {tuple(input_shape)}")
        return input_shape

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, ...) -> y: (N, ...)."""
        a = self.config.axis
        # A difference beyond the float range (a line holding -3e38 and 3e38) is -inf,
        # whose exponential is the 0 it should be: that overflow is not an error.
        with np.errstate(over="ignore"):
            s = x - x.max(axis=a, keepdims=True)
        e = np.exp(s)
        y = e / e.sum(axis=a, keepdims=True)
        self.cache = y
        return y

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        """dy: (N, ...) -> dx: (N, ...)."""
        y = self.cached()
        return y * (dy - (dy * y).sum(axis=self.config.axis, keepdims=True))

    def export_onnx(self, graph, inputs, name):
        return graph.add("Softmax", inputs, name, axis=self.config.axis)

    @classmethod
    def examples(cls) -> list[Example]:
        ln2, ln3, ln5 = np.log(2.0), np.log(3.0), np.log(5.0)
        return [
            # docs/layers/softmax.md, "Hand-worked example": exp(x) = [1, 2, 5], sum 8;
            # dy = [1, 0, 0] gives sum(dy * y) = 1/8 and dx = y * (dy - 1/8)
            Example(config={}, input_shape=(3,), id="flat", reference=Reference(
                x=[[0.0, ln2, ln5]],
                y=[[0.125, 0.25, 0.625]],
                dy=[[1.0, 0.0, 0.0]],
                dx=[[0.109375, -0.03125, -0.078125]])),
            # axis 1, the first axis of a (2, 3) sample: each column sums to 1 (exp(x) =
            # [[1, 3, 1], [3, 1, 1]])
            Example(config={"axis": 1}, input_shape=(2, 3), id="columns", reference=Reference(
                x=[[[0.0, ln3, 0.0], [ln3, 0.0, 0.0]]],
                y=[[[0.25, 0.75, 0.5], [0.75, 0.25, 0.5]]],
                dy=[[[1.0, 1.0, 2.0], [0.0, 1.0, 0.0]]],
                dx=[[[0.1875, 0.0, 0.5], [-0.1875, 0.0, -0.5]]])),
            Example(config={"axis": 1}, input_shape=(4, 3, 2), id="channels"),
            Example(config={"axis": -2}, input_shape=(4, 3, 2), id="rows"),
        ]


@hookimpl
def lamina_register_layers():
    return [Softmax]
