"""concat: join two or more inputs along one axis, the channel axis by default.

Axes are counted as in the arrays, batch axis 0 (as Keras, PyTorch and ONNX count):
the default ``axis = 1`` is the channel axis of (N, C, H, W) inputs and the feature
axis of (N, F) ones. Forward, for K >= 2 inputs x_k of shape (N, ..., a_k, ...) that
agree on every axis but ``axis``:

    y = [x_1 | x_2 | ... | x_K]               (N, ..., a_1 + ... + a_K, ...)

that is y[..., o_k + i, ...] = x_k[..., i, ...] for 0 <= i < a_k, with the offsets
o_k = a_1 + ... + a_(k-1). Backward: each entry of y is one entry of one input, so
each input's gradient is its own slice of dy:

    dx_k = dy[..., o_k : o_k + a_k, ...]      (N, ..., a_k, ...), for k = 1..K

The K gradients are returned as contiguous copies, safe to add into (the graph runner
sums the gradients of a node feeding several consumers). No parameters.
Derivation: docs/layers/concat.md.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from lamina import (
    Example,
    Layer,
    LayerConfig,
    LayerTraits,
    Reference,
    Shape,
    ShapeError,
    hookimpl,
    sample_axis,
)


class ConcatConfig(LayerConfig):
    """Settings of concat; its inputs are named by the node's ``inputs`` in the graph."""

    axis: int = Field(
        1,
        strict=True,
        ge=-64,
        le=64,
        description=(
            "the axis to join along, counted as in the (N, ...) arrays (batch axis 0, as "
            "Keras, PyTorch and ONNX count): 1 (default) is the channel axis of images and "
            "the feature axis of flat inputs, -1 the last axis; 0 is refused (the batch axis)"
        ),
    )

    @field_validator("axis")
    @classmethod
    def _not_the_batch_axis(cls, axis: int) -> int:
        if axis == 0:
            raise ValueError(
                "concat axis 0 is the batch axis, received 0; samples are never joined. Use "
                "axis = 1 (channels of (N, C, H, W), features of (N, F)) or -1 (the last axis)"
            )
        return axis


class Concat(Layer):
    """y = the inputs side by side along ``axis``; each input gets its slice of dy."""

    name = "concat"
    Config = ConcatConfig
    traits = LayerTraits(multi_input=True)

    def _joined(self, rank: int) -> int:
        """The per-sample index of the joined axis for inputs of ``rank`` per-sample axes
        (0 is the first axis after the batch axis), or ShapeError."""
        axis = self.config.axis
        if rank == 0:
            raise ShapeError(
                "concat expects inputs with at least one per-sample axis, received scalar "
                "shapes (); there is no axis to join along"
            )
        return sample_axis(axis, rank, f"concat axis {axis} is not an axis of inputs with "
                                       f"{rank} per-sample axes")

    def compute_output_shape(self, input_shape: tuple[Shape, ...]) -> Shape:
        if len(input_shape) < 2:
            raise ShapeError(
                f"concat expects two or more inputs, received {len(input_shape)}; list at "
                'least two nodes in this layer\'s inputs, e.g. inputs = ["conv2d_1", '
                '"conv2d_2"]'
            )
        first = input_shape[0]
        for k, shape in enumerate(input_shape[1:], start=1):
            if len(shape) != len(first):
                raise ShapeError(
                    f"concat expects inputs with the same number of axes: input 0 is "
                    f"{first}, input {k} is {shape}; flatten or reshape one of them"
                )
        joined = self._joined(len(first))
        for k, shape in enumerate(input_shape[1:], start=1):
            differ = [i for i in range(len(first)) if i != joined and shape[i] != first[i]]
            if differ:
                raise ShapeError(
                    f"concat along axis {self.config.axis} expects its inputs to agree on "
                    f"every other axis: input 0 is {first}, input {k} is {shape} per sample, "
                    f"which differ on axis {differ[0] + 1} ({first[differ[0]]} against "
                    f"{shape[differ[0]]}; axes counted from the batch axis, 0); make the "
                    'branches agree (the same padding and strides, e.g. padding = "same") '
                    "or join along the axis where they differ"
                )
        out = list(first)
        out[joined] = sum(shape[joined] for shape in input_shape)
        return tuple(out)

    def forward(self, x: list[np.ndarray], *, training: bool) -> np.ndarray:
        """x: K arrays (N, ..., a_k, ...) -> y: (N, ..., a_1 + ... + a_K, ...)."""
        axis = self._joined(x[0].ndim - 1) + 1
        self.cache = (axis, np.cumsum([x_k.shape[axis] for x_k in x])[:-1])
        return np.concatenate(x, axis=axis)

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> list[np.ndarray]:
        """dy: (N, ..., a_1 + ... + a_K, ...) -> K arrays (N, ..., a_k, ...), copies."""
        axis, offsets = self.cached()
        return [dx_k.copy() for dx_k in np.split(dy, offsets, axis=axis)]

    def export_onnx(self, graph, inputs, name):
        return graph.add("Concat", inputs, name, axis=self._joined(len(self.output_shape)) + 1)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # channels [x_1 | x_2]: one channel of x_1, then two of x_2; dy's channel 0
            # goes back to x_1, channels 1 and 2 to x_2
            Example(config={}, input_shape=((1, 2, 2), (2, 2, 2)), id="two_images",
                    reference=Reference(
                        x=[[[[[1.0, 2.0], [3.0, 4.0]]]],
                           [[[[5.0, 6.0], [7.0, 8.0]], [[9.0, 10.0], [11.0, 12.0]]]]],
                        y=[[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]],
                            [[9.0, 10.0], [11.0, 12.0]]]],
                        dy=[[[[-1.0, 1.0], [0.0, 2.0]], [[3.0, -3.0], [4.0, 0.5]],
                             [[-2.0, 0.0], [1.0, 1.0]]]],
                        dx=[[[[[-1.0, 1.0], [0.0, 2.0]]]],
                            [[[[3.0, -3.0], [4.0, 0.5]], [[-2.0, 0.0], [1.0, 1.0]]]]])),
            Example(config={}, input_shape=((3,), (1,), (4,)), id="three_flat"),
            Example(config={"axis": -1}, input_shape=((2, 3, 2), (2, 3, 3)), id="along_width"),
        ]


@hookimpl
def lamina_register_layers():
    return [Concat]
