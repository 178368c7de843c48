"""Plugin discovery: built-in modules and the ``lamina`` entry-point group.

:func:`load_registry` builds a fresh pluggy manager (there is no global one),
registers the built-in plugin modules listed in :data:`BUILTIN_PLUGINS` and then
every third-party plugin advertised in the ``lamina`` entry-point group, calls
the ``lamina_register_*`` hooks of each plugin separately (so that every class
is attributed to the distribution that provided it), validates every class and
returns a :class:`Registry`.

A third-party plugin that fails to import, to call its hooks or to validate is
recorded in :attr:`Registry.problems` with its distribution name and version and
skipped as a whole, while the others keep working; ``strict=True`` (or
``LAMINA_STRICT_PLUGINS=1``) makes that fatal. A name provided twice is always
an error naming both providers: lamina never renames a plugin silently.
``LAMINA_DISABLE_PLUGIN_AUTOLOAD=1`` skips the entry points altogether.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownPluginError
from .hookspecs import HOOKS, KINDS
from .plugin_classes import validate_class
from .providers import Provider

#: The built-in plugins, loaded exactly like third-party ones but from this tuple.
#: This is the only place where the core names the ``lamina.plugins`` package.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "lamina.plugins.conv2d",
    "lamina.plugins.relu",
    "lamina.plugins.leaky_relu",
    "lamina.plugins.elu",
    "lamina.plugins.gelu",
    "lamina.plugins.sigmoid",
    "lamina.plugins.tanh",
    "lamina.plugins.softmax",
    "lamina.plugins.maxpool2d",
    "lamina.plugins.avgpool2d",
    "lamina.plugins.global_avgpool2d",
    "lamina.plugins.global_maxpool2d",
    "lamina.plugins.flatten",
    "lamina.plugins.dropout",
    "lamina.plugins.dense",
    "lamina.plugins.batchnorm",
    "lamina.plugins.add",
    "lamina.plugins.layernorm",
    "lamina.plugins.reshape",
    "lamina.plugins.concat",
    "lamina.plugins.residual",
    "lamina.plugins.softmax_cross_entropy",
    "lamina.plugins.mse",
    "lamina.plugins.binary_cross_entropy",
    "lamina.plugins.sgd",
    "lamina.plugins.adam",
    "lamina.plugins.rmsprop",
    "lamina.plugins.adagrad",
)

ENTRY_POINT_GROUP = "lamina"
DISABLE_AUTOLOAD_ENV = "LAMINA_DISABLE_PLUGIN_AUTOLOAD"
STRICT_ENV = "LAMINA_STRICT_PLUGINS"



@dataclass(frozen=True)
class Entry:
    """One registered class and its provenance."""

    kind: str
    name: str
    cls: type
    provider: Provider

    @property
    def who(self) -> str:
        """The plugin as messages name it: "the adam optimizer plugin
        (lamina.plugins.adam, from lamina 0.1.0)"."""
        return f"the {self.name} {self.kind} plugin ({self.provider.module}, from {self.provider})"


@dataclass(frozen=True)
class PluginProblem:
    """A third-party plugin that was skipped, and why."""

    provider: Provider
    reason: str

    def __str__(self) -> str:
        return (
            f"plugin {self.provider.module!r} from {self.provider} was skipped: {self.reason}"
        )


