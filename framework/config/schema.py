"""The shape of a network config, and the validated objects it turns into.

Stage one of validation (:mod:`lamina.config.validate`) checks the raw document
against the private section models here; what comes out is a
:class:`NetworkConfig` whose every plugin setting is an instance of that plugin's
own ``Config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    #: blocks defined in the config itself, by name (:mod:`lamina.config.blocks`)
    blocks: dict[str, Any] = Field(default_factory=dict)
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
    # no dot: a dot joins a block's name to the names inside it (res_1.conv2d_1.W)
    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", max_length=100)
    inputs: list[str] | None = Field(None, min_length=1)


@dataclass(frozen=True)
class Scope:
    """A block instance that holds a layer: where it is listed, its type and full name."""

    index: int
    type: str
    name: str


def scoped_path(scope: tuple[Scope, ...], index: int, type_: str) -> str:
    """The path of a layer table through the blocks that hold it:
    ``model.layers[4] (res) > layers[0] (conv2d)``."""
    parts = [f"layers[{s.index}] ({s.type})" for s in scope]
    return "model." + " > ".join([*parts, f"layers[{index}] ({type_})"])


class _Listed:
    """What a layer and a use of a block share as entries of a layer list: a path
    through the blocks that hold them, a name within their list, and their table."""

    index: int
    type: str
    name: str
    scope: tuple[Scope, ...]

    @property
    def path(self) -> str:
        return scoped_path(self.scope, self.index, self.type)

    @property
    def short_name(self) -> str:
        """The name within the list that holds it (``conv2d_1``)."""
        return self.name.rsplit(".", 1)[-1]

    def to_dict(self, inputs: list[str] | None) -> dict[str, Any]:
        """Its table as a config writes it (``inputs`` when given)."""
        table: dict[str, Any] = {"type": self.type, "name": self.short_name}
        if inputs is not None:
            table["inputs"] = inputs
        table.update(self.settings_model.model_dump(mode="json"))
        return table

    @property
    def settings_model(self) -> BaseModel:
        raise NotImplementedError


@dataclass(frozen=True)
class NodeConfig(_Listed):
    """One validated layer of the network. A layer of a block is named by its path
    through the blocks that hold it (``res_1.conv2d_1``), listed in ``scope``."""

    index: int
    type: str
    name: str
    inputs: tuple[str, ...]
    config: BaseModel
    scope: tuple[Scope, ...] = ()

    @property
    def output(self) -> str:
        """The name of the value this layer produces (its own name)."""
        return self.name

    @property
    def settings_model(self) -> BaseModel:
        return self.config


@dataclass(frozen=True)
class BlockUse(_Listed):
    """One use of a block: the table whose ``type`` names it, with its validated
    ``settings``; its layers are in :attr:`NetworkConfig.nodes`, expanded, and
    ``output`` names the one whose output is the block's. ``provider`` says where the
    block is defined (``config`` for the config's own ``[blocks]``)."""

    index: int
    type: str
    name: str
    inputs: tuple[str, ...]
    settings: BaseModel
    output: str
    scope: tuple[Scope, ...]
    provider: str

    @property
    def settings_model(self) -> BaseModel:
        return self.settings


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
    #: every use of a block, at any depth, in config order
    blocks: tuple[BlockUse, ...] = ()
    #: the definitions of the config's own blocks that it uses, as written back
    definitions: dict[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.nodes[-1].name

    def top_level(self) -> list[NodeConfig | BlockUse]:
        """The model's own layer list: its layers and its uses of blocks (folded)."""
        uses = {use.name: use for use in self.blocks}
        units: list[NodeConfig | BlockUse] = []
        for node in self.nodes:
            unit = uses[node.scope[0].name] if node.scope else node
            if not units or units[-1] is not unit:
                units.append(unit)
        return units

    def is_sequential(self) -> bool:
        previous = INPUT
        for unit in self.top_level():
            if unit.inputs != (previous,):
                return False
            previous = unit.output
        return True

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, every default filled in; loads back to an equal config."""
        explicit = not self.is_sequential()
        folded = {use.output: use.name for use in self.blocks if not use.scope}
        layers = [unit.to_dict([folded.get(ref, ref) for ref in unit.inputs] if explicit
                               else None) for unit in self.top_level()]
        document: dict[str, Any] = {
            "model": {"input_shape": list(self.input_shape), "layers": layers},
            "loss": self.loss.to_dict(),
            "optimizer": self.optimizer.to_dict(),
            "training": self.training.model_dump(mode="json"),
        }
        if self.definitions:
            document["blocks"] = self.definitions
        return document

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
