"""The graph runner: a network assembled from a validated config.

Nodes run in topological order on the forward pass and in reverse on the
backward pass. A node whose output feeds several layers (a fan-out) receives the
sum of their gradients. Shapes are inferred when the network is built, before
any data is seen, so a layer that does not fit its input fails at once, naming
the layer in the config and the fix.

Parameters, gradients and non-trainable state are exposed under stable dotted
names, ``<layer name>.<key>`` (``conv2d_1.W``), in the order of the config.

Two optimisations use the optional declarations of the layer protocol (see
:mod:`lamina.layer`); neither changes a result beyond float rounding:

- A layer that declares ``monotone_elementwise`` (relu) and whose only consumer
  declares ``max_selecting`` (maxpool2d) runs *after* it, on the pooled array:
  f(pool(x)) == pool(f(x)) exactly, gradients included, and the elementwise layer
  then touches 4x fewer entries behind a 2x2 pool. The pair is one *step* of the
  plan; every other layer is a step of its own.
- Unless ``backward(..., input_grad=True)`` asks for it, the layers that read the
  network input are told (``needs_input_grad = False``) that their dx is not needed:
  for a first conv2d that gradient is a full col2im of the input, thrown away.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import INPUT, NetworkConfig, NodeConfig, topological_order
from .errors import PluginError, ShapeError, StateError
from .registry import Provider, Registry


@dataclass
class Node:
    """One layer of the network with its place in the graph."""

    config: NodeConfig
    layer: Any
    provider: Provider
    input_shape: Any = None
    output_shape: tuple[int, ...] | None = None

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


@dataclass(frozen=True)
class Step:
    """Layers run back to back on one value: usually one node; (pool, elementwise) for a
    swapped pair, which reads the elementwise layer's inputs and stands for the pool's
    output (the elementwise layer's own output is never materialised)."""

    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    output: str


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
        dtype: Any = np.float32,
    ):
        entries = [registry.entry("layer", node.type) for node in config.nodes]
        self._assemble(config, [(e.cls, e.provider) for e in entries], rng, np.dtype(dtype))

    def replica(self, rng: np.random.Generator) -> Network:
        """A new network of the same config and layer classes, built with ``rng``.

        Its parameters, gradients and caches are its own (copy values in with
        :meth:`load_state_dict`); its stochastic layers draw from ``rng``. The sharded
        training step (:mod:`lamina.parallel`) runs one replica per shard."""
        twin = object.__new__(Network)
        classes = [(type(node.layer), node.provider) for node in self.nodes]
        twin._assemble(self.config, classes, rng, self.dtype)
        return twin

    # -- construction -----------------------------------------------------------------
    def _assemble(self, config: NetworkConfig, classes: list[tuple[type, Provider]],
                  rng: np.random.Generator, dtype: np.dtype) -> None:
        self.config = config
        self.dtype = dtype
        self.input_shape = tuple(config.input_shape)
        self.nodes: list[Node] = [
            Node(node_config, cls(node_config.config), provider)
            for node_config, (cls, provider) in zip(config.nodes, classes, strict=True)
        ]
        self.order = [self._by_name(n.name) for n in topological_order(config.nodes)]
        self.output = config.output
        self._build(rng)
        self.steps = self._plan()
        self._readers = self._readers_of(self.steps)  # how many steps read each value

    def _by_name(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def _build(self, rng: np.random.Generator) -> None:
        shapes: dict[str, Any] = {INPUT: self.input_shape}
        for node in self.order:
            in_shapes = [shapes[ref] for ref in node.inputs]
            node.input_shape = tuple(in_shapes) if node.layer.multi_input else in_shapes[0]
            try:
                out = node.layer.build(node.input_shape, rng, dtype=self.dtype)
            except ShapeError as exc:
                came_from = ", ".join(f"{ref} {shapes[ref]}" for ref in node.inputs)
                raise ShapeError(
                    f"{node.config.path} {node.name!r} cannot take its input "
                    f"(from {came_from}): {exc}"
                ) from exc
            node.output_shape = tuple(int(d) for d in out)
            shapes[node.name] = node.output_shape

    def _plan(self) -> list[Step]:
        """The execution order: ``self.order`` with commuting pairs swapped into one step."""
        consumers = self._readers_of(self.nodes)
        by_name = {node.name: node for node in self.order}
        pulled: dict[str, Node] = {}  # pool name -> the elementwise layer it runs before
        for node in self.order:
            if not (node.layer.max_selecting and not node.layer.multi_input
                    and len(node.inputs) == 1 and node.inputs[0] in by_name):
                continue
            before = by_name[node.inputs[0]]
            if (before.layer.monotone_elementwise and not before.layer.multi_input
                    and consumers[before.name] == 1 and before.name != self.output):
                pulled[node.name] = before
        deferred = {before.name for before in pulled.values()}
        steps = []
        for node in self.order:
            if node.name in deferred:
                continue  # runs inside its pool's step
            before = pulled.get(node.name)
            if before is None:
                steps.append(Step((node,), node.inputs, node.name))
            else:
                steps.append(Step((node, before), before.inputs, node.name))
        return steps

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._by_name(self.output).output_shape

    # -- running ----------------------------------------------------------------------
    def forward(self, x: np.ndarray, *, training: bool = False,
                timings: dict[str, float] | None = None) -> np.ndarray:
        """``x`` (N, *input_shape) -> output (N, *output_shape).

        With ``timings``, each layer's forward seconds are stored under its name
        (``lamina bench`` uses this)."""
        values: dict[str, Any] = {INPUT: x}
        remaining = dict(self._readers)
        for step in self.steps:
            args = [values[ref] for ref in step.inputs]
            for ref in step.inputs:  # let go of activations no later layer reads
                remaining[ref] -= 1
                if remaining[ref] == 0 and ref != self.output:
                    del values[ref]
            value = args if step.nodes[0].layer.multi_input else args[0]
            for node in step.nodes:
                started = time.perf_counter()
                value = node.layer.forward(value, training=training)
                if timings is not None:
                    timings[node.name] = time.perf_counter() - started
            values[step.output] = value
        return values[self.output]

    def backward(self, dy: np.ndarray, *, input_grad: bool = False,
                 timings: dict[str, float] | None = None) -> np.ndarray | None:
        """Gradient of the output -> gradient of the input (only with ``input_grad``,
        else ``None``); fills every layer's grads."""
        pending: dict[str, np.ndarray] = {self.output: dy}
        for step in reversed(self.steps):
            first = step.nodes[0].layer
            reads_input = all(ref == INPUT for ref in step.inputs)
            first.needs_input_grad = input_grad or not reads_input
            grad = pending.pop(step.output)
            for node in reversed(step.nodes):
                started = time.perf_counter()
                grad = node.layer.backward(grad)
                if timings is not None:
                    timings[node.name] = time.perf_counter() - started
            d_ins = grad if first.multi_input else [grad]
            for ref, d_in in zip(step.inputs, d_ins, strict=True):
                if d_in is None:
                    if first.needs_input_grad:
                        raise PluginError(
                            f"layer {step.nodes[0].name!r} ({type(first).__name__}) returned "
                            "None from backward() for an input gradient the runner needs; "
                            "return None only while needs_input_grad is False"
                        )
                    continue
                # A fan-out sums its consumers' gradients. ``+`` makes a new array, so a
                # buffer a layer reuses across calls is never written through.
                pending[ref] = pending[ref] + d_in if ref in pending else d_in
        return pending.get(INPUT) if input_grad else None

    @staticmethod
    def _readers_of(units: list[Node] | list[Step]) -> dict[str, int]:
        """How many of ``units`` (nodes or steps) read each value, by value name."""
        counts = {INPUT: 0, **{unit.output: 0 for unit in units}}
        for unit in units:
            for ref in unit.inputs:
                counts[ref] += 1
        return counts

    # -- parameters and state ---------------------------------------------------------
    def params(self) -> dict[str, np.ndarray]:
        return {f"{n.name}.{k}": v for n in self.nodes for k, v in n.layer.params().items()}

    def grads(self) -> dict[str, np.ndarray]:
        return {f"{n.name}.{k}": v for n in self.nodes for k, v in n.layer.grads().items()}

    def state(self) -> dict[str, np.ndarray]:
        """Non-trainable arrays (running statistics), saved with the params."""
        return {f"{n.name}.{k}": v for n in self.nodes for k, v in n.layer.state().items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and non-trainable array, by dotted name."""
        return {k: v.copy() for k, v in {**self.params(), **self.state()}.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy ``state`` into the network; every missing, unexpected or misshapen
        entry is listed in one :class:`StateError` and nothing is changed then."""
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
        if problems:
            raise StateError(
                f"the state does not fit this network ({len(problems)} problem"
                f"{'s' if len(problems) != 1 else ''}): " + "; ".join(problems)
                + ". Was it saved from a different config?"
            )
        for key, target in targets.items():
            np.copyto(target, state[key], casting="same_kind")

    # -- description ------------------------------------------------------------------
    def summary(self) -> str:
        """A table of layers, types, output shapes, parameter counts and providers."""
        dag = not self.config.is_sequential()
        header = ["Layer", "Type", "Output shape", "Params"]
        header += ["Inputs"] if dag else []
        header += ["Plugin"]
        rows = [["input", "", str(self.input_shape), "0"] + ([""] if dag else []) + [""]]
        for node in self.nodes:
            count = sum(v.size for v in node.layer.params().values())
            row = [node.name, node.config.type, str(node.output_shape), f"{count:,}"]
            row += [", ".join(node.inputs)] if dag else []
            row += [str(node.provider)]
            rows.append(row)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if h == "Params" else c.ljust(w)
                             for c, w, h in zip(cells, widths, header, strict=True)).rstrip()

        rule = "-" * len(line(header))
        trainable = sum(v.size for v in self.params().values())
        frozen = sum(v.size for v in self.state().values())
        return "\n".join([
            rule, line(header), rule, *(line(r) for r in rows), rule,
            f"Total params: {trainable + frozen:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {frozen:,}",
        ])
