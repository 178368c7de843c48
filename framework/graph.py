"""The graph runner: a network assembled from a validated config.

Nodes run in topological order on the forward pass and in reverse on the
backward pass. A node whose output feeds several layers (a fan-out) receives the
sum of their gradients. Shapes are inferred from the config alone, before any
array is allocated (:class:`Architecture`, which ``lamina validate`` and
``lamina summary`` use), so a layer that does not fit its input fails at once,
naming the layer in the config and the fix.

Parameters, gradients and non-trainable state are exposed under stable dotted
names, ``<layer name>.<key>`` (``conv2d_1.W``), in the order of the config.

The layers run in *steps* (:mod:`lamina.steps`): usually one layer each; a
``monotone_elementwise`` layer read only by a ``max_selecting`` one runs after it, on the
pooled array, and a ``fuses_max_pool`` layer read only by such a pool ends in it, one
*fused chain*. Neither changes a result beyond float rounding; ``LAMINA_FUSION=0`` or
``Network(..., fuse=False)`` turns chains off. And:

- Unless ``backward(..., input_grad=True)`` asks for it, the layers that read the
  network input are called with ``backward(dy, input_grad=False)``: for a first
  conv2d that gradient is a full col2im of the input, thrown away.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import INPUT, NetworkConfig, NodeConfig, readers_of, topological_order
from .errors import PASSED_THROUGH, PluginError, ShapeError, StateError
from .layer import ParamSpec, Shape, infer_output_shape
from .registry import Provider, Registry
from .steps import fusion_enabled, plan_steps

#: the dtype a network computes in unless it is built with another (lamina trains in float32)
DTYPE = np.dtype(np.float32)


@dataclass
class Node:
    """One layer of the network with its place in the graph and its shapes."""

    config: NodeConfig
    layer: Any
    provider: Provider
    input_shape: Any = None
    output_shape: Shape | None = None
    specs: dict[str, ParamSpec] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.config.inputs

    @property
    def output(self) -> str:
        """The name of the value this node produces (its own name)."""
        return self.config.name

    def plugin_failed(self, what: str, exc: BaseException) -> PluginError:
        """The error for an unexpected exception raised by this node's plugin code."""
        return PluginError(
            f"{self.config.path} {self.name!r}: the {self.config.type} plugin "
            f"({self.provider.module}, from {self.provider}) raised "
            f"{type(exc).__name__} in {what}: {exc}. This is a bug in the plugin; report it "
            "to its author, or use another layer"
        )


    def plugin_returned(self, what: str, value: Any, expected: tuple[int, ...] | str
                        ) -> PluginError:
        """The error for a plugin method that returned something other than the array
        the runner needs (the next layer would otherwise be blamed for it)."""
        got = (f"an array of shape {value.shape} and dtype {value.dtype}"
               if isinstance(value, np.ndarray) else
               "None" if value is None else f"a {type(value).__name__}")
        needed = expected if isinstance(expected, str) else f"an array of shape {expected}"
        return PluginError(
            f"{self.config.path} {self.name!r}: the {self.config.type} plugin "
            f"({self.provider.module}, from {self.provider}) returned {got} from {what}; "
            f"the runner needs {needed}. This is a bug in the plugin; report it to its "
            "author, or use another layer"
        )


