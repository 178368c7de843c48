"""conv_swish: a block, a convolution followed by swish.

    x ─> conv2d (filters, kernel_size, padding) ─> swish (beta) ─> y

A block names existing layers (lamina's conv2d, this package's swish) and writes no
arithmetic: lamina expands it when it validates a config, and the graph runner computes
its gradient through the two layers. Its arrays are its convolution's, named through it
(``conv_swish_1.conv2d_1.W``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from lamina import Block, Example, LayerConfig, hookimpl


class ConvSwishConfig(LayerConfig):
    """The convolution's filters, kernel size and padding, and swish's beta."""

    filters: int = Field(ge=1, le=4096, description="output channels")
    kernel_size: int = Field(3, ge=1, le=15, description="kernel height and width")
    padding: Literal["valid", "same"] | Annotated[int, Field(ge=0, le=16)] = Field(
        "valid", description='"valid", "same", or zeros added on every side')
    beta: float = Field(1.0, gt=0.0, le=100.0, description="sharpness of swish's gate")


class ConvSwish(Block):
    """swish(conv2d(x)), with one weight and bias per filter."""

    name = "conv_swish"
    Config = ConvSwishConfig

    @classmethod
    def layers(cls, config: ConvSwishConfig) -> list[dict[str, Any]]:
        return [
            {"type": "conv2d", "filters": config.filters, "kernel_size": config.kernel_size,
             "padding": config.padding},
            {"type": "swish", "beta": config.beta},
        ]

    @classmethod
    def examples(cls) -> list[Example]:
        return [
            Example(config={"filters": 2}, input_shape=(1, 5, 5), id="valid"),
            Example(config={"filters": 3, "kernel_size": 1, "padding": "same", "beta": 2.0},
                    input_shape=(2, 3, 4), id="pointwise"),
        ]


@hookimpl
def lamina_register_blocks():
    return [ConvSwish]
