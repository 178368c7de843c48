"""A config checked as a whole, before anything runs or is written.

:func:`make_plan` is the one place where a config becomes something to run: it
validates the document (:mod:`lamina.config`), applies command-line overrides,
infers every layer's shapes and parameter counts without allocating them
(:class:`lamina.graph.Architecture`), bounds what the network would allocate, and
settles the run settings that depend on the network (the shard count). Every
mistake found on the way is reported in one :class:`ConfigError`; ``lamina
validate``, ``summary``, ``train`` and ``bench`` and the Python API all go through it,
so a config that validates is one that trains.

The limits, each a config mistake naming the layer:

- a sample of any layer's output holds at most :data:`MAX_SAMPLE_VALUES` values;
- the network holds at most :data:`MAX_PARAMETERS` parameters and state values;
- a training batch's largest activation, ``batch_size`` times the largest layer
  output, holds at most :data:`MAX_BATCH_VALUES` values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import NetworkConfig, read_config, validate_document
from .config.run import TrainingConfig, resolve_shards
from .errors import ConfigError, ConfigIssue, ShapeError
from .graph import Architecture
from .registry import Registry

#: values in one sample of one layer's output (a 4096 x 4096 image of one channel)
MAX_SAMPLE_VALUES = 1 << 24
#: parameters and state values of a whole network (1 GiB per copy in float32)
MAX_PARAMETERS = 1 << 28
#: values in the largest activation of a training batch (4 GiB in float32)
MAX_BATCH_VALUES = 1 << 30


@dataclass(frozen=True)
class Plan:
    """A checked config, ready to run: ``config`` has every run setting resolved (its
    ``training.shards`` is a number), ``architecture`` its shapes and parameter counts."""

    config: NetworkConfig
    architecture: Architecture


def make_plan(source: str | Path | dict[str, Any] | NetworkConfig, registry: Registry, *,
              training: dict[str, Any] | None = None, lr: float | None = None) -> Plan:
    """Check ``source`` (a file, a shipped config's name, a dict or a validated config) with
    the ``training`` and ``lr`` overrides applied; every mistake in one ConfigError."""
    if isinstance(source, NetworkConfig):
        raw, where = source.to_dict(), source.source
    elif isinstance(source, dict):
        raw, where = source, "<dict>"
    else:
        raw, where = read_config(source)
    raw = _with_overrides(raw, training, lr)
    result = validate_document(raw, registry, source=where)
    issues = list(result.issues)
    architecture = None
    if result.all_nodes_valid:
        partial = _config_for_shapes(result)
        try:
            architecture = Architecture(partial, registry)
        except ShapeError as exc:  # its message starts with the layer's path
            issues.append(ConfigIssue("", str(exc)))
        else:
            training = result.training or TrainingConfig()  # a wrong section is reported
            issues.extend(allocation_issues(architecture, training.batch_size))
    if architecture is not None and result.config is not None:
        shards, issue = resolve_shards(result.config.training.shards, architecture.nodes)
        if issue is not None:
            issues.append(issue)
    if issues:
        raise ConfigError(issues, source=where)
    assert result.config is not None and architecture is not None
    config = result.config.with_training(shards=shards)
    return Plan(config, architecture)


def _with_overrides(raw: Any, training: dict[str, Any] | None, lr: float | None) -> Any:
    """The document with command-line settings put where the file's own would be, so that
    they are validated, and reported, exactly like the file's."""
    if not isinstance(raw, dict) or (not training and lr is None):
        return raw
    raw = dict(raw)
    if training:
        section = raw.get("training", {})
        raw["training"] = {**(section if isinstance(section, dict) else {}), **training}
    if lr is not None:
        section = raw.get("optimizer", {"type": "adam"})
        raw["optimizer"] = {**(section if isinstance(section, dict) else {}), "lr": lr}
    return raw


def _config_for_shapes(result: Any) -> NetworkConfig:
    """A config holding the validated layers, for shape inference even when the loss,
    optimizer or training section has mistakes (those are reported beside)."""
    if result.config is not None:
        return result.config
    return NetworkConfig(result.input_shape, tuple(result.nodes), None, None,  # type: ignore
                         result.training or TrainingConfig(), result.source)


def allocation_issues(architecture: Architecture, batch_size: int) -> list[ConfigIssue]:
    """What the network would allocate, bounded before anything is."""
    issues = []
    largest = 0
    for node in architecture.nodes:
        values = math.prod(node.output_shape)
        largest = max(largest, values)
        if values > MAX_SAMPLE_VALUES:
            issues.append(ConfigIssue(node.config.path, (
                f"{node.name!r} would output {values:,} values per sample "
                f"{node.output_shape}; lamina allows at most {MAX_SAMPLE_VALUES:,}: use "
                "smaller settings (padding, units, filters) or a smaller input"
            )))
    total = architecture.count(trainable=True) + architecture.count(trainable=False)
    if total > MAX_PARAMETERS:
        biggest = max(architecture.nodes, key=lambda n: sum(s.size for s in n.specs.values()))
        most = sum(spec.size for spec in biggest.specs.values())
        issues.append(ConfigIssue(biggest.config.path, (
            f"the network would hold {total:,} parameters, {most:,} of them in "
            f"{biggest.name!r}; lamina allows at most {MAX_PARAMETERS:,}: use fewer units or "
            "filters, or pool before this layer"
        )))
    if not issues and batch_size * largest > MAX_BATCH_VALUES:
        issues.append(ConfigIssue("training.batch_size", (
            f"a batch of {batch_size} would hold {batch_size * largest:,} values in its largest "
            f"activation; lamina allows at most {MAX_BATCH_VALUES:,}: use a batch size of at "
            f"most {MAX_BATCH_VALUES // largest:,}"
        )))
    return issues

