"""The table ``lamina summary`` prints: each layer, or each use of a block folded into
one row, with its type, output shape, parameter count, inputs and provider; and
``Model.layers``, the same facts per layer as objects (:class:`LayerInfo`).

The Inputs column appears only where a layer does not read the one listed before it,
by the names its own list uses (a block by its name, the list's input as ``input``):
a sequential network shows none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a built network: its name (dotted through blocks,
    ``residual_1.conv2d_1``), plugin type, output shape (per sample), number of values
    in its parameters and non-trainable arrays, and the layer object itself."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    layer: Any = field(repr=False, compare=False)


def layer_infos(network: Any) -> list[LayerInfo]:
    """The layers of a :class:`lamina.Network` in the config's order."""
    return [LayerInfo(node.name, node.config.type, tuple(node.output_shape),
                      _values([node]), node.layer)
            for node in network.nodes]


def summary_table(architecture: Any, *, expand: bool = False) -> str:
    """The table for an :class:`lamina.graph.Architecture`; ``expand`` lists each
    block's layers under it, indented, by their names within it."""
    rows = [["input", "", str(architecture.input_shape), "0", "", ""]]
    rows += _rows(architecture, architecture.config.top_level(), 0, expand)
    header = ["Layer", "Type", "Output shape", "Params", "Inputs", "Plugin"]
    if all(row[4] == "" for row in rows):
        header, rows = header[:4] + header[5:], [r[:4] + r[5:] for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if h == "Params" else c.ljust(w)
                         for c, w, h in zip(cells, widths, header, strict=True)).rstrip()

    rule = "-" * len(line(header))
    trainable = architecture.count(trainable=True)
    frozen = architecture.count(trainable=False)
    return "\n".join([
        rule, line(header), rule, *(line(r) for r in rows), rule,
        f"Total params: {trainable + frozen:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {frozen:,}",
    ])


def _values(nodes: list[Any]) -> int:
    """Values held, trainable or not (a batchnorm's running statistics count, as in
    Keras's summary and in the totals below the table)."""
    return sum(spec.size for node in nodes for spec in node.specs.values())


def _rows(architecture: Any, units: list[Any], depth: int, expand: bool) -> list[list[str]]:
    """Rows for ``units``, a list's layers and block uses in order."""
    by_name = {node.name: node for node in architecture.nodes}
    shown = {unit.output: unit.short_name for unit in units}
    rows, previous = [], None
    for unit in units:
        inputs = [shown.get(ref, "input") for ref in unit.inputs]
        cell = "" if inputs == [previous or "input"] else ", ".join(inputs)
        previous = unit.short_name
        name = "  " * depth + ("└ " if depth else "") + unit.short_name
        if unit.name in by_name:
            node = by_name[unit.name]
            rows.append([name, node.config.type, str(node.output_shape),
                         f"{_values([node]):,}", cell, str(node.provider)])
            continue
        inner = [n for n in architecture.nodes if n.name.startswith(unit.name + ".")]
        rows.append([name, unit.type, str(by_name[unit.output].output_shape),
                     f"{_values(inner):,}", cell, unit.provider])
        if expand:
            rows += _rows(architecture, _members(architecture.config, unit.name), depth + 1,
                          expand)
    return rows


def _members(config: Any, block: str) -> list[Any]:
    """The layers and block uses directly inside block instance ``block``, in order."""
    uses = {use.name: use for use in config.blocks}
    members: list[Any] = []
    for node in config.nodes:
        if not node.name.startswith(block + "."):
            continue
        rest = node.name[len(block) + 1:]
        unit = uses[f"{block}.{rest.split('.')[0]}"] if "." in rest else node
        if not members or members[-1] is not unit:
            members.append(unit)
    return members
