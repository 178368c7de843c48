"""A list of layer tables validated, the model's own or a block's, with every block
expanded into the layers it stands for.

For each list: each table's ``type``, ``name`` and ``inputs`` are checked and its
settings validated by its plugin's ``Config`` (a layer's) or by the block's settings
model; names are given (explicit ones kept, the others numbered per type within the
list, as Keras does: ``conv2d_1``); each ``inputs`` entry must name a layer of the same
list or ``"input"``. A block's tables are validated the same way, one level down, and
its layers are named through it: ``res_1.conv2d_1``. The result is flat: the graph
runner, the sharded step and ONNX export see only layers, each with its own traits.

Inside a block ``"input"`` is the block's input. A layer's inputs are resolved once the
whole list is named (a list may name a later layer), so a block's layers read a
placeholder for the block's input until the block's own input is known.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import PASSED_THROUGH, ConfigIssue
from ..registry import Entry, Registry
from .blocks import BlockDef, Origin, call_expand
from .issues import pydantic_issues
from .schema import INPUT, BlockUse, NodeConfig, NodeKeys, Scope, scoped_path
from .strict import validate_settings

#: blocks inside blocks, at most this deep
MAX_BLOCK_DEPTH = 8
#: layers of a network once its blocks are expanded
MAX_LAYERS = 10_000


@dataclass
class _Table:
    """One table of a layer list, as far as it validated."""

    index: int
    keys: NodeKeys
    label: str
    origins: dict[str, Origin] = field(default_factory=dict)  # values a block passed down
    cls: type | None = None          # a layer's class
    block: BlockDef | None = None    # or a block
    config: BaseModel | None = None  # its validated settings
    name: str = ""                   # its name within the list
    refs: list[str] = field(default_factory=list)  # the names it reads, within the list


class Expansion:
    """Validates layer lists against the registry's layers and the known blocks, and
    expands blocks; collects every issue, every use of a block and the config blocks
    used (to write back with the config).

    A mistake inside a config's own block that does not depend on the settings of the
    use (a misspelt key, an unknown name in ``inputs``) is reported once, at
    ``blocks.<name>.layers[i]``; one that does (a value passed down) at the use, saying
    where the value came from. A plugin block's layers may name registered types only:
    what it stands for does not depend on the config it is used in."""

    def __init__(self, registry: Registry, blocks: dict[str, BlockDef],
                 issues: list[ConfigIssue], broken: set[str] = frozenset()):
        self.registry, self.blocks, self.issues = registry, blocks, issues
        self.broken = broken  # config blocks whose definitions have mistakes (reported)
        self.uses: list[BlockUse] = []
        self.definitions: dict[str, Any] = {}
        self.count = 0

    def layers(self, tables: list[Any], scope: tuple[Scope, ...] = (),
               input_name: str = INPUT, origins: list[dict[str, Origin]] | None = None,
               visible: dict[str, BlockDef] | None = None) -> list[NodeConfig]:
        """The layers of ``tables`` (a block's when ``scope`` is set, whose input is
        ``input_name``), flat and in order; ``visible`` are the blocks its tables may
        name (default: every known block)."""
        visible = self.blocks if visible is None else visible
        typed = [self._typed(i, table, scope, (origins or [{}] * len(tables))[i], visible)
                 for i, table in enumerate(tables)]
        units = [unit for unit in typed if unit is not None]
        self._name(units)
        prefix = f"{scope[-1].name}." if scope else ""
        output_of: dict[str, str] = {}
        expanded: dict[int, tuple[BlockUse, list[NodeConfig]]] = {}
        for unit in units:
            output_of[unit.name] = prefix + unit.name
            if unit.block is not None and unit.config is not None:
                inner = self._expand(unit, scope, prefix + unit.name)
                if inner is not None:
                    expanded[unit.index] = inner
                    output_of[unit.name] = inner[1][-1].name
        nodes: list[NodeConfig] = []
        resolved = {unit.index: self._inputs(unit, units, output_of, input_name, scope)
                    for unit in units}
        if all(inputs is not None for inputs in resolved.values()):
            self._unread(units, scope)  # (a reference that failed is reported already)
        for unit in units:
            inputs = resolved[unit.index]
            if unit.index in expanded:
                use, inner = expanded[unit.index]
                if inputs is not None:  # else its issue is reported: no config comes of it
                    self._arrive(use, inputs[0], inner)
                    inner = [replace(n, inputs=tuple(inputs[0] if r == _placeholder(use.name)
                                                     else r for r in n.inputs))
                             for n in inner]
                    self.uses.append(replace(use, inputs=tuple(inputs), output=inner[-1].name))
                nodes.extend(inner)
            elif unit.cls is not None and unit.config is not None and inputs is not None:
                nodes.append(NodeConfig(unit.index, unit.keys.type, prefix + unit.name,
                                        tuple(inputs), unit.config, scope))
                self.count += 1
        return nodes

    def ordered_uses(self, nodes: list[NodeConfig]) -> tuple[BlockUse, ...]:
        """Every use of a block in config order: where its first layer is, an outer block
        before the blocks inside it."""
        first: dict[str, int] = {}
        for position, node in enumerate(nodes):
            for depth in range(1, len(node.scope) + 1):
                first.setdefault(node.scope[depth - 1].name, position)
        return tuple(sorted(self.uses, key=lambda use: (first.get(use.name, len(nodes)),
                                                        len(use.scope))))

    # -- one table ----------------------------------------------------------------------
    def _typed(self, i: int, table: Any, scope: tuple[Scope, ...], origins: dict[str, Origin],
               visible: dict[str, BlockDef]) -> _Table | None:
        label = scoped_path(scope, i, "").removesuffix(" ()")
        try:
            keys = NodeKeys.model_validate(table)
        except ValidationError as exc:
            self.issues.extend(pydantic_issues(exc, label))
            return None
        label = scoped_path(scope, i, keys.type)
        unit = _Table(i, keys, label, origins)
        settings = {k: v for k, v in table.items() if k not in ("type", "name", "inputs")}
        before = len(self.issues)
        if keys.type in self.registry.layers:
            entry = self.registry.entry("layer", keys.type)
            unit.cls = entry.cls
            unit.config = plugin_settings(entry, settings, label, self.issues)
        elif keys.type in visible:
            unit.block = visible[keys.type]
            unit.config, found = validate_settings(unit.block.Config, settings, label)
            self.issues.extend(found)
        elif keys.type in self.blocks:  # a config's own block, named by a plugin block
            self.issues.append(ConfigIssue(f"{label}.type", (
                f"{keys.type!r} is a block this config defines, which the plugin block "
                f"{scope[-1].type!r} cannot name: a plugin's layers are registered types, "
                "the same in every config")))
        elif keys.type not in self.broken:
            known = {**self.registry.layers, **visible}
            self.issues.append(ConfigIssue(f"{label}.type", self._unknown(keys.type, known)))
        if origins:  # say where a value a block passed down came from
            self.issues[before:] = [_traced(issue, label, origins)
                                    for issue in self.issues[before:]]
        return unit

    def _unknown(self, name: str, known: dict[str, Any]) -> str:
        message = self.registry.unknown_message("layer", name, known)
        if not self.blocks:
            return message
        return message.replace("known layer types", "known layer and block types", 1)

    # -- names and inputs ---------------------------------------------------------------
    def _name(self, units: list[_Table]) -> None:
        """Explicit names kept, the rest numbered per type (conv2d_1, ...); a name used
        twice, or ``input``, is an issue."""
        explicit = {unit.keys.name for unit in units if unit.keys.name}
        counters: dict[str, int] = {}
        seen: dict[str, _Table] = {}
        for unit in units:
            name = unit.keys.name
            if name is None:
                counters[unit.keys.type] = counters.get(unit.keys.type, 0) + 1
                name = f"{unit.keys.type}_{counters[unit.keys.type]}"
                while name in explicit:
                    counters[unit.keys.type] += 1
                    name = f"{unit.keys.type}_{counters[unit.keys.type]}"
            if name == INPUT:
                self.issues.append(ConfigIssue(f"{unit.label}.name", (
                    f"{INPUT!r} is reserved for the network's (or block's) input; rename it")))
            elif name in seen:
                self.issues.append(ConfigIssue(f"{unit.label}.name", (
                    f"name {name!r} is already used by {seen[name].label}; layer names must "
                    "be unique")))
            seen.setdefault(name, unit)
            unit.name = name

    def _inputs(self, unit: _Table, units: list[_Table], output_of: dict[str, str],
                input_name: str, scope: tuple[Scope, ...]) -> list[str] | None:
        """The full names of the values ``unit`` reads, or None with issues."""
        position = units.index(unit)
        refs = list(unit.keys.inputs) if unit.keys.inputs is not None else \
            [units[position - 1].name if position else INPUT]
        unit.refs = refs
        ok = True
        for j, ref in enumerate(refs):
            if ref == INPUT:
                continue
            if ref == unit.name:
                self.issues.append(ConfigIssue(f"{unit.label}.inputs[{j}]",
                                               "a layer cannot be its own input"))
                ok = False
            elif ref not in output_of:
                self.issues.append(ConfigIssue(f"{unit.label}.inputs[{j}]",
                                               _no_such_layer(ref, unit.name, units, scope)))
                ok = False
        if unit.block is not None and len(refs) != 1:
            self.issues.append(ConfigIssue(f"{unit.label}.inputs", (
                f"a block takes one input, received {len(refs)}: {refs}; merge them first "
                "with a layer such as add")))
            ok = False
        elif unit.cls is not None:
            multi = unit.cls.traits.multi_input
            if multi and len(refs) < 2:
                self.issues.append(ConfigIssue(f"{unit.label}.inputs", (
                    f"{unit.keys.type} merges two or more inputs, received {refs}; list the "
                    "layers to merge, e.g. inputs = [\"conv2d_1\", \"relu_2\"]")))
                ok = False
            elif not multi and len(refs) != 1:
                self.issues.append(ConfigIssue(f"{unit.label}.inputs", (
                    f"{unit.keys.type} takes one input, received {len(refs)}: {refs}; merge "
                    "them first with a layer such as add")))
                ok = False
        if not ok:
            return None
        return [input_name if ref == INPUT else output_of[ref] for ref in refs]

    def _unread(self, units: list[_Table], scope: tuple[Scope, ...]) -> None:
        """Every output but the list's last must be read by a layer of the list."""
        read = {ref for unit in units for ref in unit.refs}
        last = "the block's output" if scope else "the network's output"
        for unit in units[:-1]:
            if unit.name not in read:
                self.issues.append(ConfigIssue(unit.label, (
                    f"the output of {unit.name!r} is used by no layer; only the last layer "
                    f"may be unused (it is {last}): list it in a later layer's inputs or "
                    "remove it")))

    # -- blocks -------------------------------------------------------------------------
    def _expand(self, unit: _Table, scope: tuple[Scope, ...], full: str
                ) -> tuple[BlockUse, list[NodeConfig]] | None:
        block = unit.block
        assert block is not None and unit.config is not None
        chain = [s.type for s in scope]
        if block.name in chain:
            self.issues.append(ConfigIssue(unit.label, (
                f"block {block.name!r} uses itself ({' > '.join([*chain, block.name])}); a "
                "block cannot contain itself")))
            return None
        if len(scope) >= MAX_BLOCK_DEPTH:
            self.issues.append(ConfigIssue(unit.label, (
                f"blocks are nested more than {MAX_BLOCK_DEPTH} deep here; lamina allows at "
                f"most {MAX_BLOCK_DEPTH}")))
            return None
        if self.count >= MAX_LAYERS:  # checked before the work, so that no config is slow
            if not any(i.path == "model.layers" for i in self.issues):
                self.issues.append(ConfigIssue("model.layers", (
                    f"the network would have more than {MAX_LAYERS:,} layers once its blocks "
                    "are expanded; lamina allows at most that many")))
            return None
        tables = call_expand(block, unit.config, unit.label, self.issues)
        if tables is None:
            return None
        if block.definition is not None:
            self.definitions[block.name] = block.definition
        here = Scope(unit.index, block.name, full)
        before = len(self.issues)
        # a plugin's block names registered types only; a config's, every block it knows
        visible = self.blocks if block.definition is not None else {
            name: b for name, b in self.blocks.items() if b.definition is None}
        inner = self.layers([t for t, _ in tables], (*scope, here), _placeholder(full),
                            [_passed_on(o, unit.origins) for _, o in tables], visible)
        if block.definition is not None:
            self._at_definition(before, unit.label, block.name)
        if len(self.issues) > before or not inner or self.count > MAX_LAYERS:
            return None
        use = BlockUse(unit.index, block.name, full, (), unit.config, "", scope, block.provider)
        return use, inner

    def _arrive(self, use: BlockUse, value: str, inner: list[NodeConfig]) -> None:
        """The blocks inside ``use`` that read its input read ``value``."""
        placeholder = _placeholder(use.name)
        self.uses = [replace(u, inputs=tuple(value if r == placeholder else r
                                             for r in u.inputs))
                     if u.name.startswith(use.name + ".") else u for u in self.uses]

    def _at_definition(self, before: int, label: str, block: str) -> None:
        """The issues found in a use of config block ``block`` since ``before`` that do not
        depend on the use (no value passed down): moved to the definition, once."""
        prefix = f"{label} > "
        kept = self.issues[:before]
        seen = {(i.path, i.message) for i in kept}
        for issue in self.issues[before:]:
            if issue.path.startswith(prefix) and " (from " not in issue.message:
                issue = ConfigIssue(f"blocks.{block}." + issue.path[len(prefix):],
                                    issue.message)
            if (issue.path, issue.message) not in seen:
                seen.add((issue.path, issue.message))
                kept.append(issue)
        self.issues[:] = kept


