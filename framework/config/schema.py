"""The shape of a network config, and the validated objects it turns into.

Stage one of validation (:mod:`lamina.config.validate`) checks the raw document
against the private section models here; what comes out is a
:class:`NetworkConfig` whose every plugin setting is an instance of that plugin's
own ``Config``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError
from .run import TrainingConfig
from .strict import validate_settings

#: the name of the network input among the layers' ``inputs``
INPUT = "input"
#: the most axes a per-sample input may have (images have 3)
MAX_INPUT_AXES = 8


class Sections(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: dict[str, Any]
    loss: dict[str, Any] = Field(default_factory=lambda: {"type": "softmax_cross_entropy"})
    optimizer: dict[str, Any] = Field(default_factory=lambda: {"type": "adam"})
    training: dict[str, Any] = Field(default_factory=dict)


class ModelSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_shape: list[int] = Field(min_length=1, max_length=MAX_INPUT_AXES)
    layers: list[dict[str, Any]] = Field(min_length=1)


class NodeKeys(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = Field(max_length=100)
    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=100)
    inputs: list[str] | None = Field(None, min_length=1)


@dataclass(frozen=True)
class NodeConfig:
    """One validated layer of the network."""

    index: int
    type: str
    name: str
    inputs: tuple[str, ...]
    config: BaseModel

    @property
    def path(self) -> str:
        return f"model.layers[{self.index}] ({self.type})"

    @property
    def output(self) -> str:
        """The name of the value this layer produces (its own name)."""
        return self.name

    def to_dict(self, explicit_inputs: bool) -> dict[str, Any]:
        table: dict[str, Any] = {"type": self.type, "name": self.name}
        if explicit_inputs:
            table["inputs"] = list(self.inputs)
        table.update(self.config.model_dump(mode="json"))
        return table


@dataclass(frozen=True)
class PluginConfig:
    """The validated loss or optimizer section."""

    type: str
    config: BaseModel

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.config.model_dump(mode="json")}


@dataclass(frozen=True)
class NetworkConfig:
    """A fully validated config: every plugin config is an instance of its model."""

    input_shape: tuple[int, ...]
    nodes: tuple[NodeConfig, ...]
    loss: PluginConfig
    optimizer: PluginConfig
    training: TrainingConfig
    source: str = "<dict>"

    @property
    def output(self) -> str:
        return self.nodes[-1].name

    def is_sequential(self) -> bool:
        previous = INPUT
        for node in self.nodes:
            if node.inputs != (previous,):
                return False
            previous = node.name
        return True

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, every default filled in; loads back to an equal config."""
        explicit = not self.is_sequential()
        return {
            "model": {
                "input_shape": list(self.input_shape),
                "layers": [node.to_dict(explicit) for node in self.nodes],
            },
            "loss": self.loss.to_dict(),
            "optimizer": self.optimizer.to_dict(),
            "training": self.training.model_dump(mode="json"),
        }

    def with_training(self, **overrides: Any) -> NetworkConfig:
        """A copy with some training settings replaced (validated like the file's)."""
        merged = {**self.training.model_dump(mode="json"), **overrides}
        training, issues = validate_settings(TrainingConfig, merged, "training")
        if training is None:
            raise ConfigError(issues, source=self.source)
        return replace(self, training=training)

    def with_optimizer(self, **overrides: Any) -> NetworkConfig:
        """A copy with some optimizer settings replaced (``lr``), validated by the
        optimizer's own model."""
        merged = {**self.optimizer.config.model_dump(mode="json"), **overrides}
        config, issues = validate_settings(type(self.optimizer.config), merged,
                                           f"optimizer ({self.optimizer.type})")
        if config is None:
            raise ConfigError(issues, source=self.source)
        return replace(self, optimizer=PluginConfig(self.optimizer.type, config))
