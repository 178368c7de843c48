"""A block certified like any layer: :func:`block_layer` runs it as the network lamina
makes of it, behind the layer contract, so that every layer check applies.

A block has no arithmetic of its own: its forward, backward and arrays are those of the
one-block network lamina builds from its ``layers()``, run by the graph runner. The
adapter is that network seen as a layer: ``compute_output_shape`` validates the block's
tables for the input (a shape that does not fit is a ShapeError with its path through
the block), ``build`` builds the network, ``params()`` are its arrays under their names
within the block (``conv2d_1.W``). Its declarations are those of its layers: a block
holding a dropout is stochastic, one holding a batchnorm batch-dependent, example by
example. The adapter exists for the checks only; a network never runs one.

:func:`check_block_expansion` holds a block to what validation relies on:
``layers(config)`` is a pure function of its settings that gives valid tables.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np

from lamina.config.blocks import BlockDef, plugin_block
from lamina.config.dag import graph_issues
from lamina.config.nodes import Expansion
from lamina.config.run import TrainingConfig
from lamina.config.schema import NetworkConfig
from lamina.errors import ConfigError, LaminaError
from lamina.graph import Architecture, Network
from lamina.layer import Example, Layer, LayerTraits, infer_output_shape
from lamina.registry import Entry, Provider, Registry

from .base import check, fail, rng


def one_block_config(block: BlockDef, settings: dict[str, Any], input_shape: Any,
                     registry: Registry, others: dict[str, BlockDef] | None = None
                     ) -> NetworkConfig:
    """The network of one use of ``block`` with ``settings`` on ``input_shape``; a table
    that does not validate is a ConfigError with its path through the block. ``others``
    are blocks its layers may name beside the registry's (a config's own)."""
    issues: list = []
    blocks = {name: plugin_block(entry) for name, entry in registry.blocks.items()}
    expansion = Expansion(registry, {**blocks, **(others or {}), block.name: block}, issues)
    nodes = expansion.layers([{"type": block.name, **settings}])
    if not issues:
        issues += graph_issues(nodes)
    if issues:
        raise ConfigError(issues, source=f"the {block.name} block")
    return NetworkConfig(tuple(input_shape), tuple(nodes), None, None,  # type: ignore[arg-type]
                         TrainingConfig(), f"<block {block.name}>",
                         expansion.ordered_uses(nodes))


def block_layer(block: type, registry: Registry | None = None) -> type[Layer]:
    """A layer class that runs ``block`` as lamina does; ``registry`` provides the types
    its layers name (default: every installed plugin)."""
    if registry is None:
        from lamina.registry import load_registry

        registry = load_registry()
    provider = Provider(block.__module__, "", f"{block.__module__}.{block.__qualname__}")
    # a config's own block keeps its definition (its layers may name the config's blocks)
    definition = getattr(block, "config_definition", None) or plugin_block(
        Entry("block", block.name, block, provider))
    others = getattr(block, "config_blocks", {})  # a config's own blocks it may use
    prefix = f"{block.name}_1."

    def inner_classes(example: Any) -> list[type] | None:
        """The classes of the layers ``example`` expands to (None if it does not)."""
        try:
            config = block.Config(**example.config).model_dump(mode="json")
            nodes = one_block_config(definition, config, example.input_shape, registry,
                                     others).nodes
        except (LaminaError, ValueError, TypeError):
            return None  # check_block_expansion reports it
        return [registry.layers[node.type].cls for node in nodes]

    def declared(classes: list[type], name: str) -> bool:
        return any(getattr(cls.traits, name, False) for cls in classes)

    def random_in_training(example: Any) -> bool:
        """Whether the block's layers draw anything with these settings: a layer
        declared stochastic may not (a dropout at rate 0), and a block's example cannot
        say so itself. Each layer's own certificate holds its declaration."""
        config = block.Config(**example.config).model_dump(mode="json")
        network = Network(one_block_config(definition, config, example.input_shape, registry,
                                           others), registry, rng(0), dtype=np.float64)
        low, high = (float(v) for v in example.input_range)
        x = rng(7).uniform(low, high, size=(3, *example.input_shape))
        return not np.array_equal(network.forward(x, training=True),
                                  network.forward(x, training=True))

    expansions = [inner_classes(ex) for ex in block.examples()]
    stochastic = [bool(classes) and declared(classes, "stochastic")
                  and random_in_training(ex) for ex, classes in zip(block.examples(),
                                                                    expansions, strict=True)]
    every = [cls for classes in expansions if classes for cls in classes]

    class BlockLayer(Layer):
        name = block.name
        Config = block.Config
        traits = LayerTraits(stochastic=any(stochastic),
                             batch_dependent=declared(every, "batch_dependent"))
        block_class = block
        block_definition = definition
        block_registry = registry
        block_others = others

        def __init__(self, config: Any = None, /, **kwargs: Any):
            super().__init__(config, **kwargs)
            self.network: Network | None = None

        def _config(self, input_shape: Any) -> NetworkConfig:
            return one_block_config(definition, self.config.model_dump(mode="json"),
                                    input_shape, registry, others)

        def compute_output_shape(self, input_shape: Any) -> tuple[int, ...]:
            return Architecture(self._config(input_shape), registry).output_shape

        def build(self, input_shape: Any, rng: np.random.Generator, *,
                  dtype: Any = np.float32) -> tuple[int, ...]:
            dtype = np.dtype(dtype)
            self.input_shape, self.output_shape = infer_output_shape(self, input_shape)
            self.network = Network(self._config(self.input_shape), registry, rng, dtype=dtype)
            self.dtype, self.rng, self.cache = dtype, rng, None
            return self.output_shape

        def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
            return self.network.forward(x, training=training)

        def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
            return self.network.backward(dy, input_grad=input_grad)

        def params(self) -> dict[str, np.ndarray]:
            return _within(self.network.params() if self.network else {}, prefix)

        def grads(self) -> dict[str, np.ndarray]:
            return _within(self.network.grads() if self.network else {}, prefix)

        def state(self) -> dict[str, np.ndarray]:
            return _within(self.network.state() if self.network else {}, prefix)

        @classmethod
        def examples(cls) -> list[Any]:
            """The block's examples, each declaring what its layers declare (the
            author's own ``extra`` kept)."""
            found = []
            for example, classes, random in zip(block.examples(), expansions, stochastic,
                                                strict=True):
                flags = {"stochastic": random,
                         "batch_dependent": declared(classes, "batch_dependent")
                         } if classes else {}
                found.append(dataclasses.replace(example, extra={**flags, **example.extra}))
            return found

    if all(classes and all(callable(getattr(c, "export_onnx", None)) for c in classes)
           for classes in expansions):
        def export_onnx(self: Any, graph: Any, inputs: list[str], name: str) -> str:
            """Each layer's export, in the block's order, read by the names within it."""
            tensors = {"input": inputs[0]}  # the one-block network's input is the block's
            for node in self.network.nodes:
                tensors[node.name] = node.layer.export_onnx(
                    graph, [tensors[ref] for ref in node.inputs],
                    f"{name}.{node.name.removeprefix(prefix)}")
            return tensors[self.network.output]

        BlockLayer.export_onnx = export_onnx  # type: ignore[attr-defined]
    BlockLayer.__module__ = block.__module__  # the threads check follows the block's package
    BlockLayer.__qualname__ = BlockLayer.__name__ = f"{block.__qualname__}AsLayer"
    return BlockLayer


