"""The execution plan of a network: which layers run together, as *steps*.

Usually a step is one layer. Two optimisations use the declarations of the layer
contract (:mod:`lamina.layer`); neither changes a result beyond float rounding:

- A layer that declares ``monotone_elementwise`` (relu, sigmoid, ...) and whose only
  consumer declares ``max_selecting`` (maxpool2d) runs *after* it, on the pooled array:
  f(pool(x)) == pool(f(x)), gradients included, and the elementwise layer then touches
  4x fewer entries behind a 2x2 pool. The pair is one step. For relu this is exact; for
  the others (leaky_relu, sigmoid, ...) it holds to f's rounding: two inputs of a window
  a rounding or a few apart can round to one output (a tie after f and not before) or
  even in the wrong order (computed float32 sigmoid is not monotone between
  neighbouring floats), and the pooled value and the entry its gradient goes to are then
  those of exact arithmetic, which may differ from the configured order's by an ulp.
- A layer that declares ``fuses_max_pool`` (conv2d) and is read only by a
  ``max_selecting`` layer whose window it accepts (``max_pool_window()``,
  ``fusable_max_pool``), directly or through one moved elementwise layer, ends in that
  pool: one *fused chain*, run as ``forward_max_pool`` then the elementwise layer on the
  pooled array (the pool layer itself is not called). Only the windows of
  ``FUSED_POOL_WINDOWS`` are fused, the ones ``check_fuses_max_pool`` verifies. conv2d
  then computes, on its fast paths, only the outputs the pool keeps. Every value outside
  the chain is an array of the documented shape (a fused conv2d's lies channels-last in
  memory); the chain's output is the pool's. ``LAMINA_FUSION=0`` (or false, no, off) in
  the environment, or ``Network(..., fuse=False)``, turns chains off.

The graph runner (:mod:`lamina.graph`) runs the steps; the decisions are made here,
from declarations only, never from layer names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .config import readers_of
from .errors import PASSED_THROUGH
from .layer import FUSED_POOL_WINDOWS


@dataclass(frozen=True)
class Step:
    """Layers run back to back on one value: usually one node; (pool, elementwise) for a
    swapped pair, which reads the elementwise layer's inputs and stands for the pool's
    output (the elementwise layer's own output is never materialised). In a fused chain
    ``pool`` is the max_selecting node the first layer ends in (by ``forward_max_pool``),
    ``nodes`` the first layer and the moved elementwise layer, if any."""

    nodes: tuple[Any, ...]
    inputs: tuple[str, ...]
    output: str
    pool: Any = None
    window: tuple[tuple[int, int], tuple[int, int]] | None = None


def fusion_enabled() -> bool:
    """Whether networks fuse chains unless told otherwise: ``LAMINA_FUSION`` set to 0,
    false, no or off turns it off."""
    return os.environ.get("LAMINA_FUSION", "1").strip().lower() not in ("0", "false", "no",
                                                                         "off")


def plan_steps(order: list[Any], output: str, *, fuse: bool) -> list[Step]:
    """The steps of the nodes in topological ``order`` (lamina.graph.Node), the network's
    output named ``output``: commuting pairs swapped into one step, then (with ``fuse``)
    the fused chains."""
    consumers = readers_of(order)
    by_name = {node.name: node for node in order}
    pulled: dict[str, Any] = {}  # pool name -> the elementwise layer it runs before
    for node in order:
        if not (node.layer.traits.max_selecting and len(node.inputs) == 1
                and node.inputs[0] in by_name):
            continue
        before = by_name[node.inputs[0]]
        if (before.layer.traits.monotone_elementwise and consumers[before.name] == 1
                and before.name != output):
            pulled[node.name] = before
    deferred = {before.name for before in pulled.values()}
    steps = []
    for node in order:
        if node.name in deferred:
            continue  # runs inside its pool's step
        before = pulled.get(node.name)
        if before is None:
            steps.append(Step((node,), node.inputs, node.name))
        else:
            steps.append(Step((node, before), before.inputs, node.name))
    return _fuse_chains(steps, consumers, output) if fuse else steps


def _fuse_chains(steps: list[Step], consumers: dict[str, int], output: str) -> list[Step]:
    """Each pool step whose input comes from a one-layer step of a ``fuses_max_pool``
    layer that accepts its window, and that nothing else reads, becomes one chain."""
    producer = {step.output: step for step in steps}
    merged: dict[str, Step] = {}  # pool step output -> its chain
    absorbed: set[str] = set()  # outputs of the steps the chains replace
    for step in steps:
        pool = step.nodes[0]
        if not pool.layer.traits.max_selecting or len(step.inputs) != 1:
            continue
        source = producer.get(step.inputs[0])
        if source is None or len(source.nodes) != 1 or source.pool is not None:
            continue
        first = source.nodes[0]
        if (not first.layer.traits.fuses_max_pool or consumers[first.name] != 1
                or first.name == output):
            continue
        window = _asked(pool, "max_pool_window()", pool.layer.max_pool_window)
        # only the windows check_fuses_max_pool verifies
        if window not in FUSED_POOL_WINDOWS or not _asked(
                first, "fusable_max_pool()", first.layer.fusable_max_pool, window):
            continue
        merged[step.output] = Step((first, *step.nodes[1:]), first.inputs, step.output,
                                   pool=pool, window=window)
        absorbed.add(source.output)
    return [merged.get(step.output, step) for step in steps if step.output not in absorbed]


def _asked(node: Any, what: str, method, *args) -> Any:
    """A plugin method's answer while the runner plans; its exception named as its own."""
    try:
        return method(*args)
    except PASSED_THROUGH:
        raise
    except BaseException as exc:
        raise node.plugin_failed(what, exc) from exc
