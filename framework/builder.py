"""Networks from Python: the same config a CLI user writes, built in code and checked at
each call.

``lamina.layers.conv2d(...)`` (or ``lamina.layers("conv2d", ...)``, :data:`layers`) makes
a *spec*: a layer table (a type and its settings), validated at once by the plugin's own
``Config``, so that a mistake is raised at the line that made it. A spec is data, never
a built layer: :class:`Sequential` lists specs and produces the config document a TOML
file holds (:meth:`Sequential.to_dict`, :meth:`Sequential.to_toml`), validated as a
whole when it is made. The config stays the single source of truth: ``lamina.Model(seq)``
trains exactly what ``lamina train`` trains from ``seq.to_toml("net.toml")``.

Layers are named by the validator, per type and in order (``conv2d_1``), exactly as in
a file; ``name=`` keeps a name of your own. Inserting a layer renumbers the later
layers of its type, so give ``name=`` to layers whose weights you carry over, or that
``inputs=`` refers to.

A type is a registered plugin's name (a layer or a block), or a plugin class defined
where you work (``lamina.layers(Swish, beta=2.0)``): ``Sequential.plugins`` then lists
the class, and ``lamina.Model(seq)`` registers it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, PluginError, UnknownPluginError
from .registry import Registry, load_registry


@dataclass(frozen=True)
class LayerSpec:
    """One layer table: ``type``, the settings given (validated), an optional ``name``
    and ``inputs``, and the local plugin class when one was given."""

    type: str
    settings: dict[str, Any]
    name: str | None = None
    inputs: tuple[str, ...] | None = None
    plugin: type | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        table: dict[str, Any] = {"type": self.type}
        if self.name is not None:
            table["name"] = self.name
        if self.inputs is not None:
            table["inputs"] = list(self.inputs)
        return {**table, **self.settings}

    def __repr__(self) -> str:
        args = [f"{k}={v!r}" for k, v in self.settings.items()]
        args += [f"name={self.name!r}"] if self.name is not None else []
        args += [f"inputs={list(self.inputs)!r}"] if self.inputs is not None else []
        if self.plugin is not None:  # a class defined where you work
            return f"lamina.layers({', '.join([self.plugin.__qualname__, *args])})"
        return f"lamina.layers.{self.type}({', '.join(args)})"


class _Specs:
    """``lamina.layers``: a spec factory for every registered layer and block type,
    ``lamina.layers.conv2d(filters=32, kernel_size=3)``, or called with a type name or a
    local plugin class, ``lamina.layers(Swish, beta=2.0)``. The installed plugins are
    read on first use; :meth:`refresh` reads them again (after installing one)."""

    def __init__(self) -> None:
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = load_registry()
        return self._registry

    def refresh(self) -> None:
        """Read the installed plugins again."""
        self._registry = None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        registry = self.registry
        if name not in registry.layers and name not in registry.blocks:
            known = {**registry.layers, **registry.blocks}
            raise AttributeError(registry.unknown_message("layer", name, known).replace(
                "known layer types", "known layer and block types", 1))

        def make(**settings: Any) -> LayerSpec:
            return make_spec(name, registry=registry, **settings)

        make.__name__ = make.__qualname__ = name
        make.__doc__ = _describe(registry, name)
        return make

    def __call__(self, kind: str | type, /, **settings: Any) -> LayerSpec:
        """``lamina.layers("conv2d", filters=32)`` for any type, or ``lamina.layers(Swish,
        beta=2.0)`` for a plugin class defined where you work."""
        return make_spec(kind, registry=None if isinstance(kind, type) else self.registry,
                         **settings)

    def __dir__(self) -> list[str]:
        return sorted({*self.registry.layers, *self.registry.blocks, "refresh", "registry"})

    def __repr__(self) -> str:
        return ("<lamina.layers: lamina.layers.<type>(...) or lamina.layers(type_or_class, "
                "...) make a layer spec; dir() lists the types>")


layers = _Specs()


def make_spec(kind: str | type, /, *, name: str | None = None,
              inputs: Sequence[str] | None = None, registry: Registry | None = None,
              **settings: Any) -> LayerSpec:
    """A layer table for ``kind`` (a registered layer or block type, or a plugin class
    defined where you work) with ``settings``, checked now by the plugin's own
    ``Config`` as a config file's are: every mistake is one ConfigError."""
    from .config.nodes import plugin_settings
    from .config.strict import validate_settings
    from .localplugins import local_provider, plugin_kind, qualified_name
    from .plugin_classes import validate_class
    from .registry import Entry

    plugin = None
    settings = {key: _plain(value) for key, value in settings.items()}
    if isinstance(inputs, str):
        from .inputs import InputError

        raise InputError(f"inputs is a list of layer names, received the string {inputs!r}; "
                         f"write inputs=[{inputs!r}]")
    if isinstance(kind, type):
        found = plugin_kind(kind)
        if found not in ("layer", "block"):
            raise PluginError(f"lamina.layers() takes a layer or block class or type name, "
                              f"received the {found or 'non-plugin'} class {kind.__qualname__}")
        validate_class(found, kind)  # as it will be when the network is built
        plugin, type_name = kind, kind.name
        entry = Entry(found, kind.name, kind, local_provider(kind.__module__,
                                                              qualified_name(kind)))
    elif isinstance(kind, str):
        registry = registry if registry is not None else layers.registry
        type_name = kind
        entry = registry.layers.get(kind) or registry.blocks.get(kind)
        if entry is None:
            known = {**registry.layers, **registry.blocks}
            raise UnknownPluginError(registry.unknown_message("layer", kind, known).replace(
                "known layer types", "known layer and block types", 1))
    else:
        from .layer import Layer

        built = " (a built layer's arrays would be ignored: pass its class)" \
            if isinstance(kind, Layer) else ""
        raise PluginError(f"lamina.layers() takes a type name or a plugin class, received "
                          f"{type(kind).__name__}{built}")
    where = f"lamina.layers.{type_name}(...)"
    issues: list = []
    if name is not None or inputs is not None:
        from .config.schema import NodeKeys

        _, found_issues = validate_settings(NodeKeys, {"type": type_name, **(
            {"name": name} if name is not None else {}), **(
            {"inputs": list(inputs)} if inputs is not None else {})}, type_name)
        issues += found_issues
    plugin_settings(entry, settings, type_name, issues)
    if issues:
        raise ConfigError(issues, source=where)
    return LayerSpec(type_name, dict(settings), name,
                     tuple(inputs) if inputs is not None else None, plugin)


