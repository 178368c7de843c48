"""layernorm: layer normalisation, each sample over its feature axes.

Axes are counted as in the arrays, batch axis 0: ``axis`` is the first normalised axis
and the statistics run over it and every axis after it (PyTorch's normalized_shape,
ONNX's LayerNormalization axis). The default, 1, is every per-sample axis: a (C, H, W)
sample is normalised over all its C * H * W entries; ``axis = -1`` is the last axis
only (Keras's default). With x of shape (N, *lead, *norm), M = prod(norm) entries per
group, and gamma, beta of shape norm (broadcast over N and lead):

    mu    = mean(x)                          over the M entries of each group
    d     = x - mu                           same shape as x
    var   = mean(d^2)                        biased (divides by M)
    s     = 1 / sqrt(var + eps)              (N, *lead, 1, ..., 1)
    x_hat = d * s                            same shape as x
    y     = gamma * x_hat + beta             same shape as x

Training and evaluation compute the same thing: no batch statistics, no running state.

Backward, with g = gamma * dy and means over the M entries of each group (derivation
in docs/layers/layernorm.md: mu and var depend on every entry of the group):

    dbeta  = sum over N and lead of dy                        norm
    dgamma = sum over N and lead of dy * x_hat                norm
    dx     = s * (g - mean(g) - x_hat * mean(g * x_hat))      same shape as x

Stability: var is the mean of the centred squares, never mean(x^2) - mu^2, which
cancels catastrophically in float32 when |mu| is large against the spread. The
float32 mean itself is off by up to half a unit in its last place, which at
x = 1e4 + noise is a visible share of the spread, so the centred values are centred
once more by their own mean (0 in exact arithmetic: the function is unchanged).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, field_validator

from lamina import (
    Example,
    Layer,
    LayerConfig,
    ParamSpec,
    Reference,
    Shape,
    ShapeError,
    hookimpl,
    sample_axis,
)


class LayerNormConfig(LayerConfig):
    """Settings of layernorm."""

    axis: int = Field(
        1,
        strict=True,
        ge=-64,
        le=64,
        description=(
            "the first normalised axis, counted as in the (N, ...) arrays (batch axis 0, "
            "as Keras, PyTorch and ONNX count): statistics run over it and every later "
            "axis. 1 (default) is every per-sample axis, -1 the last axis only (Keras's "
            "default); 0 is refused (the batch axis)"
        ),
    )
    epsilon: float = Field(
        1e-5,
        strict=True,
        ge=1e-12,
        description=(
            "added to the variance before the square root (PyTorch's and ONNX's 1e-5; "
            "Keras uses 1e-3). At least 1e-12, so that it never rounds to 0 in float32"
        ),
    )

    @field_validator("axis")
    @classmethod
    def _not_the_batch_axis(cls, axis: int) -> int:
        if axis == 0:
            raise ValueError(
                "layernorm axis 0 is the batch axis, received 0; samples are normalised "
                "each on its own. Use axis = 1 (every per-sample axis) or -1 (the last one)"
            )
        return axis


class LayerNorm(Layer):
    """Normalise each sample over its trailing axes, then scale by gamma, shift by beta."""

    name = "layernorm"
    Config = LayerNormConfig

    def _first_axis(self, input_shape: Shape) -> int:
        """The first normalised axis of ``input_shape`` (per sample, so 0 is the first
        axis after the batch axis), or ShapeError."""
        rank, axis = len(input_shape), self.config.axis
        if rank == 0:
            raise ShapeError(
                "layernorm expects at least one per-sample axis to normalise over, received "
                "a scalar shape (); remove the layer, there is nothing to normalise"
            )
        return sample_axis(axis, rank, f"layernorm axis {axis} is not an axis of its input "
                                       f"(N, {', '.join(map(str, input_shape))})")

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        norm = input_shape[self._first_axis(input_shape):]
        if math.prod(norm) < 2:
            raise ShapeError(
                f"layernorm over axis {self.config.axis} normalises groups of {norm} of its "
                f"input {input_shape}, a single entry, whose normalised value is 0 whatever "
                "the input; normalise over more axes (axis = 1 takes every per-sample axis)"
            )
        return input_shape

    def param_specs(self, input_shape: Shape) -> dict[str, ParamSpec]:
        norm = input_shape[self._first_axis(input_shape):]
        return {"gamma": ParamSpec(norm, init="ones"), "beta": ParamSpec(norm, init="zeros")}

    def _axes(self, ndim: int) -> tuple[int, ...]:
        """The normalised axes of an (N, ...) array of ``ndim`` axes."""
        return tuple(range(ndim - self._params["gamma"].ndim, ndim))

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, *lead, *norm) -> y: same shape."""
        axes = self._axes(x.ndim)
        d = x - x.mean(axis=axes, keepdims=True)
        d -= d.mean(axis=axes, keepdims=True)  # the rounding of the first mean (docstring)
        var = np.mean(d * d, axis=axes, keepdims=True)
        s = 1.0 / np.sqrt(var + x.dtype.type(self.config.epsilon))
        x_hat = d * s
        self.cache = (x_hat, s)
        return x_hat * self._params["gamma"] + self._params["beta"]

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """dy: like x -> dx: like x; fills dgamma and dbeta (the normalised shape)."""
        x_hat, s = self.cached()
        gamma = self._params["gamma"]
        summed = tuple(range(dy.ndim - gamma.ndim))  # the batch axis and the lead axes
        np.sum(dy * x_hat, axis=summed, out=self._grads["gamma"])
        np.sum(dy, axis=summed, out=self._grads["beta"])
        if not input_grad:
            return None
        axes = self._axes(dy.ndim)
        g = dy * gamma
        return s * (g - g.mean(axis=axes, keepdims=True)
                    - x_hat * (g * x_hat).mean(axis=axes, keepdims=True))

    def export_onnx(self, graph, inputs, name):
        """The forward's steps as ReduceMean, Sub, Mul, Add, Sqrt and Div (docs/layers/
        layernorm.md says why not ONNX's LayerNormalization)."""
        [x] = inputs
        rank = len(self.input_shape) + 1
        axes = list(range(rank - self._params["gamma"].ndim, rank))

        def mean(tensor: str, label: str) -> str:
            if graph.opset >= 18:  # ReduceMean's axes became an input in opset 18
                held = graph.constant(np.array(axes, dtype=np.int64), f"{name}.axes")
                return graph.add("ReduceMean", [tensor, held], f"{name}.{label}", keepdims=1)
            return graph.add("ReduceMean", [tensor], f"{name}.{label}", axes=axes, keepdims=1)

        def op(op_type: str, args: list[str], label: str) -> str:
            return graph.add(op_type, args, f"{name}.{label}")

        dtype = self._params["gamma"].dtype
        centred = op("Sub", [x, mean(x, "mu")], "centred_once")
        d = op("Sub", [centred, mean(centred, "rounding")], "d")
        var = mean(op("Mul", [d, d], "d_squared"), "var")
        eps = graph.constant(np.array(self.config.epsilon, dtype=dtype), f"{name}.epsilon")
        std = op("Sqrt", [op("Add", [var, eps], "var_eps")], "std")
        x_hat = op("Div", [d, std], "x_hat")
        gamma = graph.constant(self._params["gamma"], f"{name}.gamma")
        beta = graph.constant(self._params["beta"], f"{name}.beta")
        return graph.add("Add", [op("Mul", [x_hat, gamma], "scaled"), beta], name)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # docs/layers/layernorm.md, "Hand-worked example" (epsilon 1, so that
            # var + eps = 3 + 1 is a square): sample 1 has mu 2, d = [-1, -1, -1, 3],
            # var 3, s = 1/2, x_hat = [-1/2, -1/2, -1/2, 3/2]; sample 2 is constant: d = 0,
            # s = 1, x_hat = 0, y = beta. With dy = [1, 0, 0, 2] and [1, 1, 1, 1]:
            # g = gamma * dy = [1, 0, 0, 1] (mean 1/2, mean(g x_hat) = 1/4) and
            # [1, 2, -1, 1/2] (mean 5/8, mean(g x_hat) = 0), so
            # dx = s (g - mean g - x_hat mean(g x_hat)) = [5/16, -3/16, -3/16, 1/16] and
            # [3/8, 11/8, -13/8, -1/8]; dgamma = sum dy x_hat = [-1/2, 0, 0, 3],
            # dbeta = sum dy = [2, 1, 1, 3].
            Example(config={"epsilon": 1.0}, input_shape=(4,), id="features",
                    reference=Reference(
                        x=[[1.0, 1.0, 1.0, 5.0], [7.0, 7.0, 7.0, 7.0]],
                        params={"gamma": [1.0, 2.0, -1.0, 0.5], "beta": [0.0, 1.0, 0.0, -1.0]},
                        y=[[-0.5, 0.0, 0.5, -0.25], [0.0, 1.0, 0.0, -1.0]],
                        dy=[[1.0, 0.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]],
                        dx=[[0.3125, -0.1875, -0.1875, 0.0625],
                            [0.375, 1.375, -1.625, -0.125]],
                        grads={"gamma": [-0.5, 0.0, 0.0, 3.0], "beta": [2.0, 1.0, 1.0, 3.0]},
                        tolerance=1e-12)),
            Example(config={}, input_shape=(2, 3, 3), id="image_all_axes"),
            Example(config={"axis": -1, "epsilon": 1e-3}, input_shape=(2, 3, 4), id="last_axis"),
            Example(config={"axis": 2}, input_shape=(2, 3, 3), id="per_channel_maps"),
        ]


@hookimpl
def lamina_register_layers():
    return [LayerNorm]