@dataclass
class Registry:
    """Every layer, loss, optimizer and block class that the loaded plugins provide."""

    layers: dict[str, Entry] = field(default_factory=dict)
    losses: dict[str, Entry] = field(default_factory=dict)
    optimizers: dict[str, Entry] = field(default_factory=dict)
    blocks: dict[str, Entry] = field(default_factory=dict)
    problems: list[PluginProblem] = field(default_factory=list)

    def table(self, kind: str) -> dict[str, Entry]:
        return {"layer": self.layers, "loss": self.losses, "optimizer": self.optimizers,
                "block": self.blocks}[kind]

    def entry(self, kind: str, name: str) -> Entry:
        """The entry for ``name``; an unknown name lists the known ones with a did-you-mean."""
        table = self.table(kind)
        if name in table:
            return table[name]
        raise UnknownPluginError(self.unknown_message(kind, name))

    def unknown_message(self, kind: str, name: Any, known: dict[str, Any] | None = None) -> str:
        """Why ``name`` is not a registered ``kind``: the ``known`` names (by default the
        kind's table) with a did-you-mean and, when an installed distribution holds such a
        plugin, why it is not loaded."""
        message = unknown_name_message(kind, name, self.table(kind) if known is None else known)
        from .installed import unregistered_plugin_hint  # reads files: only on this path

        skipped = {p.provider.dist: p.reason for p in self.problems}
        hint = unregistered_plugin_hint(kind, str(name), skipped)
        return f"{message}. Note: {hint}" if hint else message

    def layer(self, name: str) -> type:
        return self.entry("layer", name).cls

    def loss(self, name: str) -> type:
        return self.entry("loss", name).cls

    def optimizer(self, name: str) -> type:
        return self.entry("optimizer", name).cls

    def entries(self) -> list[Entry]:
        return [*self.layers.values(), *self.losses.values(), *self.optimizers.values(),
                *self.blocks.values()]


def unknown_name_message(kind: str, name: Any, known: dict[str, Any]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"unknown {kind} type {name!r}; {hint}known {kind} types: {', '.join(sorted(known))}"
        f" (install the plugin that provides it, pass one defined where you work with "
        f"plugins=[...] in Python or -p FILE.py on the command line, or run `lamina layers` "
        f"to list them)"
    )


