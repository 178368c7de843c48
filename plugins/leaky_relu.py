"""leaky_relu: relu with a small slope instead of 0 on the negative side, element-wise.

Forward, for x of any shape (N, ...) and a slope s in [0, 1]:

    y = x if x > 0, else s x  =  max(x, s x)   (N, ...)  (the larger one, as s <= 1)

Backward: y is linear in x on each piece; its slope g is 1 on the positive piece and s
on the other (at the kink x = 0 the negative side's s, as relu uses 0 there):

    mask = x > 0                      (N, ...) booleans, kept from forward
    g    = mask + (1 - mask) s        (N, ...) 1 where x > 0, s elsewhere
    dx   = dy * g                     (N, ...)

The default s = 0.01 is PyTorch's (torch.nn.LeakyReLU's negative_slope) and ONNX's
LeakyRelu alpha; Keras's LeakyReLU layer defaults to 0.3. s = 0 is relu. No parameters;
the per-sample shape is unchanged. Derivation: docs/layers/leaky_relu.md.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lamina import Example, Layer, LayerConfig, LayerTraits, Reference, Shape, hookimpl


class LeakyReLUConfig(LayerConfig):
    """Settings of leaky_relu."""

    slope: float = Field(
        0.01,
        strict=True,
        ge=0.0,
        le=1.0,
        description=("the slope for x <= 0, in [0, 1] (PyTorch's negative_slope, Keras's "
                     "negative_slope or alpha); 0 makes the layer relu"),
    )


class LeakyReLU(Layer):
    """y = x where x > 0, slope * x elsewhere; the gradient is scaled the same way."""

    name = "leaky_relu"
    Config = LeakyReLUConfig
    # With a slope >= 0 the function never decreases, and with slope 0 its flat piece
    # (x <= 0, the kink included) has gradient 0: the runner may run it after a max pool,
    # on fewer entries (lamina.layer). A negative slope is refused by the config.
    traits = LayerTraits(monotone_elementwise=True)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, ...) -> y: (N, ...)."""
        mask = x > 0
        self.cache = mask
        return np.maximum(x, x.dtype.type(self.config.slope) * x)

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        """dy: (N, ...) -> dx: (N, ...)."""
        mask = self.cached()
        return dy * (mask + ~mask * dy.dtype.type(self.config.slope))

    def export_onnx(self, graph, inputs, name):
        return graph.add("LeakyRelu", inputs, name, alpha=float(self.config.slope))

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # docs/layers/leaky_relu.md, "Hand-worked example": y = x if x > 0, else 0.1 x;
            # dx = dy where x > 0, else 0.1 dy (0.1 dy at the kink itself)
            Example(config={"slope": 0.1}, input_shape=(6,), id="slope_0.1", reference=Reference(
                x=[[-2.0, -0.5, 0.0, 0.5, 1.0, 3.0]],
                y=[[-0.2, -0.05, 0.0, 0.5, 1.0, 3.0]],
                dy=[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]],
                dx=[[0.1, 0.2, 0.3, 4.0, 5.0, 6.0]])),
            Example(config={}, input_shape=(2, 4, 3), id="default_image"),
        ]


@hookimpl
def lamina_register_layers():
    return [LeakyReLU]
