"""Blocks: a config's own ``[blocks]`` definitions, and :class:`BlockDef`, the one
interface through which validation expands a block, defined in a config or by a plugin
(:class:`lamina.Block`).

A config defines a block by its settings and its layers; a layer's value that is
exactly ``"${setting}"`` (the whole value, never part of a string) becomes the block's
setting, validated first by the block and then by the layer's own ``Config``::

    [blocks.conv_bn_relu]
    settings.filters = "int"                              # required
    settings.kernel_size = { type = "int", default = 3 }  # optional

    [[blocks.conv_bn_relu.layers]]
    type = "conv2d"
    filters = "${filters}"
    kernel_size = "${kernel_size}"
    padding = "same"
    use_bias = false

    [[blocks.conv_bn_relu.layers]]
    type = "batchnorm"

    [[blocks.conv_bn_relu.layers]]
    type = "relu"

and uses it as a layer: ``{ type = "conv_bn_relu", filters = 32 }``. ``"input"`` in a
block's ``inputs`` is the block's input; its last layer is its output. Settings are
passed down only where a layer names them: a declared setting that no layer uses is a
mistake, as is a ``${name}`` that names none. A mistake in a definition is reported
once, at ``blocks.<name>``; one that depends on the settings of a use, at that use.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from ..errors import PASSED_THROUGH, ConfigIssue
from .issues import pydantic_issues

#: a whole value that passes a block's setting down to one of its layers
REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
#: the types a config block's setting may declare, as JSON values
SETTING_TYPES: dict[str, Any] = {
    "int": int, "float": float, "bool": bool, "str": str,
    "list[int]": list[int], "list[float]": list[float], "list": list[Any], "any": Any,
}
#: keys of a layer table that name the graph, never a setting
STRUCTURE_KEYS = ("type", "name", "inputs")
NAME = r"^[a-z][a-z0-9_]*$"


@dataclass(frozen=True)
class BlockDef:
    """A block as validation uses it: its settings model, and ``expand(settings)``, the
    layer tables it stands for, each with the settings its values came from
    (``{"filters": "res.filters = 32"}``, for messages). ``provider`` names where it is
    defined; ``definition`` is a config block's definition as written back."""

    name: str
    Config: type[BaseModel]
    expand: Callable[[BaseModel], Any]
    provider: str  # as the summary shows it: "lamina 0.1.0", "config"
    module: str = ""  # a plugin's module, for messages
    definition: dict[str, Any] | None = None