class Architecture:
    """The layers of a config with their shapes and parameter shapes, inferred from the
    config alone: layers are constructed from their settings but nothing is allocated,
    so a config asking for billions of parameters is described, not built.

    ``classes`` (one (class, provider) per node) replaces the registry lookup; a
    replica of a network reuses its classes this way."""

    def __init__(self, config: NetworkConfig, registry: Registry | None = None, *,
                 classes: list[tuple[type, Provider]] | None = None):
        if classes is None:
            if registry is None:
                raise TypeError("Architecture needs a registry or the layer classes")
            entries = [registry.entry("layer", node.type) for node in config.nodes]
            classes = [(e.cls, e.provider) for e in entries]
        self.config = config
        self.input_shape = tuple(config.input_shape)
        self.nodes: list[Node] = []
        for node_config, (cls, provider) in zip(config.nodes, classes, strict=True):
            node = Node(node_config, cls, provider)
            try:
                node.layer = cls(node_config.config)
            except PASSED_THROUGH:
                raise
            except BaseException as exc:
                raise node.plugin_failed("its constructor", exc) from exc
            self.nodes.append(node)
        by_name = {node.name: node for node in self.nodes}
        self.order = [by_name[n.name] for n in topological_order(config.nodes)]
        self.output = config.output
        self._infer()

    def _infer(self) -> None:
        shapes: dict[str, Any] = {INPUT: self.input_shape}
        for node in self.order:
            in_shapes = [shapes[ref] for ref in node.inputs]
            multi = node.layer.traits.multi_input
            try:
                node.input_shape, node.output_shape = infer_output_shape(
                    node.layer, tuple(in_shapes) if multi else in_shapes[0])
                specs = node.layer.param_specs(node.input_shape)
            except ShapeError as exc:
                came_from = ", ".join(f"{ref} {shapes[ref]}" for ref in node.inputs)
                raise ShapeError(
                    f"{node.config.path} {node.name!r} cannot take its input "
                    f"(from {came_from}): {exc}"
                ) from exc
            except PASSED_THROUGH:
                raise
            except BaseException as exc:
                raise node.plugin_failed("its shape inference", exc) from exc
            if not isinstance(specs, dict) or not all(
                    isinstance(k, str) and isinstance(v, ParamSpec) for k, v in specs.items()):
                raise node.plugin_returned("param_specs()", specs,
                                           "a dict of lamina.ParamSpec by key")
            node.specs = dict(specs)
            shapes[node.name] = node.output_shape

    @property
    def output_shape(self) -> Shape:
        return next(node for node in self.nodes if node.name == self.output).output_shape

    def count(self, *, trainable: bool) -> int:
        """Number of trainable (or non-trainable) values over every layer."""
        return sum(spec.size for node in self.nodes for spec in node.specs.values()
                   if spec.trainable == trainable)

    def summary(self, *, expand: bool = False) -> str:
        """A table of layers, types, output shapes, parameter counts and providers. A
        block is one row (its parameters summed); ``expand`` lists its layers under it
        (:mod:`lamina.summary`)."""
        from .summary import summary_table

        return summary_table(self, expand=expand)


