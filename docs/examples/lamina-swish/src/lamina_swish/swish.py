"""swish: a smooth, self-gated activation, for x of any shape (N, ...).

Forward, with beta > 0:

    s = sigmoid(beta * x) = 1 / (1 + exp(-beta * x))     (N, ...)
    y = x * s                                             (N, ...)

Backward: ds/dx = beta * s * (1 - s), so by the product rule

    dy/dx = s + x * beta * s * (1 - s) = s * (1 + beta * x * (1 - s))
    dx    = dy * s * (1 + beta * x * (1 - s))             (N, ...)

The sigmoid is computed as (1 + tanh(beta * x / 2)) / 2, which equals it exactly
and never overflows (exp(-beta * x) would for large negative x in float32).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lamina import Example, Layer, LayerConfig, Reference, Shape, hookimpl

LN3 = float(np.log(3.0))


class SwishConfig(LayerConfig):
    """Settings of swish."""

    beta: float = Field(
        1.0, gt=0.0, le=100.0,
        description="sharpness of the gate; 1 gives SiLU, large values approach relu",
    )


class Swish(Layer):
    """y = x * sigmoid(beta * x); no parameters."""

    name = "swish"
    Config = SwishConfig

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, ...) -> y: (N, ...)."""
        beta = x.dtype.type(self.config.beta)
        half = x.dtype.type(0.5)
        s = half * (1 + np.tanh(half * beta * x))
        self.cache = (x, s)
        return x * s

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        """dy: (N, ...) -> dx: (N, ...)."""
        x, s = self.cached()
        beta = x.dtype.type(self.config.beta)
        return dy * s * (1 + beta * x * (1 - s))

    def export_onnx(self, graph, inputs, name):
        """For lamina export: y = x * Sigmoid(beta * x), three ONNX nodes."""
        [x] = inputs
        beta = graph.constant(np.array(self.config.beta, np.float32), f"{name}.beta")
        gate = graph.add("Sigmoid", [graph.add("Mul", [x, beta], f"{name}.scaled")],
                         f"{name}.gate")
        return graph.add("Mul", [x, gate], name)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # Worked by hand: at x = ln 3, sigmoid(x) = 3/4, so y = (3/4) ln 3 = 0.823959 and
            # dy/dx = 3/4 (1 + ln 3 / 4) = 0.955990; at -ln 3 the gate is 1/4: y = -0.274653,
            # dy/dx = 1/4 (1 - 3 ln 3 / 4) = 0.044010; at 0, y = 0 and dy/dx = 1/2.
            Example(config={}, input_shape=(6,), id="silu", reference=Reference(
                x=[[0.0, LN3, -LN3, 0.0, LN3, -LN3]],
                y=[[0.0, 0.823959216501, -0.274653072167, 0.0, 0.823959216501,
                    -0.274653072167]],
                dy=[[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]],
                dx=[[0.5, 0.955989804125, 0.044010195875, 1.0, 1.911979608251,
                     0.088020391749]], tolerance=1e-9)),
            Example(config={"beta": 4.0}, input_shape=(2, 3, 3), id="sharp_image",
                    input_range=(-3.0, 3.0)),
        ]


@hookimpl
def lamina_register_layers():
    return [Swish]
