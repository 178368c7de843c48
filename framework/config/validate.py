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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError, ConfigIssue
from ..registry import Registry
from .blocks import config_blocks, plugin_block
from .dag import graph_issues
from .files import check_depth, read_config
from .issues import pydantic_issues
from .nodes import Expansion, plugin_settings
from .run import TrainingConfig, cross_section_issues, schedule_of
from .schema import BlockUse, ModelSection, NetworkConfig, NodeConfig, PluginConfig, Sections
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
    uses: tuple[BlockUse, ...] = ()
    definitions: dict[str, Any] = field(default_factory=dict)
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
    before = len(issues)
    blocks = {name: plugin_block(entry) for name, entry in registry.blocks.items()}
    defined, broken = config_blocks(
        sections.blocks, lambda name: _provided(registry, name),
        set(registry.layers) | set(registry.blocks), issues)
    blocks |= defined
    model, found = validate_settings(ModelSection, sections.model, "model")
    issues.extend(found)
    if model is not None:
        if any(d < 1 for d in model.input_shape):
            issues.append(ConfigIssue("model.input_shape", (
                f"every dimension must be at least 1, received {model.input_shape}"
            )))
        else:
            result.input_shape = tuple(model.input_shape)
        expansion = Expansion(registry, blocks, issues, broken)
        result.nodes = expansion.layers(model.layers)
        result.uses = expansion.ordered_uses(result.nodes)
        result.definitions = expansion.definitions
        if len(issues) == before:
            issues.extend(graph_issues(result.nodes))
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
                                      training, source, result.uses, result.definitions)
    return result


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
    config = plugin_settings(entry, settings, f"{kind} ({kind_type})", issues)
    return PluginConfig(kind_type, config) if config is not None else None


def _provided(registry: Registry, name: str) -> str | None:
    """What already provides a layer type ``name``, for a config block of that name."""
    for kind in ("layer", "block"):
        if name in registry.table(kind):
            entry = registry.table(kind)[name]
            return f"name of the {kind} plugin {entry.provider.module} ({entry.provider})"
    return None
