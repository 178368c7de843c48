"""Network configs validated in two stages, every mistake reported at once.

Stage one checks the structure (the sections, the list of layer tables, each
table's ``type``, ``name`` and ``inputs``); stage two validates each layer's
remaining keys with the pydantic ``Config`` of the plugin its ``type`` names, and
likewise the loss and the optimizer. Every mistake is collected and reported at
once, each with its path (``model.layers[4] (dense).units``), what was received
and what was expected. Validating per layer rather than through one big
discriminated union gives exactly these paths and a did-you-mean on an unknown
``type``, while still using nothing but the plugins' own models.

A config file looks like::

    [model]
    input_shape = [1, 28, 28]

    [[model.layers]]
    type = "conv2d"
    filters = 32
    kernel_size = 3

    [loss]
    type = "softmax_cross_entropy"

    [optimizer]
    type = "adam"
    lr = 1e-3

    [training]
    epochs = 15

What only shows once the layers are put together (shapes, the shard count) is
checked by :func:`lamina.plan.make_plan`, in the same pass.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import PASSED_THROUGH, ConfigError, ConfigIssue
from ..registry import Entry, Registry
from .dag import graph_issues
from .files import check_depth, read_config
from .issues import pydantic_issues
from .run import TrainingConfig, cross_section_issues, schedule_of
from .schema import INPUT, ModelSection, NetworkConfig, NodeConfig, NodeKeys, PluginConfig, Sections
from .strict import validate_settings


@dataclass
class Validated:
    """What stage one and two made of a document, and every issue found on the way.
    ``config`` is set only when there is no issue; ``nodes`` holds every layer that
    validated, so that shapes can still be inferred when another section is wrong."""

    source: str
    issues: list[ConfigIssue] = field(default_factory=list)
    input_shape: tuple[int, ...] | None = None
    nodes: list[NodeConfig] = field(default_factory=list)
    all_nodes_valid: bool = False
    training: TrainingConfig | None = None
    config: NetworkConfig | None = None

    def raise_issues(self) -> None:
        if self.issues:
            raise ConfigError(self.issues, source=self.source)


def load_config(source: str | Path | dict[str, Any], registry: Registry) -> NetworkConfig:
    """Read (unless given a dict) and validate a network config against ``registry``."""
    if isinstance(source, dict):
        return validate_config(source, registry)
    raw, where = read_config(source)
    return validate_config(raw, registry, source=where)


def validate_config(
    raw: dict[str, Any], registry: Registry, *, source: str = "<dict>"
) -> NetworkConfig:
    result = validate_document(raw, registry, source=source)
    result.raise_issues()
    assert result.config is not None
    return result.config


def validate_document(raw: Any, registry: Registry, *, source: str = "<dict>") -> Validated:
    """Both stages on a parsed document, collecting every issue (never raising for one)."""
    result = Validated(source)
    if not isinstance(raw, dict):
        result.issues.append(ConfigIssue("", "the top level must be a table/object"))
        return result
    try:
        check_depth(raw, source)
        sections = Sections.model_validate(raw)
    except ConfigError as exc:
        result.issues.extend(exc.issues)
        return result
    except ValidationError as exc:
        result.issues.extend(pydantic_issues(exc, ""))
        return result

    issues = result.issues
    model, found = validate_settings(ModelSection, sections.model, "model")
    issues.extend(found)
    if model is not None:
        if any(d < 1 for d in model.input_shape):
            issues.append(ConfigIssue("model.input_shape", (
                f"every dimension must be at least 1, received {model.input_shape}"
            )))
        else:
            result.input_shape = tuple(model.input_shape)
        before = len(issues)
        result.nodes = _validate_nodes(model.layers, registry, issues)
        result.all_nodes_valid = len(issues) == before and result.input_shape is not None
    loss = _validate_plugin("loss", sections.loss, registry, issues)
    optimizer = _validate_plugin("optimizer", sections.optimizer, registry, issues)
    training, found = validate_settings(TrainingConfig, sections.training, "training")
    result.training = training
    issues.extend(found)
    schedule = schedule_of(training, sections.training)
    if schedule is not None and optimizer is not None:
        issues.extend(cross_section_issues(schedule, optimizer.config))
    if not issues:
        result.config = NetworkConfig(result.input_shape, tuple(result.nodes), loss, optimizer,
                                      training, source)
    return result


def _validate_nodes(
    tables: list[dict[str, Any]], registry: Registry, issues: list[ConfigIssue]
) -> list[NodeConfig]:
    typed: list[tuple[int, NodeKeys, type | None, BaseModel | None]] = []
    for i, table in enumerate(tables):
        label = f"model.layers[{i}]"
        try:
            keys = NodeKeys.model_validate(table)
        except ValidationError as exc:
            issues.extend(pydantic_issues(exc, label))
            continue
        label = f"{label} ({keys.type})"
        if keys.type not in registry.layers:
            issues.append(ConfigIssue(f"{label}.type", registry.unknown_message("layer",
                                                                                keys.type)))
            typed.append((i, keys, None, None))
            continue
        entry = registry.entry("layer", keys.type)
        settings = {k: v for k, v in table.items() if k not in ("type", "name", "inputs")}
        typed.append((i, keys, entry.cls, _plugin_settings(entry, settings, label, issues)))

    # Names: explicit ones kept, the rest numbered per type as Keras does (conv2d_1, ...).
    names: dict[str, int] = {}
    counters: dict[str, int] = {}
    resolved: list[tuple[int, NodeKeys, type | None, BaseModel | None, str]] = []
    explicit = {keys.name for _, keys, _, _ in typed if keys.name}
    for i, keys, cls, config in typed:
        name = keys.name
        if name is None:
            counters[keys.type] = counters.get(keys.type, 0) + 1
            name = f"{keys.type}_{counters[keys.type]}"
            while name in explicit:
                counters[keys.type] += 1
                name = f"{keys.type}_{counters[keys.type]}"
        label = f"model.layers[{i}] ({keys.type})"
        if name == INPUT:
            issues.append(ConfigIssue(f"{label}.name",
                                      f"{INPUT!r} is reserved for the network input; rename it"))
        elif name in names:
            issues.append(ConfigIssue(f"{label}.name", (
                f"name {name!r} is already used by model.layers[{names[name]}]; "
                "layer names must be unique"
            )))
        names[name] = i
        resolved.append((i, keys, cls, config, name))

    nodes: list[NodeConfig] = []
    previous = INPUT
    for i, keys, cls, config, name in resolved:
        label = f"model.layers[{i}] ({keys.type})"
        inputs = tuple(keys.inputs) if keys.inputs is not None else (previous,)
        previous = name
        for j, ref in enumerate(inputs):
            if ref != INPUT and ref not in names:
                known = [INPUT, *(n for n in names if n != name)]
                close = difflib.get_close_matches(ref, known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                issues.append(ConfigIssue(f"{label}.inputs[{j}]", (
                    f"no layer named {ref!r}; {hint}the layers are: {', '.join(known)}"
                )))
            elif ref == name:
                issues.append(ConfigIssue(f"{label}.inputs[{j}]",
                                          "a layer cannot be its own input"))
        if cls is not None:
            multi = cls.traits.multi_input
            if multi and len(inputs) < 2:
                issues.append(ConfigIssue(f"{label}.inputs", (
                    f"{keys.type} merges two or more inputs, received {list(inputs)}; "
                    "list the layers to merge, e.g. inputs = [\"conv2d_1\", \"relu_2\"]"
                )))
            elif not multi and len(inputs) != 1:
                issues.append(ConfigIssue(f"{label}.inputs", (
                    f"{keys.type} takes one input, received {len(inputs)}: {list(inputs)}; "
                    "merge them first with a layer such as add"
                )))
        if cls is not None and config is not None:
            nodes.append(NodeConfig(i, keys.type, name, inputs, config))
    if not issues:
        issues.extend(graph_issues(nodes))
    return nodes


def _validate_plugin(
    kind: str, table: dict[str, Any], registry: Registry, issues: list[ConfigIssue]
) -> PluginConfig | None:
    kind_type = table.get("type")
    if not isinstance(kind_type, str):
        issues.append(ConfigIssue(f"{kind}.type", (
            f"missing or not a string (received {type(kind_type).__name__}); known {kind} "
            f"types: {', '.join(sorted(registry.table(kind)))}"
        )))
        return None
    if kind_type not in registry.table(kind):
        issues.append(ConfigIssue(f"{kind}.type", registry.unknown_message(kind, kind_type)))
        return None
    entry = registry.entry(kind, kind_type)
    settings = {k: v for k, v in table.items() if k != "type"}
    config = _plugin_settings(entry, settings, f"{kind} ({kind_type})", issues)
    return PluginConfig(kind_type, config) if config is not None else None


def _plugin_settings(entry: Entry, settings: dict[str, Any], label: str,
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