def make_plugin_manager() -> pluggy.PluginManager:
    """A new pluggy manager that knows lamina's hookspecs and no plugin yet."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def load_registry(
    *,
    builtins: tuple[str, ...] = BUILTIN_PLUGINS,
    load_entry_points: bool | None = None,
    strict: bool | None = None,
    extra_plugins: tuple[tuple[object, Provider], ...] = (),
    plugins: Any = (),
) -> Registry:
    """Discover, validate and register every plugin.

    ``plugins`` adds plugins defined where you work: classes, modules with hooks, or
    module names and ``.py`` paths (:func:`lamina.localplugins.as_plugins`); they are
    validated like installed ones, and any failure of theirs is an error at once.
    ``load_entry_points`` defaults to true unless ``LAMINA_DISABLE_PLUGIN_AUTOLOAD``
    is set; ``strict`` defaults to ``LAMINA_STRICT_PLUGINS``. ``extra_plugins``
    registers plugin objects directly (with the provider to report), for tests and
    for programs that embed lamina.
    """
    from .localplugins import as_plugins

    local = as_plugins(plugins)
    if load_entry_points is None:
        load_entry_points = not _env_flag(DISABLE_AUTOLOAD_ENV)
    if strict is None:
        strict = _env_flag(STRICT_ENV)

    pm = make_plugin_manager()
    registry = Registry()
    providers: dict[str, Provider] = {}
    third_party: set[str] = set()

    from . import __version__

    for module_name in builtins:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        providers[module_name] = Provider("lamina", __version__, module_name)

    def skip(provider: Provider, reason: str, exc: BaseException | None = None) -> None:
        problem = PluginProblem(provider, reason)
        if provider.local:  # asked for by name: the error now, not "unknown type" later
            raise PluginError(f"local plugin {provider.module!r} cannot be used: {reason}") \
                from exc
        if strict:
            raise PluginError(f"{problem} (strict plugin loading is on)") from exc
        registry.problems.append(problem)

    candidates = [*extra_plugins, *local]
    if load_entry_points:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            provider = Provider(
                dist.metadata["Name"] if dist else "<unknown distribution>",
                dist.version if dist else "?",
                f"{ep.name} = {ep.value}",
            )
            try:
                candidates.append((ep.load(), provider))
            except KeyboardInterrupt:
                raise  # the user's Ctrl-C, not the plugin's doing
            except BaseException as exc:  # a broken plugin must not take lamina down,
                # not even with sys.exit() or another BaseException at import
                from .installed import shadowing_hint

                hint = shadowing_hint(ep.value.split(":")[0].strip(), dist)
                skip(provider, f"import failed: {type(exc).__name__}: {exc}{hint}", exc)

    installed = {id(pm.get_plugin(name)): providers[name] for name in builtins}
    installed |= {id(plugin): provider for plugin, provider in candidates
                  if not provider.local}
    for plugin, provider in candidates:
        if provider.local and id(plugin) in installed:
            first = installed[id(plugin)]
            raise PluginError(f"local plugin {provider.module!r} is the module of the "
                              f"installed plugin {first.module} ({first}), which lamina loads "
                              "anyway: leave it out of plugins= / -p")
        # a local plugin's key is unique: a notebook may define two classes of one name
        key = f"{provider.module}@{id(plugin):x}" if provider.local else provider.module
        try:
            pm.register(plugin, name=key)
        except Exception as exc:  # pluggy's own message holds its whole registry: cut it
            skip(provider, f"registration failed: {str(exc)[:160]}", exc)
            continue
        providers[key] = provider
        third_party.add(key)

    # Hook implementations whose name has our prefix but no spec are misspellings.
    for key in list(third_party):
        plugin = pm.get_plugin(key)
        misspelled = [
            attr for attr in dir(plugin)
            if attr.startswith("lamina_") and attr not in HOOKS.values()
            and callable(getattr(plugin, attr, None))
        ]
        if misspelled:
            pm.unregister(plugin)
            third_party.discard(key)
            skip(providers[key], f"unknown hook {misspelled[0]!r}; "
                 f"the hooks are {', '.join(HOOKS.values())}")
    pm.check_pending()

    # Collect each plugin's classes separately so that each is attributed, and a
    # broken third-party plugin is skipped whole rather than half-registered.
    by_plugin: dict[str, list[tuple[str, type]]] = {}
    failed: set[str] = set()
    for kind in KINDS:
        for impl in getattr(pm.hook, HOOKS[kind]).get_hookimpls():
            key = impl.plugin_name
            if key in failed:
                continue
            try:
                classes = impl.function()
                for cls in _as_class_list(classes, HOOKS[kind]):
                    validate_class(kind, cls)
                    by_plugin.setdefault(key, []).append((kind, cls))
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                if key not in third_party:
                    raise PluginError(f"built-in plugin {key!r} is invalid: {exc}") from exc
                failed.add(key)
                by_plugin.pop(key, None)
                skip(providers[key], str(exc), exc)

    for key, items in by_plugin.items():
        for kind, cls in items:
            _add(registry, Entry(kind, cls.name, cls, providers[key]))
    return registry


def _as_class_list(classes: Any, hook: str) -> list[type]:
    if classes is None:
        return []
    if not isinstance(classes, list | tuple):
        raise PluginError(f"{hook}() must return a list of classes, received {classes!r}")
    return list(classes)


def _add(registry: Registry, entry: Entry) -> None:
    table = registry.table(entry.kind)
    # layers and blocks share one namespace: both are a layer table's `type`
    shared = ("layer", "block") if entry.kind in ("layer", "block") else (entry.kind,)
    first = next((registry.table(kind)[entry.name] for kind in shared
                  if entry.name in registry.table(kind)), None)
    if first is not None and first.cls is entry.cls and first.kind == entry.kind:
        return  # one class reached twice (a module and the class itself): one plugin
    if first is not None:
        if entry.provider.local and first.provider.local \
                and first.provider.module == entry.provider.module:
            fix = (f"the code defining {entry.cls.__qualname__} ran twice (a notebook cell run "
                   "again?) and both classes were passed; pass only the newest")
        elif entry.provider.local or first.provider.local:
            fix = "give the local plugin another `name`: plugins never replace each other"
        else:
            fix = ("uninstall one of the two distributions, or ask its author to rename the "
                   "plugin")
        raise PluginError(
            f"{entry.kind} type {entry.name!r} is provided twice: by {first.provider} "
            f"({first.provider.module}"
            + (f", as a {first.kind}" if first.kind != entry.kind else "")
            + f") and by {entry.provider} ({entry.provider.module}); " + fix
        )
    table[entry.name] = entry
