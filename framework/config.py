"""Network configs: read a TOML or JSON file and validate it in two stages.

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
"""

from __future__ import annotations

import difflib
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError, ConfigIssue
from .registry import Registry
from .schedules import ConstantSchedule, ScheduleConfig

INPUT = "input"
MAX_SHARDS = 64  # training.shards: each shard is a replica of the network
SHIPPED_CONFIGS = "configs"


class TrainingConfig(BaseModel):
    """How ``lamina train`` trains the network; every key can be overridden on the CLI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field("mnist", description="named dataset: mnist or fashion-mnist")
    epochs: int = Field(15, ge=1, description="passes over the training set")
    batch_size: int = Field(128, ge=1, description="samples per minibatch")
    seed: int = Field(0, ge=0, description="seeds initialisation, shuffling and dropout")
    validation_split: float = Field(
        0.1, ge=0.0, lt=1.0, description="fraction of the training set held out for validation"
    )
    schedule: ScheduleConfig = Field(
        default_factory=ConstantSchedule, description="learning-rate schedule"
    )
    limit: int | None = Field(
        None, ge=1, description="train on the first N training samples only (quick runs)"
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="stop after this many epochs without a better validation loss"
    )
    shards: int | None = Field(
        None, ge=1, le=MAX_SHARDS,
        description="split each batch into this many slices run on parallel threads "
        "(lamina.parallel); default 2, or 1 for a network with batch-dependent layers",
    )


class _Sections(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: dict[str, Any]
    loss: dict[str, Any] = Field(default_factory=lambda: {"type": "softmax_cross_entropy"})
    optimizer: dict[str, Any] = Field(default_factory=lambda: {"type": "adam"})
    training: dict[str, Any] = Field(default_factory=dict)


class _ModelSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_shape: list[int] = Field(min_length=1)
    layers: list[dict[str, Any]] = Field(min_length=1)


class _NodeKeys(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    inputs: list[str] | None = Field(None, min_length=1)


@dataclass(frozen=True)
class NodeConfig:
    """One validated layer of the network."""

    index: int
    type: str
    name: str
    inputs: tuple[str, ...]
    config: BaseModel

    @property
    def path(self) -> str:
        return f"model.layers[{self.index}] ({self.type})"

    def to_dict(self, explicit_inputs: bool) -> dict[str, Any]:
        table: dict[str, Any] = {"type": self.type, "name": self.name}
        if explicit_inputs:
            table["inputs"] = list(self.inputs)
        table.update(self.config.model_dump(mode="json"))
        return table


@dataclass(frozen=True)
class PluginConfig:
    """The validated loss or optimizer section."""

    type: str
    config: BaseModel

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.config.model_dump(mode="json")}


@dataclass(frozen=True)
class NetworkConfig:
    """A fully validated config: every plugin config is an instance of its model."""

    input_shape: tuple[int, ...]
    nodes: tuple[NodeConfig, ...]
    loss: PluginConfig
    optimizer: PluginConfig
    training: TrainingConfig
    source: str = "<dict>"

    @property
    def output(self) -> str:
        return self.nodes[-1].name

    def is_sequential(self) -> bool:
        previous = INPUT
        for node in self.nodes:
            if node.inputs != (previous,):
                return False
            previous = node.name
        return True

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, every default filled in; loads back to an equal config."""
        explicit = not self.is_sequential()
        return {
            "model": {
                "input_shape": list(self.input_shape),
                "layers": [node.to_dict(explicit) for node in self.nodes],
            },
            "loss": self.loss.to_dict(),
            "optimizer": self.optimizer.to_dict(),
            "training": self.training.model_dump(mode="json"),
        }

    def with_training(self, **overrides: Any) -> NetworkConfig:
        """A copy with some training settings replaced (validated like the file's)."""
        merged = {**self.training.model_dump(), **overrides}
        try:
            training = TrainingConfig.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(_pydantic_issues(exc, "training"), source=self.source) from exc
        return NetworkConfig(self.input_shape, self.nodes, self.loss, self.optimizer,
                             training, self.source)


