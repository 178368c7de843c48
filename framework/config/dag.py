"""The graph a config describes: the order its layers run in, and who reads each value.

Shared by config validation (a cycle or an unused output is a config mistake) and
by the graph runner (:mod:`lamina.graph`), whose steps (:mod:`lamina.steps`) are planned
from the same counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import ConfigIssue
from .schema import INPUT, NodeConfig


def readers_of(units: Iterable[Any]) -> dict[str, int]:
    """How many of ``units`` (anything with ``output`` and ``inputs``: config nodes, the
    runner's nodes or steps) read each value, by value name."""
    units = list(units)
    counts = {INPUT: 0, **{unit.output: 0 for unit in units}}
    for unit in units:
        for ref in unit.inputs:
            counts[ref] += 1
    return counts


def topological_order(nodes: Iterable[NodeConfig]) -> list[NodeConfig]:
    """Nodes ordered so that each comes after its inputs (stable: file order on ties)."""
    pending = list(nodes)
    done = {INPUT}
    order: list[NodeConfig] = []
    while pending:
        ready = [n for n in pending if all(ref in done for ref in n.inputs)]
        if not ready:
            cycle = ", ".join(n.name for n in pending)
            raise ValueError(f"the inputs of these layers form a cycle: {cycle}; "
                             "a network must be a directed acyclic graph")
        for node in ready:
            order.append(node)
            done.add(node.name)
        pending = [n for n in pending if n.name not in done]
    return order


def graph_issues(nodes: list[NodeConfig]) -> list[ConfigIssue]:
    """A cycle among the layers' inputs (outputs nobody reads are found per layer list,
    by :mod:`lamina.config.nodes`)."""
    try:
        topological_order(nodes)
    except ValueError as exc:
        return [ConfigIssue("model.layers", str(exc))]
    return []
