"""The block contract: a named, configurable sub-network of existing layers, usable as a
layer type.

A block plugin subclasses :class:`Block` and writes

- ``name`` (the value of ``type`` that selects it in a config) and ``Config`` (a
  pydantic model of its settings that forbids unknown keys, as a layer's);
- ``layers(config) -> [table, ...]``: the layer tables it stands for, as a config's
  ``model.layers`` would list them (``type``, settings, optionally ``name`` and
  ``inputs``). ``"input"`` among ``inputs`` is the block's input; the last table is its
  output. A pure function of ``config``: it returns new dicts, reads nothing global and
  changes nothing, so that the same settings always give the same network;
- ``examples()``: settings and input shapes for the conformance suite, as a layer's.

lamina expands a block while it validates a config (:mod:`lamina.config.nodes`): the
graph runner, the sharded step and ONNX export see only its layers, each with its own
declarations, and the gradient of the whole comes from the runner, as for any part of
a network. A block's layers are named through it: ``res_1.conv2d_1``, whose arrays are
``res_1.conv2d_1.W``. Blocks can also be defined in a config file itself (``[blocks]``,
:mod:`lamina.config.blocks`); both kinds are used the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel

from .layer import Example, LayerConfig


class Block(ABC):
    """The base class of every block plugin; see the module docstring for the contract."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = LayerConfig

    @classmethod
    @abstractmethod
    def layers(cls, config: Any) -> list[dict[str, Any]]:
        """The layer tables this block stands for with ``config`` (its validated
        settings); ``"input"`` is the block's input, the last table its output."""
        raise NotImplementedError(f"{cls.__name__} must implement layers(config)")

    @classmethod
    @abstractmethod
    def examples(cls) -> list[Example]:
        raise NotImplementedError(f"{cls.__name__} must list examples() for the conformance suite")
