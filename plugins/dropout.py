"""dropout: inverted dropout, active only while training.

Training, for x of any shape (N, ...) and drop rate r in [0, 1):

    keep ~ Bernoulli(1 - r)           (N, ...), drawn from the generator given to build()
    mask = keep / (1 - r)             (N, ...), entries 0 or 1 / (1 - r)
    y    = x * mask                   (N, ...)

Each entry of y has expectation x, because E[keep] = 1 - r. Scaling at training
time ("inverted" dropout) is what lets evaluation be the identity, y = x, with no
rescaling and no randomness.

Backward: y is linear in x with the (fixed) mask as coefficients, so

    dx = dy * mask   (training)       dx = dy   (evaluation)

The mask comes only from the generator passed to build(), so a seed reproduces it.
Derivation: docs/layers/dropout.md.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from lamina import Example, Layer, LayerConfig, LayerTraits, Reference, Shape, hookimpl


class DropoutConfig(LayerConfig):
    """Settings of dropout."""

    rate: float = Field(
        ...,
        strict=True,
        ge=0.0,
        lt=1.0,
        description=(
            "fraction of entries set to zero while training, in [0, 1); 0 makes the layer "
            "the identity; 1 is not allowed (it would drop everything)"
        ),
    )

    @field_validator("rate", mode="before")
    @classmethod
    def _rate_below_one(cls, rate):
        # Checked before the generic bound so that the message explains the fix.
        if isinstance(rate, int | float) and not isinstance(rate, bool) and rate >= 1:
            raise ValueError(
                f"dropout rate must be in [0, 1), received {rate}; a rate of 1 drops every "
                "entry and the 1 / (1 - rate) scaling divides by zero. Use a rate such as 0.5, "
                "or remove the dropout layer"
            )
        return rate


class Dropout(Layer):
    """y = x * Bernoulli(1 - rate) / (1 - rate) while training; y = x in evaluation."""

    name = "dropout"
    Config = DropoutConfig
    traits = LayerTraits(stochastic=True)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, ...) -> y: (N, ...)."""
        rate = self.config.rate
        if not training or rate == 0.0:
            self.cache = {"mask": None}
            return x
        keep = self.rng.random(x.shape) < 1.0 - rate
        mask = keep.astype(x.dtype)
        mask *= x.dtype.type(1.0 / (1.0 - rate))
        self.cache = {"mask": mask}
        return x * mask

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        """dy: (N, ...) -> dx: (N, ...)."""
        mask = self.cached()["mask"]
        if mask is None:
            return dy
        return dy * mask

    def export_onnx(self, graph, inputs, name):
        """Inference: the identity (inverted dropout scales while training)."""
        return graph.add("Identity", inputs, name)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # evaluation is the identity, whatever the rate
            Example(config={"rate": 0.5}, input_shape=(8,), id="rate_0.5_flat",
                    reference=Reference(x=[[1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0]],
                                        y=[[1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0]])),
            Example(config={"rate": 0.25}, input_shape=(2, 3, 3), id="rate_0.25_image"),
            # rate 0 keeps every unit: deterministic even in training mode
            Example(config={"rate": 0.0}, input_shape=(5,), id="rate_0_identity",
                    extra={"stochastic": False}),
        ]


@hookimpl
def lamina_register_layers():
    return [Dropout]