# -- reading files --------------------------------------------------------------------
def shipped_configs() -> list[str]:
    """Names of the configs that ship inside the package (``mnist_cnn``, ...)."""
    folder = resources.files("lamina") / SHIPPED_CONFIGS
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir()
                  if p.name.endswith((".toml", ".json")))


def read_config(source: str | Path) -> tuple[dict[str, Any], str]:
    """Parse a config file, or a shipped config by name; returns (raw dict, where from)."""
    path = Path(source)
    if not path.exists() and isinstance(source, str) and "/" not in source:
        folder = resources.files("lamina") / SHIPPED_CONFIGS
        for suffix in (".toml", ".json"):
            candidate = folder / f"{source}{suffix}"
            if candidate.is_file():
                return _parse(candidate.read_text(encoding="utf-8"), suffix, source)
    if not path.exists():
        raise ConfigError([ConfigIssue("", (
            f"no config file {str(source)!r} and no shipped config of that name; give a path "
            f"to a .toml or .json file, or one of: {', '.join(shipped_configs())}"
        ))])
    if path.is_dir():
        raise ConfigError([ConfigIssue("", f"{path} is a directory; give a .toml or .json file")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue("", f"cannot read {path}: {exc}")]) from exc
    return _parse(text, path.suffix.lower(), str(path))


def _parse(text: str, suffix: str, where: str) -> tuple[dict[str, Any], str]:
    try:
        if suffix == ".json":
            raw = json.loads(text)
        elif suffix == ".toml":
            raw = tomllib.loads(text)
        else:
            raise ConfigError([ConfigIssue("", (
                f"unsupported config format {suffix or '(no suffix)'!r}; use .toml or .json"
            ))], source=where)
    except json.JSONDecodeError as exc:
        raise ConfigError([ConfigIssue(f"line {exc.lineno}, column {exc.colno}",
                                       f"invalid JSON: {exc.msg}")], source=where) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigIssue("", f"invalid TOML: {exc}")], source=where) from exc
    if not isinstance(raw, dict):
        raise ConfigError([ConfigIssue("", "the top level must be a table/object")], source=where)
    return raw, where


def load_config(source: str | Path | dict[str, Any], registry: Registry) -> NetworkConfig:
    """Read (unless given a dict) and validate a network config against ``registry``."""
    if isinstance(source, dict):
        return validate_config(source, registry)
    raw, where = read_config(source)
    return validate_config(raw, registry, source=where)


# -- validation -----------------------------------------------------------------------
def validate_config(
    raw: dict[str, Any], registry: Registry, *, source: str = "<dict>"
) -> NetworkConfig:
    issues: list[ConfigIssue] = []
    try:
        sections = _Sections.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_pydantic_issues(exc, ""), source=source) from exc

    try:
        model = _ModelSection.model_validate(sections.model)
    except ValidationError as exc:
        raise ConfigError(_pydantic_issues(exc, "model"), source=source) from exc
    if any(d < 1 for d in model.input_shape):
        issues.append(ConfigIssue("model.input_shape", (
            f"every dimension must be at least 1, received {model.input_shape}"
        )))

    nodes = _validate_nodes(model.layers, registry, issues)
    loss = _validate_plugin("loss", sections.loss, registry, issues)
    optimizer = _validate_plugin("optimizer", sections.optimizer, registry, issues)
    try:
        training = TrainingConfig.model_validate(sections.training)
    except ValidationError as exc:
        issues.extend(_pydantic_issues(exc, "training"))
        training = None
    if issues:
        raise ConfigError(issues, source=source)
    return NetworkConfig(tuple(model.input_shape), tuple(nodes), loss, optimizer, training,
                         source)


