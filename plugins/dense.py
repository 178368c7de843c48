"""dense: a fully connected (affine) layer.

Forward, for a flat input x (one feature vector per sample):

    x: (N, F)    W: (F, U)    b: (U,)
    y = x W + b                       (N, U)

Backward, from dy = dL/dy (N, U): y_nu = sum_f x_nf W_fu + b_u, so

    dx = dy W^T                       (N, F)
    dW = x^T dy                       (F, U)   (sums over the batch)
    db = sum_n dy_n                   (U,)

One matrix product forward, two backward. W is drawn by ``initializer``
(Glorot-uniform by default, as in Keras); b starts at zero.
Derivation: docs/layers/dense.md.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lamina import (
    Example,
    Layer,
    LayerConfig,
    ParamSpec,
    Reference,
    Shape,
    ShapeError,
    hookimpl,
)
from lamina.initializers import Initializer


class DenseConfig(LayerConfig):
    """Settings of dense."""

    units: int = Field(
        ..., strict=True, ge=1, description="number of outputs U per sample (at least 1)"
    )
    use_bias: bool = Field(True, strict=True, description="add a learned bias b of shape (units,)")
    initializer: Initializer = Field(
        "glorot_uniform", description="how W is drawn (see lamina.initializers)"
    )


class Dense(Layer):
    """y = x W + b for x of shape (N, F)."""

    name = "dense"
    Config = DenseConfig

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ShapeError(
                f"dense expects a flat input (features,), received {input_shape}; "
                "add a flatten layer before it"
            )
        return (self.config.units,)

    def param_specs(self, input_shape: Shape) -> dict[str, ParamSpec]:
        (n_features,) = input_shape
        specs = {"W": ParamSpec((n_features, self.config.units), init=self.config.initializer)}
        if self.config.use_bias:
            specs["b"] = ParamSpec((self.config.units,), init="zeros")
        return specs

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, F) -> y: (N, U)."""
        self.cache = x
        y = x @ self._params["W"]
        if self.config.use_bias:
            y += self._params["b"]
        return y

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """dy: (N, U) -> dx: (N, F); fills dW (F, U) and db (U,)."""
        x = self.cached()
        np.matmul(x.T, dy, out=self._grads["W"])
        if self.config.use_bias:
            np.sum(dy, axis=0, out=self._grads["b"])
        return dy @ self._params["W"].T if input_grad else None

    def export_onnx(self, graph, inputs, name):
        """ONNX Gemm: x @ W + b (MatMul without a bias)."""
        W = graph.constant(self._params["W"], f"{name}.W")
        if not self.config.use_bias:
            return graph.add("MatMul", [*inputs, W], name)
        return graph.add("Gemm", [*inputs, W, graph.constant(self._params["b"], f"{name}.b")],
                         name)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # docs/layers/dense.md, "Hand-worked example"
            Example(config={"units": 4}, input_shape=(6,), id="units_4", reference=Reference(
                x=[[1.0, 0.0, 0.0, 0.0, 0.0, 2.0]], y=[[2.0, 2.0, 1.0, 7.0]],
                params={"W": [[1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0],
                              [0, 0, 0, 0], [0.5, 0, -1, 1]], "b": [0, 0, 0, 1]},
                dy=[[1.0, 0.0, -1.0, 2.0]], dx=[[6.0, 0.0, 0.0, 0.0, 0.0, 3.5]],
                grads={"W": [[1, 0, -1, 2], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0],
                             [0, 0, 0, 0], [2, 0, -2, 4]], "b": [1, 0, -1, 2]})),
            Example(config={"units": 3, "use_bias": False}, input_shape=(5,), id="no_bias"),
            Example(config={"units": 1, "initializer": "he_normal"}, input_shape=(7,), id="he_1"),
        ]


@hookimpl
def lamina_register_layers():
    return [Dense]
