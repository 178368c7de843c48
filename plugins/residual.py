"""residual: the residual unit of residual_cnn, as a block.

    x ─> conv2d (filters, kernel_size, same padding, no bias) ─> batchnorm ─┐
    └───────────────────────────────────────────────────────────────────> add ─> relu

y = relu(x + batchnorm(conv(x))): the unit learns a correction to its input, and the
gradient reaches x both through the convolution and directly through the add (He et
al., 2016). The convolution has no bias because the batchnorm's mean subtraction would
cancel it. The input must have ``filters`` channels, so that the add fits; a use with
another channel count is a shape error at the add, with its path through the block.

A block adds no arithmetic of its own: its gradient is the graph runner's, through
layers that are each certified, and its arrays are its layers' (``residual_1.conv2d_1.W``,
``residual_1.batchnorm_1.gamma``, ...).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lamina import Block, Example, LayerConfig, hookimpl


class ResidualConfig(LayerConfig):
    """``filters``: the channels of the input and of the output; ``kernel_size``: the
    convolution's height and width ("same" padding keeps the input's size)."""

    filters: int = Field(ge=1, description="channels of the input and the output (>= 1)")
    kernel_size: int = Field(3, ge=1, description="the convolution's height and width")


class Residual(Block):
    """relu(x + batchnorm(conv2d(x))), the shape of x kept."""

    name = "residual"
    Config = ResidualConfig

    @classmethod
    def layers(cls, config: ResidualConfig) -> list[dict[str, Any]]:
        return [
            {"type": "conv2d", "filters": config.filters, "kernel_size": config.kernel_size,
             "padding": "same", "use_bias": False},
            {"type": "batchnorm"},
            {"type": "add", "inputs": ["input", "batchnorm_1"]},
            {"type": "relu"},
        ]

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(config={"filters": 2}, input_shape=(2, 5, 5), id="filters_2"),
            Example(config={"filters": 3, "kernel_size": 1}, input_shape=(3, 4, 3),
                    id="pointwise"),
        ]


@hookimpl
def lamina_register_blocks():
    return [Residual]