def _validate_nodes(
    tables: list[dict[str, Any]], registry: Registry, issues: list[ConfigIssue]
) -> list[NodeConfig]:
    typed: list[tuple[int, _NodeKeys, type | None, BaseModel | None]] = []
    for i, table in enumerate(tables):
        label = f"model.layers[{i}]"
        try:
            keys = _NodeKeys.model_validate(table)
        except ValidationError as exc:
            issues.extend(_pydantic_issues(exc, label))
            continue
        label = f"{label} ({keys.type})"
        if keys.type not in registry.layers:
            issues.append(ConfigIssue(f"{label}.type", registry.unknown_message("layer",
                                                                                keys.type)))
            typed.append((i, keys, None, None))
            continue
        cls = registry.layer(keys.type)
        settings = {k: v for k, v in table.items() if k not in ("type", "name", "inputs")}
        try:
            config = cls.Config.model_validate(settings)
        except ValidationError as exc:
            issues.extend(_pydantic_issues(exc, label, cls.Config))
            config = None
        typed.append((i, keys, cls, config))

    # Names: explicit ones kept, the rest numbered per type as Keras does (conv2d_1, ...).
    names: dict[str, int] = {}
    counters: dict[str, int] = {}
    resolved: list[tuple[int, _NodeKeys, type | None, BaseModel | None, str]] = []
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
        _check_acyclic_and_used(nodes, issues)
    return nodes


def _check_acyclic_and_used(nodes: list[NodeConfig], issues: list[ConfigIssue]) -> None:
    consumers = {INPUT: 0, **{n.name: 0 for n in nodes}}
    for node in nodes:
        for ref in node.inputs:
            consumers[ref] += 1
    for node in nodes[:-1]:
        if consumers[node.name] == 0:
            issues.append(ConfigIssue(f"{node.path}", (
                f"the output of {node.name!r} is used by no layer; only the last layer may be "
                "unused (it is the network's output): list it in a later layer's inputs "
                "or remove it"
            )))
    try:
        topological_order(nodes)
    except ValueError as exc:
        issues.append(ConfigIssue("model.layers", str(exc)))


def topological_order(nodes: list[NodeConfig] | tuple[NodeConfig, ...]) -> list[NodeConfig]:
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


def _validate_plugin(
    kind: str, table: dict[str, Any], registry: Registry, issues: list[ConfigIssue]
) -> PluginConfig | None:
    kind_type = table.get("type")
    if not isinstance(kind_type, str):
        issues.append(ConfigIssue(f"{kind}.type", (
            f"missing or not a string (received {kind_type!r}); known {kind} types: "
            f"{', '.join(sorted(registry.table(kind)))}"
        )))
        return None
    if kind_type not in registry.table(kind):
        issues.append(ConfigIssue(f"{kind}.type", registry.unknown_message(kind, kind_type)))
        return None
    cls = registry.entry(kind, kind_type).cls
    settings = {k: v for k, v in table.items() if k != "type"}
    try:
        return PluginConfig(kind_type, cls.Config.model_validate(settings))
    except ValidationError as exc:
        issues.extend(_pydantic_issues(exc, f"{kind} ({kind_type})", cls.Config))
        return None


def _pydantic_issues(
    exc: ValidationError, prefix: str, model: type[BaseModel] | None = None
) -> list[ConfigIssue]:
    """Turn pydantic's errors into issues with dotted paths and what was received."""
    issues = []
    for err in exc.errors(include_url=False):
        path = prefix
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(err["loc"][-1])
            known = list(model.model_fields) if model is not None else []
            close = [k for k in known if _similar(k, key)]
            hint = f"did you mean {close[0]!r}? " if close else ""
            allowed = f"known keys: {', '.join(known)}" if known else "remove it"
            message = f"unknown key {key!r}; {hint}{allowed}"
        elif kind == "missing":
            message = "required key is missing"
        elif kind == "value_error" and "received" in err["msg"]:
            message = err["msg"].removeprefix("Value error, ")  # the plugin's own words
        else:
            message = f"{err['msg']} (received {err['input']!r})"
        issues.append(ConfigIssue(path, message))
    return issues


def _similar(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.6
