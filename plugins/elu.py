"""elu: the exponential linear unit, applied element-wise.

Forward, for x of any shape (N, ...) and alpha >= 0:

    y = x                           where x > 0
    y = alpha * (exp(x) - 1)        where x <= 0     tends to -alpha as x -> -infinity

that is, the two pieces added, each 0 on the other's side:

    y = max(x, 0) + alpha * expm1(min(x, 0))         (N, ...)

expm1 keeps its digits near 0, where exp(x) - 1 would cancel, and is only ever given
the negative part, so it never overflows.

Backward: 1 on the positive piece; on the other, alpha exp(x) = y + alpha, a function of
the output (at the kink x = 0 the negative side's alpha, which is 1 by default and
then continuous). Since y > 0 exactly where x > 0, the output alone is kept:

    positive = y > 0                                 (N, ...) booleans
    g        = positive + (1 - positive) (y + alpha) (N, ...) 1 where x > 0, else y + alpha
    dx       = dy * g

alpha = 1 is the default of PyTorch, Keras and the ELU paper; alpha = 0 is relu. No
parameters; the per-sample shape is unchanged. Derivation: docs/layers/elu.md.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lamina import Example, Layer, LayerConfig, LayerTraits, Reference, Shape, hookimpl


class ELUConfig(LayerConfig):
    """Settings of elu."""

    alpha: float = Field(
        1.0,
        strict=True,
        ge=0.0,
        le=100.0,
        description=("the scale of the negative piece, in [0, 100]: elu tends to -alpha "
                     "below 0; 0 makes the layer relu"),
    )


class ELU(Layer):
    """y = x where x > 0, alpha * (exp(x) - 1) elsewhere."""

    name = "elu"
    Config = ELUConfig
    # With alpha >= 0 the function never decreases, and its gradient y + alpha is 0 exactly
    # where y has reached its floor -alpha (alpha = 0: the whole piece x <= 0): the runner
    # may run it after a max pool, on fewer entries (lamina.layer).
    traits = LayerTraits(monotone_elementwise=True)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, ...) -> y: (N, ...)."""
        alpha = x.dtype.type(self.config.alpha)
        y = np.maximum(x, 0) + alpha * np.expm1(np.minimum(x, 0))
        self.cache = y
        return y

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        """dy: (N, ...) -> dx: (N, ...)."""
        y = self.cached()
        alpha = y.dtype.type(self.config.alpha)
        positive = y > 0
        return dy * (positive + ~positive * (y + alpha))

    def export_onnx(self, graph, inputs, name):
        return graph.add("Elu", inputs, name, alpha=float(self.config.alpha))

    @classmethod
    def examples(cls) -> list[Example]:
        ln2, ln4 = np.log(2.0), np.log(4.0)
        return [
            # docs/layers/elu.md, "Hand-worked example": with alpha = 2, y = 2 (e^x - 1) for
            # x <= 0 (-1.5 at -ln 4, -1 at -ln 2) and the slope there is y + 2 = 2 e^x
            Example(config={"alpha": 2.0}, input_shape=(5,), id="alpha_2", reference=Reference(
                x=[[-ln4, -ln2, 0.0, 0.5, 1.5]],
                y=[[-1.5, -1.0, 0.0, 0.5, 1.5]],
                dy=[[1.0, 2.0, 3.0, 4.0, 5.0]],
                dx=[[0.5, 2.0, 6.0, 4.0, 5.0]])),
            Example(config={}, input_shape=(2, 4, 3), id="default_image"),
        ]


@hookimpl
def lamina_register_layers():
    return [ELU]
