"""reshape: give each sample another shape holding the same entries.

Forward, for x of shape (N, d1, ..., dk) and target_shape (t1, ..., tm) with
t1 * ... * tm = d1 * ... * dk (one ti may be -1: it is inferred so that they match):

    y = reshape(x, (N, t1, ..., tm))          row-major (C) order, as NumPy

Backward: every entry of y is exactly one entry of x, so the Jacobian is the identity
under a relabelling of the entries and the gradient is reshaped back:

    dx = reshape(dy, (N, d1, ..., dk))

The batch axis is never touched. No parameters. Both directions are views when the
array is contiguous. flatten is reshape with target_shape = [-1].
Derivation: docs/layers/reshape.md.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import Field, field_validator

from lamina import Example, Layer, LayerConfig, Reference, Shape, ShapeError, hookimpl

#: an entry of target_shape: a size, or -1 for the one inferred
Dim = Annotated[int, Field(strict=True, ge=-1)]


class ReshapeConfig(LayerConfig):
    """Settings of reshape."""

    target_shape: tuple[Dim, ...] = Field(
        ...,
        min_length=1,
        max_length=64,
        description=(
            "the shape of each sample, without the batch axis, e.g. [1, 28, 28]: sizes of "
            "at least 1, and at most one -1, inferred from the input's size"
        ),
    )

    @field_validator("target_shape")
    @classmethod
    def _sizes_and_one_inferred(cls, target: tuple[int, ...]) -> tuple[int, ...]:
        if 0 in target:
            raise ValueError(
                f"reshape target_shape sizes must be at least 1 (or -1, inferred), received "
                f"{list(target)} with a 0 at position {target.index(0)}; give the size, or -1 "
                "for the one lamina should infer"
            )
        if target.count(-1) > 1:
            raise ValueError(
                f"reshape target_shape may infer one size (-1), received {list(target)} with "
                f"{target.count(-1)}; give every size but one"
            )
        return target


class Reshape(Layer):
    """(N, d1, ..., dk) -> (N, *target_shape), as a view where possible."""

    name = "reshape"
    Config = ReshapeConfig

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        target = self.config.target_shape
        size = math.prod(input_shape)
        known = math.prod(t for t in target if t != -1)
        if -1 in target:
            if size % known:
                raise ShapeError(
                    f"reshape target_shape {list(target)} infers its -1 from the input "
                    f"{input_shape} of {size} entries per sample, which {known} (the product "
                    f"of the other sizes) does not divide; give sizes whose product divides "
                    f"{size}"
                )
            return tuple(size // known if t == -1 else t for t in target)
        if known != size:
            raise ShapeError(
                f"reshape target_shape {list(target)} holds {known} entries per sample, but "
                f"its input {input_shape} holds {size}; the sizes must match. Give a "
                f"target_shape whose product is {size}, or -1 for one size to infer it"
            )
        return tuple(target)

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, d1, ..., dk) -> y: (N, t1, ..., tm)."""
        self.cache = x.shape
        return x.reshape(x.shape[0], *self.output_shape)

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        """dy: (N, t1, ..., tm) -> dx: (N, d1, ..., dk)."""
        x_shape = self.cached()
        return dy.reshape(x_shape)

    def export_onnx(self, graph, inputs, name):
        """ONNX Reshape to (0, *output_shape): 0 copies the batch size from the input."""
        shape = graph.constant(np.array([0, *self.output_shape], dtype=np.int64),
                               f"{name}.shape")
        return graph.add("Reshape", [*inputs, shape], name)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # entry j of a flat sample of 12 lands at (c, h, w) with j = c * 6 + h * 3 + w:
            # x = [0, ..., 11] gives y[c, h, w] = 6c + 3h + w; dy goes back the same way
            Example(config={"target_shape": [2, 2, 3]}, input_shape=(12,), id="flat_to_image",
                    reference=Reference(
                        x=[list(range(12))],
                        y=[[[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]],
                        dy=[[[[0, -1, -2], [-3, -4, -5]], [[-6, -7, -8], [-9, -10, -11]]]],
                        dx=[[-j for j in range(12)]])),
            Example(config={"target_shape": [-1, 4]}, input_shape=(3, 2, 4), id="infer_rows"),
            Example(config={"target_shape": [-1]}, input_shape=(2, 3, 3), id="flatten_like"),
            Example(config={"target_shape": [3, 1, 2]}, input_shape=(2, 3), id="add_axis"),
        ]


@hookimpl
def lamina_register_layers():
    return [Reshape]