class _Setting(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: str
    default: Any = None  # given or not: model_fields_set tells (null is a default too)


class _Definition(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    settings: dict[str, Any] = Field(default_factory=dict)
    layers: list[dict[str, Any]] = Field(min_length=1)
    description: str = ""


@dataclass(frozen=True)
class Origin:
    """Where a value of a block's layer came from: the settings it was passed through,
    outermost first (``("stage.f", "conv_bn.filters")``), and the value."""

    chain: tuple[str, ...]
    value: str

    def __str__(self) -> str:
        through = f" through {', '.join(self.chain[1:])}" if len(self.chain) > 1 else ""
        return f"from {self.chain[0]} = {self.value}{through}"


def plugin_block(entry: Any) -> BlockDef:
    """A registered block plugin (a registry entry) as a BlockDef."""
    cls = entry.cls

    def expand(settings: BaseModel) -> Any:
        tables = cls.layers(settings)
        if not isinstance(tables, list | tuple):
            return tables  # reported by call_expand, as the plugin returned it
        return [(table, {}) for table in tables]

    return BlockDef(entry.name, cls.Config, expand, str(entry.provider), entry.provider.module)


def config_blocks(section: dict[str, Any], taken: Callable[[str], str | None],
                  known: set[str], issues: list[ConfigIssue]
                  ) -> tuple[dict[str, BlockDef], set[str]]:
    """The ``[blocks]`` section's definitions that hold, by name, and the names of those
    that do not; every mistake in one is an issue at ``blocks.<name>``. ``taken(name)``
    says what already provides a type of that name (a layer or block plugin), or None;
    ``known`` holds the types layer and block plugins provide."""
    found: dict[str, BlockDef] = {}
    broken: set[str] = set()
    for name, raw in section.items():
        label = f"blocks.{name}"
        if not re.match(NAME, str(name)):
            issues.append(ConfigIssue(label, (
                f"a block's name is lowercase letters, digits and underscores, starting with a "
                f"letter (it is the `type` that uses it), received {name!r}")))
            broken.add(name)  # its uses are this mistake, not an unknown type
            continue
        owner = taken(name)
        if owner is not None:
            issues.append(ConfigIssue(label, (
                f"{name!r} is already the {owner}; a block defined here cannot replace it: "
                "rename the block")))
            continue
        block = _definition(name, raw, label, known | set(section), issues)
        if block is not None:
            found[name] = block
        else:
            broken.add(name)
    for name, cycle in _cycles(found).items():
        issues.append(ConfigIssue(f"blocks.{name}", (
            f"block {name!r} contains itself ({' > '.join(cycle)}); a block's layers cannot "
            "lead back to it")))
        broken.add(name)
        del found[name]
    return found, broken


def _cycles(found: dict[str, BlockDef]) -> dict[str, list[str]]:
    """The config blocks whose layers lead back to themselves, each with the way."""
    names = {name: [str(t.get("type")) for t in block.definition["layers"]]
             for name, block in found.items()}
    cycles: dict[str, list[str]] = {}

    def visit(start: str, path: list[str]) -> None:
        for used in names.get(path[-1], []):
            if used == start:
                cycles.setdefault(start, [*path, used])
            elif used in names and used not in path:
                visit(start, [*path, used])

    for name in names:
        visit(name, [name])
    return cycles


def _definition(name: str, raw: Any, label: str, known: set[str],
                issues: list[ConfigIssue]) -> BlockDef | None:
    if not isinstance(raw, dict):
        issues.append(ConfigIssue(label, f"a block is a table with `settings` and `layers`, "
                                         f"received {type(raw).__name__}"))
        return None
    try:
        definition = _Definition.model_validate_json(json.dumps(raw))
    except ValidationError as exc:
        issues.extend(pydantic_issues(exc, label, _Definition))
        return None
    except (TypeError, ValueError):
        issues.append(ConfigIssue(label, "a block's definition holds values that are not "
                                         "JSON (write numbers, strings, arrays and tables)"))
        return None
    before = len(issues)
    specs = _setting_specs(definition.settings, label, issues)
    used: set[str] = set()
    for i, table in enumerate(definition.layers):
        where = f"{label}.layers[{i}]"
        kind = table.get("type")
        if not isinstance(kind, str) or kind not in known:
            close = difflib.get_close_matches(str(kind), sorted(known), n=1, cutoff=0.6)
            issues.append(ConfigIssue(f"{where}.type", (
                f"unknown layer or block type {kind!r}" if isinstance(kind, str) else
                "every layer of a block names its `type`, a string")
                + (f"; did you mean {close[0]!r}? " if close else "; ")
                + f"known types: {', '.join(sorted(known))}"))
        for key, value in table.items():
            for ref in _references(value):
                if key in STRUCTURE_KEYS:
                    issues.append(ConfigIssue(f"{where}.{key}", (
                        f"{key} cannot come from a setting (${{{ref}}}); a block's layers "
                        "and how they connect are the same in every use")))
                elif ref not in definition.settings:  # declared, even if wrongly
                    issues.append(ConfigIssue(f"{where}.{key}", (
                        f"${{{ref}}} names no setting of block {name!r}; declare it: "
                        f"settings.{ref} = \"int\" (or another type)")))
                used.add(ref)
    for key in specs:
        if key not in used and key.isidentifier() and key not in STRUCTURE_KEYS:
            issues.append(ConfigIssue(f"{label}.settings.{key}", (
                f"no layer of the block uses this setting; pass it down with "
                f"{key} = \"${{{key}}}\" in a layer, or remove it")))
    if len(issues) > before:
        return None
    settings = _settings_model(name, json.dumps(
        {key: [spec.type, "default" in spec.model_fields_set, spec.default]
         for key, spec in specs.items()}))
    layers = [dict(table) for table in definition.layers]
    written = {"settings": {k: ({"type": s.type, "default": s.default}
                                if "default" in s.model_fields_set else s.type)
                            for k, s in specs.items()},
               "layers": layers}
    if definition.description:
        written["description"] = definition.description

    def expand(config: BaseModel) -> list[tuple[Any, dict[str, Origin]]]:
        values = config.model_dump(mode="json")
        return [_substituted(table, values, name) for table in layers]

    return BlockDef(name, settings, expand, "config", definition=written)


def _setting_specs(raw: dict[str, Any], label: str, issues: list[ConfigIssue]
                   ) -> dict[str, _Setting]:
    """The declared settings of a block: each a type name (``"int"``) or a table with
    ``type`` and ``default``; every mistake an issue at ``<label>.settings.<name>``."""
    specs: dict[str, _Setting] = {}
    for key, spec in raw.items():
        where = f"{label}.settings.{key}"
        if not key.isidentifier() or key in STRUCTURE_KEYS:
            issues.append(ConfigIssue(where, (
                f"a setting's name is an identifier other than {', '.join(STRUCTURE_KEYS)}")))
            continue
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict):
            issues.append(ConfigIssue(where, (
                f"a setting is a type name (\"int\") or a table {{ type = \"int\", default = 3 "
                f"}}, received {json.dumps(spec)}")))
            continue
        try:
            setting = _Setting.model_validate_json(json.dumps(spec))
        except ValidationError as exc:
            issues.extend(pydantic_issues(exc, where, _Setting))
            continue
        if setting.type not in SETTING_TYPES:
            issues.append(ConfigIssue(where + (".type" if "default" in spec else ""), (
                f"unknown setting type {setting.type!r}; the types are "
                f"{', '.join(SETTING_TYPES)}")))
            continue
        if "default" in setting.model_fields_set:
            try:  # a default is a value of its setting's type, by the rule of every setting
                TypeAdapter(SETTING_TYPES[setting.type]).validate_json(
                    json.dumps(setting.default), strict=True)
            except ValidationError:
                issues.append(ConfigIssue(f"{where}.default", (
                    f"the default {json.dumps(setting.default)} is not of type "
                    f"{setting.type}")))
                continue
        specs[key] = setting
    return specs


@functools.lru_cache(maxsize=256)
def _settings_model(name: str, specs_json: str) -> type[BaseModel]:
    """The settings model of a config block: one class per definition, so that two
    validations of one config give equal settings."""
    specs = json.loads(specs_json)
    fields = {key: (SETTING_TYPES[kind], default if has_default else ...)
              for key, (kind, has_default, default) in specs.items()}
    return create_model(f"{name} settings", __config__=ConfigDict(extra="forbid", frozen=True),
                        **fields)


def _references(value: Any) -> list[str]:
    if isinstance(value, str):
        match = REFERENCE.match(value)
        return [match.group(1)] if match else []
    if isinstance(value, list):
        return [ref for item in value for ref in _references(item)]
    return []


def _substituted(table: dict[str, Any], values: dict[str, Any], block: str
                 ) -> tuple[dict[str, Any], dict[str, Origin]]:
    """``table`` with each ``${setting}`` replaced by its value; and for each key whose
    value came from settings, where from (for messages)."""
    origins: dict[str, Origin] = {}

    def put(value: Any, key: str) -> Any:
        if isinstance(value, str):
            match = REFERENCE.match(value)
            if match:
                ref = match.group(1)
                origins[key] = Origin((f"{block}.{ref}",), json.dumps(values[ref]))
                return values[ref]
            return value
        if isinstance(value, list):
            return [put(item, key) for item in value]
        return value

    return {key: put(value, key) for key, value in table.items()}, origins


def call_expand(block: BlockDef, settings: BaseModel, label: str, issues: list[ConfigIssue]
                ) -> list[tuple[Any, dict[str, str]]] | None:
    """``block.expand(settings)``, checked: a list of layer tables. A plugin's ``layers()``
    that raises or returns something else is an issue naming the plugin."""
    try:
        tables = block.expand(settings)
    except PASSED_THROUGH:
        raise
    except BaseException as exc:
        issues.append(ConfigIssue(label, (
            f"the {block.name} block's layers() raised {type(exc).__name__}: {exc}. This is a "
            f"bug in the plugin ({block.module}, from {block.provider}); report it to its "
            "author, or use another block")))
        return None
    if not isinstance(tables, list) or not tables or not all(
            isinstance(t, dict) and all(isinstance(k, str) for k in t) for t, _ in tables):
        issues.append(ConfigIssue(label, (
            f"the {block.name} block's layers() returned {_brief(tables)}; expected a "
            f"non-empty list of layer tables (dicts). This is a bug in the plugin "
            f"({block.module}, from {block.provider}); report it to its author")))
        return None
    return tables


def _brief(value: Any) -> str:
    text = repr([t for t, _ in value]) if isinstance(value, list) else \
        f"a {type(value).__name__}, {value!r}"
    return text if len(text) <= 80 else text[:77] + "..."