class Network:
    """Layers wired as the config says, built for per-sample ``input_shape``.

    ``rng`` initialises every parameter and is kept by stochastic layers (dropout)
    for their masks: one generator makes a run reproducible from its seed.
    """

    def __init__(
        self,
        config: NetworkConfig,
        registry: Registry,
        rng: np.random.Generator,
        *,
        dtype: Any = DTYPE,
        fuse: bool | None = None,
    ):
        self.fuse = fusion_enabled() if fuse is None else bool(fuse)
        self._assemble(Architecture(config, registry), rng, np.dtype(dtype))

    def replica(self, rng: np.random.Generator) -> Network:
        """A new network of the same config and layer classes, built with ``rng``.

        Its parameters, gradients and caches are its own (copy values in with
        :meth:`load_state_dict`); its stochastic layers draw from ``rng``. The sharded
        training step (:mod:`lamina.runtime.parallel`) runs one replica per shard."""
        twin = object.__new__(Network)
        twin.fuse = self.fuse
        classes = [(type(node.layer), node.provider) for node in self.nodes]
        twin._assemble(Architecture(self.config, classes=classes), rng, self.dtype)
        return twin

    # -- construction -----------------------------------------------------------------
    def _assemble(self, architecture: Architecture, rng: np.random.Generator,
                  dtype: np.dtype) -> None:
        self.architecture = architecture
        self.config = architecture.config
        self.dtype = dtype
        self.input_shape = architecture.input_shape
        self.nodes = architecture.nodes
        self.order = architecture.order
        self.output = architecture.output
        for node in self.order:
            try:
                node.layer.build(node.input_shape, rng, dtype=dtype)
            except PASSED_THROUGH:
                raise
            except BaseException as exc:
                raise node.plugin_failed("build()", exc) from exc
        self.steps = plan_steps(self.order, self.output, fuse=self.fuse)
        self._readers = readers_of(self.steps)  # how many steps read each value
        # the per-sample shape of every value the steps pass on, to check what layers return
        by_name = {node.name: node for node in self.nodes}
        self._shapes = {INPUT: self.input_shape,
                        **{step.output: by_name[step.output].output_shape
                           for step in self.steps}}

    def fused_chains(self) -> list[tuple[str, ...]]:
        """The layers each fused chain runs, in config order (the pool last): ``[("conv2d_1",
        "relu_1", "maxpool2d_1"), ...]``; empty when nothing is fused."""
        return [(step.nodes[0].name, *(n.name for n in step.nodes[1:]), step.pool.name)
                for step in self.steps if step.pool is not None]

    @property
    def output_shape(self) -> Shape:
        return self.architecture.output_shape

    # -- running ----------------------------------------------------------------------
    def forward(self, x: np.ndarray, *, training: bool,
                timings: dict[str, float] | None = None) -> np.ndarray:
        """``x`` (N, *input_shape) -> output (N, *output_shape).

        ``training`` has no default: ``True`` before a ``backward`` (dropout drops,
        batchnorm uses the batch's statistics), ``False`` to predict. A loop that forgot
        it would train with dropout silently off, so forgetting it is a TypeError.
        With ``timings``, each layer's forward seconds are stored under its name
        (``lamina bench`` uses this)."""
        if training is not True and training is not False:
            raise TypeError(f"training must be True or False, received {training!r}")
        values: dict[str, Any] = {INPUT: x}
        remaining = dict(self._readers)
        for step in self.steps:
            args = [values[ref] for ref in step.inputs]
            for ref in step.inputs:  # let go of activations no later layer reads
                remaining[ref] -= 1
                if remaining[ref] == 0 and ref != self.output:
                    del values[ref]
            value = args if step.nodes[0].layer.traits.multi_input else args[0]
            expected = (len(x), *self._shapes[step.output])
            for node in step.nodes:
                started = time.perf_counter()
                pooled = step.pool is not None and node is step.nodes[0]
                try:
                    if pooled:
                        value = node.layer.forward_max_pool(value, step.window,
                                                            training=training)
                    else:
                        value = node.layer.forward(value, training=training)
                except PASSED_THROUGH:
                    raise
                except BaseException as exc:
                    raise node.plugin_failed("forward_max_pool()" if pooled else "forward()",
                                             exc) from exc
                if not isinstance(value, np.ndarray) or value.shape != expected \
                        or value.dtype.kind != "f":
                    raise node.plugin_returned(
                        "forward_max_pool()" if pooled else "forward()", value,
                        f"a floating-point array of shape {expected}")
                if timings is not None:
                    timings[node.name] = time.perf_counter() - started
            if timings is not None and step.pool is not None:
                timings[step.pool.name] = 0.0  # inside the chain's first layer
            values[step.output] = value
        return values[self.output]

    def backward(self, dy: np.ndarray, *, input_grad: bool = False,
                 timings: dict[str, float] | None = None) -> np.ndarray | None:
        """Gradient of the output -> gradient of the input (only with ``input_grad``,
        else ``None``); fills every layer's grads."""
        pending: dict[str, np.ndarray] = {self.output: dy}
        for step in reversed(self.steps):
            first = step.nodes[0]
            # Only the first layer of a step reads the step's inputs; inside a swapped
            # pair the pool's gradient is always needed by the elementwise layer.
            wanted = input_grad or not all(ref == INPUT for ref in step.inputs)
            grad = pending.pop(step.output)
            for node in reversed(step.nodes):
                started = time.perf_counter()
                pooled = step.pool is not None and node is first
                backward = first.layer.backward_max_pool if pooled else node.layer.backward
                try:
                    grad = backward(grad, input_grad=wanted if node is first else True)
                except PASSED_THROUGH:
                    raise
                except BaseException as exc:
                    raise node.plugin_failed("backward_max_pool()" if pooled else "backward()",
                                             exc) from exc
                if timings is not None:
                    timings[node.name] = time.perf_counter() - started
            if timings is not None and step.pool is not None:
                timings[step.pool.name] = 0.0
            if not wanted:
                continue
            d_ins = grad if first.layer.traits.multi_input else [grad]
            method = "backward_max_pool()" if step.pool is not None else "backward()"
            if not isinstance(d_ins, list | tuple) or len(d_ins) != len(step.inputs):
                raise first.plugin_returned(method, d_ins, f"a list of {len(step.inputs)} "
                                            "arrays, the gradient of each of its inputs")
            for ref, d_in in zip(step.inputs, d_ins, strict=True):
                expected = (len(dy), *self._shapes[ref])
                if not isinstance(d_in, np.ndarray) or d_in.shape != expected:
                    raise first.plugin_returned(
                        method, d_in, f"an array of shape {expected}, the gradient of "
                        "an input the runner needs (None only when called with "
                        "input_grad=False)")
                # A fan-out sums its consumers' gradients. ``+`` makes a new array, so a
                # buffer a layer reuses across calls is never written through.
                pending[ref] = pending[ref] + d_in if ref in pending else d_in
        return pending.get(INPUT) if input_grad else None

    # -- parameters and state ---------------------------------------------------------
    def params(self) -> dict[str, np.ndarray]:
        return self._arrays("params")

    def grads(self) -> dict[str, np.ndarray]:
        return self._arrays("grads")

    def state(self) -> dict[str, np.ndarray]:
        """Non-trainable arrays (running statistics), saved with the params."""
        return self._arrays("state")

    def _arrays(self, which: str) -> dict[str, np.ndarray]:
        """Every layer's ``params()``, ``grads()`` or ``state()`` under dotted names; a
        layer whose method fails is named (not the optimizer or loss that asked)."""
        arrays, node = {}, None
        try:  # one guard around the loop: this runs at every training step
            for node in self.nodes:
                for key, value in getattr(node.layer, which)().items():
                    arrays[f"{node.name}.{key}"] = value
        except PASSED_THROUGH:
            raise
        except BaseException as exc:
            raise node.plugin_failed(f"{which}()", exc) from exc
        return arrays

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and non-trainable array, by dotted name."""
        return {k: v.copy() for k, v in {**self.params(), **self.state()}.items()}

    def check_state_dict(self, state: dict[str, np.ndarray], what: str = "the state", *,
                         hint: str = ". Was it saved from a different config?") -> None:
        """Raise StateError listing every missing, unexpected or misshapen entry of
        ``state``, or a value that is not finite in the network's dtype; change nothing.
        ``what`` names ``state`` in the message, ``hint`` ends it."""
        targets = {**self.params(), **self.state()}
        problems = [f"missing {k!r} {v.shape}" for k, v in targets.items() if k not in state]
        problems += [f"unexpected {k!r}" for k in state if k not in targets]
        for key, target in targets.items():
            if key in state:
                value = np.asarray(state[key])
                if value.shape != target.shape:
                    problems.append(f"{key!r} has shape {value.shape}, expected {target.shape}")
                elif not np.can_cast(value.dtype, target.dtype, casting="same_kind"):
                    problems.append(f"{key!r} has dtype {value.dtype}, expected {target.dtype}")
                elif not np.all(np.isfinite(value)):
                    problems.append(f"{key!r} holds NaN or infinite values")
                elif value.dtype.kind == "f" and target.dtype.kind == "f" \
                        and value.dtype.itemsize > target.dtype.itemsize and value.size \
                        and np.max(np.abs(value)) > np.finfo(target.dtype).max:
                    problems.append(f"{key!r} holds values beyond {target.dtype}'s range "
                                    f"(±{np.finfo(target.dtype).max:.3g}), which would become "
                                    "infinite")
        if problems:
            raise StateError(
                f"{what} does not fit this network ({len(problems)} problem"
                f"{'s' if len(problems) != 1 else ''}): " + "; ".join(problems[:8])
                + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
                + (_renamed(targets, state) or hint)
            )

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy ``state`` into the network; every missing, unexpected or misshapen
        entry is listed in one :class:`StateError` and nothing is changed then."""
        self.check_state_dict(state)
        for key, target in {**self.params(), **self.state()}.items():
            np.copyto(target, state[key], casting="same_kind")

    # -- description ------------------------------------------------------------------
    def summary(self, *, expand: bool = False) -> str:
        """A table of layers, types, output shapes, parameter counts and providers."""
        return self.architecture.summary(expand=expand)


def _renamed(targets: dict[str, np.ndarray], state: dict[str, Any]) -> str:
    """When the missing and unexpected keys pair up in order with equal shapes, the
    layers were renamed (as putting them into a block renames them: ``conv2d_2.W``
    becomes ``residual_1.conv2d_1.W``): say so, with the first pair."""
    missing = [k for k in targets if k not in state]
    unexpected = [k for k in state if k not in targets]
    if not missing or len(missing) != len(unexpected) or not all(
            np.shape(state[u]) == targets[m].shape for m, u in zip(missing, unexpected,
                                                                    strict=True)):
        return ""
    return (f". The {len(missing)} unexpected arrays fit the missing ones in order and shape "
            f"({unexpected[0]!r} for {missing[0]!r}): the layers were renamed, as putting "
            "them into a block renames them. Load it into the config it was saved with, or "
            "rename the keys")