class Sequential:
    """A network in code: ``input_shape`` (per sample) and ``layers`` (specs, in order;
    ``inputs=`` on a spec makes a DAG), with a loss, an optimizer and training settings
    as a config file has them (a type name or a table; ``training`` a table). Checked
    as a whole (structure, settings, shapes) when made; :meth:`to_dict` is the config
    document, :meth:`to_toml` its file.

    ``blocks`` defines config blocks by name, as a file's ``[blocks]`` section does; a
    use of one is a table in ``layers`` (``{"type": "conv_bn_relu", "filters": 32}``),
    checked with the rest when the Sequential is made."""

    def __init__(self, input_shape: Sequence[int], layers: Sequence[LayerSpec], *,
                 loss: str | dict[str, Any] | type = "softmax_cross_entropy",
                 optimizer: str | dict[str, Any] | type = "adam",
                 training: dict[str, Any] | None = None,
                 blocks: dict[str, Any] | None = None):
        from .inputs import InputError
        from .plan import make_plan

        if isinstance(layers, LayerSpec | dict | str) or not isinstance(layers, Iterable):
            raise InputError(f"layers must be a list of specs, received {type(layers).__name__}"
                             "; write layers=[lamina.layers.dense(units=10), ...]")
        layers = list(layers)  # a generator is read once
        if not isinstance(input_shape, Iterable) or isinstance(input_shape, str | bytes):
            raise InputError(f"input_shape is the shape of one sample, a tuple of ints such "
                             f"as (1, 28, 28), received {input_shape!r}; write "
                             f"input_shape=({input_shape!r},) for a vector")
        input_shape = [_plain(d) for d in input_shape]
        if not all(isinstance(s, LayerSpec | dict) for s in layers):
            raise InputError("layers must be a list of specs: lamina.layers.conv2d(...), "
                              "lamina.layers(\"conv2d\", ...) or lamina.layers(MyLayer, ...) (or "
                              "tables, {\"type\": \"my_block\", ...}, for the blocks defined here)")
        self._given = {"layers": layers, "loss": loss, "optimizer": optimizer,
                       "training": training, "blocks": blocks}  # for repr
        plugins = [s.plugin for s in layers if isinstance(s, LayerSpec) and s.plugin is not None]
        sections = {}
        for key, value in (("loss", loss), ("optimizer", optimizer)):
            if isinstance(value, type):
                plugins.append(value)
                value = {"type": getattr(value, "name", value.__qualname__)}
            sections[key] = {"type": value} if isinstance(value, str) else dict(value)
        self.plugins: tuple[type, ...] = tuple(dict.fromkeys(plugins))
        self._document: dict[str, Any] = {
            "model": {"input_shape": list(input_shape),
                      "layers": [s.to_dict() if isinstance(s, LayerSpec) else dict(s)
                                 for s in layers]},
            **sections,
        }
        if training:
            self._document["training"] = dict(training)
        if blocks:
            self._document["blocks"] = dict(blocks)
        try:
            self.plan = make_plan(self.to_dict(), load_registry(plugins=list(self.plugins)))
        except ConfigError as exc:
            raise ConfigError(exc.issues, source="lamina.Sequential(...)") from None

    @property
    def config(self):
        """The resolved config (every default filled in, every layer named)."""
        return self.plan.config

    def to_dict(self) -> dict[str, Any]:
        """The config document, as written (a fresh copy): what a TOML file holds."""
        import copy

        return copy.deepcopy(self._document)

    def to_toml(self, path: str | Path | None = None, *, overwrite: bool = False) -> str:
        """The config as TOML text; written to ``path`` too when given (an existing file
        only with ``overwrite``)."""
        from .config.toml import dumps

        text = dumps(self.to_dict())
        if path is not None:
            from .inputs import checked_path
            from .training.runs import atomic_write

            path = checked_path(path, "a .toml file's path")
            if path.exists() and not overwrite:
                raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
            atomic_write(path, text.encode("utf-8"))
        return text

    def summary(self, *, expand: bool = False) -> str:
        return self.plan.architecture.summary(expand=expand)

    def __repr__(self) -> str:
        given = self._given
        specs = ",\n    ".join(repr(spec) for spec in given["layers"])
        def shown(value: Any) -> str:
            return value.__qualname__ if isinstance(value, type) else repr(value)

        more = "".join(f", {key}={shown(given[key])}"
                       for key, default in (("loss", "softmax_cross_entropy"),
                                            ("optimizer", "adam"), ("training", None),
                                            ("blocks", None))
                       if given[key] != default)
        return (f"lamina.Sequential(input_shape={tuple(self._document['model']['input_shape'])},"
                f" layers=[\n    {specs},\n]{more})")


def _plain(value: Any) -> Any:
    """A setting as JSON holds it: a NumPy number as the Python number it equals (a spec
    is written out as a config file), a tuple as a list."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _describe(registry: Registry, name: str) -> str:
    """The docstring of ``lamina.layers.<name>``: its settings, from its Config."""
    entry = registry.layers.get(name) or registry.blocks[name]
    fields = entry.cls.Config.model_fields
    lines = [f"A spec for a {name} {entry.kind} ({entry.provider}): "
             f"{(entry.cls.__doc__ or '').strip().splitlines()[0] if entry.cls.__doc__ else ''}",
             "", "Settings:"]
    lines += [f"    {key}: {info.description or ''}" + (
        "" if info.is_required() else f" (default {info.default!r})")
        for key, info in fields.items()]
    lines += ["", "Also name= and inputs=, as in a config's layer table."]
    return "\n".join(lines)
