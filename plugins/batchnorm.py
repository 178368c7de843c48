"""batchnorm: batch normalisation, per feature (N, F) or per channel (N, C, H, W).

Each channel c is normalised over the m entries that share it: the batch axis for
flat input (m = N), the batch and both spatial axes for images (m = N * H * W).

Forward in training, with gamma, beta, mu, var of shape (C,) broadcast over the
other axes:

    mu    = mean(x)                        over the m entries of each channel
    var   = mean((x - mu)^2)               biased (divides by m)
    x_hat = (x - mu) / sqrt(var + eps)     same shape as x
    y     = gamma * x_hat + beta           same shape as x

and the running estimates move towards the batch statistics (Keras's convention):

    running_mean = momentum * running_mean + (1 - momentum) * mu
    running_var  = momentum * running_var  + (1 - momentum) * var

In evaluation mu and var are replaced by running_mean and running_var.

Backward in training, with sums over the m entries of each channel (derivation in
docs/layers/batchnorm.md, since mu and var depend on every x of the channel):

    dbeta  = sum(dy)                                           (C,)
    dgamma = sum(dy * x_hat)                                   (C,)
    dx     = gamma / (m * sqrt(var + eps))
             * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))   same shape as x

In evaluation the statistics are constants: dx = dy * gamma / sqrt(running_var + eps).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lamina import (
    Example,
    Layer,
    LayerConfig,
    LayerTraits,
    ParamSpec,
    Reference,
    Shape,
    ShapeError,
    hookimpl,
)


class BatchNormConfig(LayerConfig):
    """Settings of batchnorm."""

    momentum: float = Field(
        0.99,
        strict=True,
        ge=0.0,
        le=1.0,
        description=(
            "weight of the old running statistics in each training step, as in Keras: "
            "running = momentum * running + (1 - momentum) * batch. Close to 1 means a slow "
            "average over many batches (PyTorch's momentum=0.1 is 0.9 here)"
        ),
    )
    epsilon: float = Field(
        1e-3,
        strict=True,
        gt=0.0,
        description="added to the variance before the square root (Keras: 1e-3)",
    )


class BatchNorm(Layer):
    """Normalise each channel by batch statistics, then scale by gamma and shift by beta."""

    name = "batchnorm"
    Config = BatchNormConfig
    traits = LayerTraits(batch_dependent=True)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) not in (1, 3):
            raise ShapeError(
                "batchnorm expects a per-sample input of (features,) or "
                f"(channels, height, width), received {input_shape}; add a flatten layer "
                "before it or reshape the data to one of those layouts"
            )
        return input_shape

    def param_specs(self, input_shape: Shape) -> dict[str, ParamSpec]:
        c = (input_shape[0],)
        return {
            "gamma": ParamSpec(c, init="ones"),
            "beta": ParamSpec(c, init="zeros"),
            "running_mean": ParamSpec(c, init="zeros", trainable=False),
            "running_var": ParamSpec(c, init="ones", trainable=False),
        }

    def _statistics_layout(self, x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The axes a channel's statistics run over (all but the channel axis) and the
        shape that broadcasts a (C,) array against x."""
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        return axes, (1, x.shape[1]) + (1,) * (x.ndim - 2)

    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        """x: (N, F) or (N, C, H, W) -> y: same shape."""
        axes, stat_shape = self._statistics_layout(x)
        gamma, beta = self._params["gamma"], self._params["beta"]
        if training:
            mu = x.mean(axis=axes)
            var = x.var(axis=axes)
            self._update_running(mu, var)
        else:
            mu, var = self._state["running_mean"], self._state["running_var"]
        inv_std = 1.0 / np.sqrt(var + x.dtype.type(self.config.epsilon))
        x_hat = (x - mu.reshape(stat_shape)) * inv_std.reshape(stat_shape)
        self.cache = (x_hat, inv_std, training)
        return x_hat * gamma.reshape(stat_shape) + beta.reshape(stat_shape)

    def _update_running(self, mu: np.ndarray, var: np.ndarray) -> None:
        # In place: loaders and checkpoints hold references to these arrays.
        momentum = self.config.momentum
        running_mean, running_var = self._state["running_mean"], self._state["running_var"]
        running_mean *= momentum
        running_mean += (1.0 - momentum) * mu
        running_var *= momentum
        running_var += (1.0 - momentum) * var

    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """dy: like x -> dx: like x; fills dgamma (C,) and dbeta (C,)."""
        x_hat, inv_std, training = self.cached()
        axes, stat_shape = self._statistics_layout(dy)
        sum_dy = dy.sum(axis=axes)
        sum_dy_x_hat = (dy * x_hat).sum(axis=axes)
        self._grads["beta"][...] = sum_dy
        self._grads["gamma"][...] = sum_dy_x_hat
        if not input_grad:
            return None
        scale = (self._params["gamma"] * inv_std).reshape(stat_shape)
        if not training:
            return dy * scale
        m = dy.size // dy.shape[1]
        mean_dy = (sum_dy / m).reshape(stat_shape)
        mean_dy_x_hat = (sum_dy_x_hat / m).reshape(stat_shape)
        return scale * (dy - mean_dy - x_hat * mean_dy_x_hat)

    def export_onnx(self, graph, inputs, name):
        """ONNX BatchNormalization in inference mode: the running statistics."""
        constants = [graph.constant(array, f"{name}.{key}") for key, array in (
            ("gamma", self._params["gamma"]), ("beta", self._params["beta"]),
            ("running_mean", self._state["running_mean"]),
            ("running_var", self._state["running_var"]))]
        return graph.add("BatchNormalization", [*inputs, *constants], name,
                         epsilon=float(self.config.epsilon))

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            # docs/layers/batchnorm.md, "Hand-worked example" (epsilon 1e-3, momentum 0.99)
            Example(config={}, input_shape=(5,), id="features", reference=Reference(
                x=[[1.0, 3.0, 2.0, 0.0, 4.0], [3.0, 5.0, 2.0, 4.0, 8.0]],
                params={"gamma": [1, 2, 1, 1, -1], "beta": [0, 0, 1, 0, 0.5]},
                state={"running_mean": [0, 1, 2, 3, 4],
                       "running_var": [0.999, 3.999, 0.249, 0.999, 0.999]},
                y=[[1.0, 2.0, 1.0, -3.0, 0.5], [3.0, 4.0, 1.0, 1.0, -3.5]],
                y_training=[[-0.999500374688, -1.999000749376, 1.0, -0.999875023433,
                             1.499875023433],
                            [0.999500374688, 1.999000749376, 1.0, 0.999875023433,
                             -0.499875023433]],
                state_after={"running_mean": [0.02, 1.03, 2.0, 2.99, 4.02],
                             "running_var": [0.99901, 3.96901, 0.24651, 1.02901, 1.02901]},
                dy=[[1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]],
                dx=[[4.992509364075e-04, 9.985018728149e-04, 1.581138830084e+01,
                     6.247656982213e-05, -6.247656982213e-05],
                    [-4.992509364075e-04, -9.985018728149e-04, -1.581138830084e+01,
                     -6.247656982213e-05, 6.247656982213e-05]],
                grads={"gamma": [-0.999500374688, -0.999500374688, 0.0, -0.999875023433,
                                 -0.999875023433], "beta": [1.0, 1.0, 1.0, 1.0, 1.0]},
                tolerance=1e-9)),
            Example(config={}, input_shape=(3, 4, 4), id="channels"),
            Example(config={"momentum": 0.9, "epsilon": 1e-5}, input_shape=(2, 3, 3), id="torch"),
        ]


@hookimpl
def lamina_register_layers():
    return [BatchNorm]
