"""gelu: the Gaussian error linear unit, x weighted by a smooth gate, element-wise.

Forward, for x of any shape (N, ...):

    y = x * gate(x)                                   (N, ...)

    gate = Phi(x) = erfc(-x / sqrt(2)) / 2            approximate = "none" (the default)
    gate = sigma(2u), u = sqrt(2/pi) (x + c x^3)      approximate = "tanh", c = 0.044715

Phi is the standard normal distribution function; the tanh form is PyTorch's
0.5 x (1 + tanh(u)), written with 0.5 (1 + tanh(u)) = sigma(2u), which does not cancel
where tanh(u) is near -1. Likewise erfc(-x / sqrt(2)) keeps the digits that
1 + erf(x / sqrt(2)) loses for negative x (lamina.kernels.special).

Backward: y' = gate + x gate', so

    dx    = dy * (gate + x * gate')                   (N, ...)

    gate' = phi(x) = exp(-x^2 / 2) / sqrt(2 pi)       (none)
    gate' = sigma'(v) 2 sqrt(2/pi) (1 + 3c x^2)       (tanh), v = 2u

with sigma'(v) = sigma(v) sigma(-v) = e / (1 + e)^2, e = exp(-|v|), which keeps its digits
where sigma(v) (1 - sigma(v)) would cancel (sigma near 1).

gate and gate' only see x clipped to [-40, 40]: beyond, the gate is exactly 0 or 1 and
gate' exactly 0 in float64 and float32 alike, while x^2 and x^3 would overflow.
gelu is not monotone (its minimum is near x = -0.75), so it declares no trait. No
parameters; the per-sample shape is unchanged. Derivation: docs/layers/gelu.md.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from pydantic import Field

from lamina import Example, Layer, LayerConfig, Reference, Shape, hookimpl
from lamina.kernels.special import erfc, sigmoid

C = 0.044715
SQRT_HALF = math.sqrt(0.5)
TWO_K = 2 * math.sqrt(2 / math.pi)  # 2u = TWO_K * (x + C x^3)
#: |x| beyond which both gates are exactly 0 or 1, in float32 and float64
BOUND = 40.0


class GELUConfig(LayerConfig):
    """Settings of gelu."""

    approximate: Literal["none", "tanh"] = Field(
        "none",
        description=("'none': the exact x * Phi(x), with the error function; 'tanh': the "
                     "tanh approximation of PyTorch's GELU(approximate='tanh')"),
    )


class Gated(NamedTuple):
    """What backward needs from forward."""

    x: np.ndarray          # (N, ...) the input
    gate: np.ndarray       # (N, ...) Phi(x) or sigma(2u): y = x * gate
    v: np.ndarray | None   # (N, ...) 2u for the tanh form, None for the exact one


class GELU(Layer):
    """y = x * Phi(x) element-wise (or its tanh approximation)."""

    name = "gelu"
    Config = GELUConfig

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, ...) -> y: (N, ...)."""
        if self.config.approximate == "none":
            v, gate = None, erfc(-x * SQRT_HALF) / 2
        else:
            xc = np.clip(x, -BOUND, BOUND)
            v = TWO_K * (xc + C * xc * xc * xc)
            gate = sigmoid(v)
        self.cache = Gated(x, gate, v)
        return x * gate

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        """dy: (N, ...) -> dx: (N, ...)."""
        x, gate, v = self.cached()
        xc = np.clip(x, -BOUND, BOUND)
        if v is None:
            dgate = np.exp(-xc * xc / 2) / math.sqrt(2 * math.pi)
        else:
            e = np.exp(-np.abs(v))
            dgate = e / ((1 + e) * (1 + e)) * TWO_K * (1 + 3 * C * xc * xc)
        return dy * (gate + x * dgate)

    def export_onnx(self, graph, inputs, name):
        """ONNX's own Gelu needs opset 20 and the exporter writes opset 17: y = x * gate,
        the gate from Erf (the exact form) or from Sigmoid (the tanh form)."""
        [x] = inputs

        def op(kind: str, *args: str | float, what: str) -> str:
            """An ONNX node named after the layer; a float argument becomes a constant."""
            names = [graph.constant(np.array(a, np.float32), f"{name}.{what}_constant")
                     if isinstance(a, float) else a for a in args]
            return graph.add(kind, names, f"{name}.{what}")

        if self.config.approximate == "none":
            # gate = (1 + erf(x / sqrt(2))) / 2
            erf = op("Erf", op("Mul", x, SQRT_HALF, what="scaled"), what="erf")
            gate = op("Mul", op("Add", erf, 1.0, what="one_plus_erf"), 0.5, what="gate")
        else:
            # gate = sigma(v), v = TWO_K (x + C x^3)
            cube = op("Mul", op("Mul", x, x, what="square"), x, what="cube")
            inner = op("Add", x, op("Mul", cube, C, what="c_cube"), what="inner")
            gate = op("Sigmoid", op("Mul", inner, TWO_K, what="v"), what="gate")
        return graph.add("Mul", [x, gate], name)

    @classmethod
    def examples(cls) -> list[Example]:
        x, dy = [[-3.0, -1.0, 0.0, 1.0, 3.0]], [[1.0, 2.0, 3.0, 4.0, 5.0]]
        return [
            # docs/layers/gelu.md, "Hand-worked example": y = x Phi(x) and
            # dx = dy (Phi(x) + x phi(x)), Phi and phi from a normal table
            Example(config={}, input_shape=(5,), id="exact", reference=Reference(
                x=x, dy=dy,
                y=[[-0.004049694095, -0.158655253931, 0.0, 0.841344746069, 2.995950305905]],
                dx=[[-0.011945647204, -0.166630941175, 1.5, 4.333261882351, 5.059728236021]],
                tolerance=1e-9)),
            # the same points through 0.5 x (1 + tanh(u)) (docs/layers/gelu.md)
            Example(config={"approximate": "tanh"}, input_shape=(5,), id="tanh",
                    reference=Reference(
                        x=x, dy=dy,
                        y=[[-0.003637392082, -0.158808009392, 0.0, 0.841191990608,
                            2.996362607918]],
                        dx=[[-0.011584166631, -0.165928167692, 1.5, 4.331856335383,
                             5.057920833155]],
                        tolerance=1e-9)),
            Example(config={}, input_shape=(2, 4, 3), id="exact_image"),
            Example(config={"approximate": "tanh"}, input_shape=(2, 4, 3), id="tanh_image"),
        ]


@hookimpl
def lamina_register_layers():
    return [GELU]