def _within(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {key.removeprefix(prefix): value for key, value in arrays.items()}


def is_block_layer(plugin: Any) -> bool:
    return isinstance(plugin, type) and hasattr(plugin, "block_class")


def expands(plugin: type, example: Any) -> bool:
    """Whether ``example`` of a block (as a layer) gives tables that make a network."""
    try:
        config = plugin.Config(**example.config).model_dump(mode="json")
        one_block_config(plugin.block_definition, config, example.input_shape,
                         plugin.block_registry, plugin.block_others)
    except (LaminaError, ValueError, TypeError):
        return False
    return True


@check
def check_block_expansion(plugin: type, example: Any) -> None:
    """``layers(config)`` is a pure function of the settings that gives valid tables:
    the same tables on every call, new dicts each time, the settings unchanged, and
    tables that validate as a network for the example's input. lamina expands a block
    once per use and writes its settings back with the run; a block that answers
    differently, or shares a table a caller may change, gives one config two networks."""
    block = plugin.block_class
    config = block.Config(**example.config)
    before = copy.deepcopy(config.model_dump())
    first, second = block.layers(config), block.layers(config)
    if not isinstance(first, list | tuple) or not all(isinstance(t, dict) for t in first):
        fail("layers(config) to return a list of layer tables (dicts)", repr(first)[:200])
    if first != second:
        fail("layers(config) to return the same tables on every call", f"{first!r}, then "
             f"{second!r}"[:300], "Compute the tables from the settings alone (no counter, "
             "clock or random number)")
    shared = [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a is b]
    if shared:
        fail("layers(config) to return new tables on every call", f"the same dict object for "
             f"table {shared[0]} twice", "Build the dicts inside layers(); a table kept at "
             "module level is changed for every later use when one caller changes it")
    if config.model_dump() != before:
        fail("layers(config) to leave the settings unchanged", f"{before} became "
             f"{config.model_dump()}")
    try:
        one_block_config(plugin.block_definition, config.model_dump(mode="json"),
                         example.input_shape, plugin.block_registry, plugin.block_others)
    except ConfigError as exc:
        fail("layers(config) to give tables that validate as a network",
             "; ".join(str(issue) for issue in exc.issues)[:500])


def config_block_classes(plan: Any, registry: Registry) -> list[type]:
    """The blocks a checked config defines itself (``[blocks]``), each as a block class
    whose examples are its uses in the config: each distinct pair of settings and input
    shape met (images cut to a small size the block takes), named after the first use.
    ``plan`` is a :class:`lamina.plan.Plan` made with ``registry``."""
    from lamina.block import Block
    from lamina.config.blocks import config_blocks

    config, architecture = plan.config, plan.architecture
    issues: list = []
    defined, _ = config_blocks(config.definitions, lambda name: None,
                               {*config.definitions, *_types(config)}, issues)
    shapes = {"input": tuple(config.input_shape),
              **{node.name: node.output_shape for node in architecture.nodes}}
    classes = []
    for name, definition in defined.items():
        examples, seen = [], set()
        for use in config.blocks:
            if use.type != name:
                continue
            settings = use.settings.model_dump(mode="json")
            shape = _shrunk(definition, settings, shapes[use.inputs[0]], registry, defined)
            if (repr(settings), shape) not in seen:
                seen.add((repr(settings), shape))
                examples.append(Example(settings, shape, id=use.name))

        def layers(cls: type, settings: Any, definition: BlockDef = definition) -> list:
            return [table for table, _ in definition.expand(settings)]

        classes.append(type(f"ConfigBlock_{name}", (Block,), {
            "name": name, "Config": definition.Config, "__module__": "lamina.config.blocks",
            "__doc__": definition.definition.get("description") or f"block {name} of "
                       f"{config.source}",
            "layers": classmethod(layers),
            "examples": classmethod(lambda cls, found=tuple(examples): list(found)),
            "config_blocks": defined,
            "config_definition": definition,
            # its settings are passed on to its layers, whose own Configs bound them
            "settings_bounded_by_layers": True,
        }))
    return classes


def _shrunk(definition: BlockDef, settings: dict[str, Any], shape: tuple[int, ...],
            registry: Registry, others: dict[str, BlockDef]) -> tuple[int, ...]:
    """``shape`` with its axes after the first (an image's height and width) cut to the
    smallest size from 4 up that the block still takes. On a 28 x 28 image a relu
    holds thousands of units per channel, and nearly every weight's finite difference
    then crosses one of their kinks: the gradient check could compare nothing."""
    if len(shape) < 2:
        return shape
    for size in range(4, max(shape[1:]) + 1):
        smaller = (shape[0], *(min(d, size) for d in shape[1:]))
        try:
            Architecture(one_block_config(definition, settings, smaller, registry, others),
                         registry)
        except (LaminaError, ValueError, TypeError):
            continue
        return smaller
    return shape


def _types(config: Any) -> set[str]:
    return {node.type for node in config.nodes} | {use.type for use in config.blocks}