def _placeholder(block: str) -> str:
    """What a block's layers read as its input until that input is known (no layer can
    have this name: names are identifiers)."""
    return f"<input of {block}>"


def _traced(issue: ConfigIssue, label: str, origins: dict[str, Origin]) -> ConfigIssue:
    for key, origin in origins.items():
        if issue.path == f"{label}.{key}" or issue.path.startswith(
                (f"{label}.{key}[", f"{label}.{key}.")):
            return ConfigIssue(issue.path, f"{issue.message} ({origin})")
    return issue


def _passed_on(inner: dict[str, Origin], outer: dict[str, Origin]) -> dict[str, Origin]:
    """The origins of a block's layer's values, traced on through the settings of the use
    that passed them (``stage.f`` gave ``conv_bn.filters``, which gave ``filters``)."""
    traced = {}
    for key, origin in inner.items():
        setting = origin.chain[0].split(".", 1)[1]
        before = outer.get(setting)
        traced[key] = Origin((*before.chain, *origin.chain), origin.value) if before else origin
    return traced


def _no_such_layer(ref: str, name: str, units: list[_Table], scope: tuple[Scope, ...]) -> str:
    known = [INPUT, *(u.name for u in units if u.name != name)]
    if "." in ref:
        block = ref.split(".", 1)[0]
        if any(u.name == block and u.block is not None for u in units):
            return (f"{ref!r} is inside block {block!r}, whose layers cannot be read from "
                    f"outside it; read the block's output, {block!r}")
    close = difflib.get_close_matches(ref, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    where = f"in block {scope[-1].type!r} " if scope else ""
    return f"no layer named {ref!r} {where}; {hint}the layers are: {', '.join(known)}" \
        .replace(" ;", ";")


def plugin_settings(entry: Entry, settings: dict[str, Any], label: str,
                    issues: list[ConfigIssue]) -> BaseModel | None:
    """``settings`` validated by the plugin's own ``Config``; each mistake becomes an issue.
    A validator of the plugin's that breaks (raises anything but a ValidationError, such
    as a TypeError) is a bug in the plugin, reported as an issue naming it."""
    try:
        config, found = validate_settings(entry.cls.Config, settings, label)
    except PASSED_THROUGH:
        raise
    except BaseException as exc:
        issues.append(ConfigIssue(label, (
            f"the {entry.name} plugin's config validation raised {type(exc).__name__}: {exc}. "
            f"This is a bug in the plugin ({entry.provider.module}, from {entry.provider}); "
            f"report it to its author, or use another {entry.kind}")))
        return None
    issues.extend(found)
    return config
