"""channel_scale: a learned scale and shift per channel, for x of shape (N, C) or (N, C, H, W).

Forward, with gamma and beta of shape (C,) broadcast along the channel axis 1:

    y = gamma * x + beta                                  like x

Backward: y depends on gamma and beta through every entry of its channel, so their
gradients sum over every axis but the channel's (the batch, and H and W):

    dgamma = sum over n (, h, w) of dy * x                (C,)
    dbeta  = sum over n (, h, w) of dy                    (C,)
    dx     = gamma * dy                                   like x
"""

from __future__ import annotations

import numpy as np

from lamina import Example, Layer, LayerConfig, ParamSpec, Reference, Shape, ShapeError, hookimpl


class ChannelScaleConfig(LayerConfig):
    """Settings of channel_scale: none."""


class ChannelScale(Layer):
    """y = gamma * x + beta per channel; gamma starts at ones, beta at zeros."""

    name = "channel_scale"
    Config = ChannelScaleConfig

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) not in (1, 3):
            raise ShapeError(f"channel_scale expects (C,) or (C, H, W) per sample, received "
                             f"{input_shape}; flatten or reshape the input first")
        return input_shape

    def param_specs(self, input_shape: Shape) -> dict[str, ParamSpec]:
        channels = input_shape[0]
        return {"gamma": ParamSpec((channels,), init="ones"),
                "beta": ParamSpec((channels,), init="zeros")}

    @staticmethod
    def _per_channel(ndim: int) -> tuple[int, ...]:
        """How a (C,) vector broadcasts over x of ``ndim`` axes: (1, C) or (1, C, 1, 1)."""
        return (1, -1) if ndim == 2 else (1, -1, 1, 1)

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, C) or (N, C, H, W) -> y: like x."""
        shape = self._per_channel(x.ndim)
        self.cache = x
        return x * self._params["gamma"].reshape(shape) + self._params["beta"].reshape(shape)

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """dy: like x -> dx: like x; dgamma, dbeta: (C,)."""
        x = self.cached()
        summed = (0,) if x.ndim == 2 else (0, 2, 3)  # every axis but the channel's
        np.sum(dy * x, axis=summed, out=self._grads["gamma"])
        np.sum(dy, axis=summed, out=self._grads["beta"])
        if not input_grad:
            return None
        return dy * self._params["gamma"].reshape(self._per_channel(x.ndim))

    def export_onnx(self, graph, inputs, name):
        """For lamina export: y = x * gamma + beta, the constants shaped for broadcasting."""
        [x] = inputs
        shape = (-1,) if len(self.input_shape) == 1 else (-1, 1, 1)
        gamma = graph.constant(self._params["gamma"].astype(np.float32).reshape(shape),
                               f"{name}.gamma")
        beta = graph.constant(self._params["beta"].astype(np.float32).reshape(shape),
                              f"{name}.beta")
        return graph.add("Add", [graph.add("Mul", [x, gamma], f"{name}.scaled"), beta], name)

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # Worked by hand: gamma [2, -1, 0.5], beta [1, 0, -1] on x [1, 2, 4] give
            # y = [2 + 1, -2 + 0, 2 - 1] = [3, -2, 1]; dy [1, 1, 2] gives dx = gamma * dy =
            # [2, -1, 1], dgamma = dy * x = [1, 2, 8], dbeta = dy = [1, 1, 2].
            Example(config={}, input_shape=(3,), id="features", reference=Reference(
                x=[[1.0, 2.0, 4.0]], y=[[3.0, -2.0, 1.0]],
                params={"gamma": [2.0, -1.0, 0.5], "beta": [1.0, 0.0, -1.0]},
                dy=[[1.0, 1.0, 2.0]], dx=[[2.0, -1.0, 1.0]],
                grads={"gamma": [1.0, 2.0, 8.0], "beta": [1.0, 1.0, 2.0]})),
            Example(config={}, input_shape=(2, 3, 3), id="image"),
        ]


@hookimpl
def lamina_register_layers():
    return [ChannelScale]
