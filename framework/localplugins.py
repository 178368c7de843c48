"""Plugins defined where you work: classes and modules handed to lamina directly.

A layer written in a notebook or a script is used without a package, an entry point or
an install: ``lamina.Model(config, plugins=[Swish])`` in Python, ``lamina train
config.toml -p my_layers.py`` on the command line. :func:`as_plugins` turns what the user
passes into plugin objects for :func:`lamina.registry.load_registry`, which validates
them exactly as it validates an installed plugin, with two differences that serve the
user at the keyboard:

- a local plugin that fails to load or validate is an error at once, whatever
  ``LAMINA_STRICT_PLUGINS`` says (the user asked for it by name; skipping it would only
  defer the error to "unknown layer type");
- its provider is the module that defines it (``__main__ (local)``), and a run trained
  with it records that module (``provenance.json``), so that using the run without it
  says which module to pass again (:mod:`lamina.training.provenance`).

What can be passed, as pytest's ``-p`` and ``plugins=`` accept it: a plugin class (a
layer, loss, optimizer or block), a module (or any object) with ``@lamina.hookimpl``
functions, or a string naming one: a dotted module name to import, or the path of a
``.py`` file to load. Nothing is kept globally: each call builds its own registry, so
running a notebook cell again and building a new model is always safe.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from . import hookspecs
from .config.files import NotARegularFile, open_regular_file
from .errors import PASSED_THROUGH, PluginError
from .hookspecs import HOOKS
from .providers import Provider

#: the largest plugin source file lamina loads (a plugin is code, not data)
MAX_SOURCE_BYTES = 4 << 20
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class LocalPlugin:
    """One plugin class offered to the registry as a plugin object: pluggy finds its
    hook implementation (``lamina_register_<kind>s``) returning the class."""

    def __init__(self, kind: str, cls: type):
        self.kind, self.cls = kind, cls

        def register() -> list[type]:
            return [cls]

        setattr(self, HOOKS[kind], hookspecs.hookimpl(register))

    def __repr__(self) -> str:
        return f"<local {self.kind} plugin {qualified_name(self.cls)}>"


def qualified_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def local_provider(module: str, defines: str) -> Provider:
    """The provider of a plugin from ``module`` (the defining module, shown to users);
    ``defines`` is the class's qualified name, or the module for a module plugin."""
    return Provider(module, "", defines, local=True)


def plugin_kind(cls: type) -> str | None:
    """The kind of a plugin class (by base class, else by the hook methods it has), or
    None when it is none of them."""
    from .block import Block
    from .layer import Layer
    from .loss import Loss
    from .optimizer import Optimizer

    for kind, base in (("layer", Layer), ("loss", Loss), ("optimizer", Optimizer),
                       ("block", Block)):
        if issubclass(cls, base):
            return kind
    for kind, method in (("layer", "build"), ("loss", "predict_proba"),
                         ("optimizer", "load_state_dict"), ("block", "layers")):
        if callable(getattr(cls, method, None)):
            return kind
    return None


def as_plugins(plugins: Iterable[Any] | None, labels: list[str] | None = None
               ) -> tuple[tuple[object, Provider], ...]:
    """What the user passed as ``plugins=`` (or ``-p``), as (plugin object, provider)
    pairs for :func:`lamina.registry.load_registry`; anything that is not a plugin is a
    :class:`PluginError` saying what is expected, naming the item by its ``labels``
    entry (default ``plugins[i]``). The same plugin given twice counts once."""
    if plugins is None:
        return ()
    if isinstance(plugins, str | bytes | type | ModuleType | os.PathLike) or not isinstance(
            plugins, Iterable):
        raise PluginError(f"plugins must be a list (of plugin classes, modules or module "
                          f"names), received {_brief(plugins)}; write plugins=[{_brief(plugins)}]")
    result: list[tuple[object, Provider]] = []
    seen: set[int] = set()
    for i, item in enumerate(plugins):
        where = labels[i] if labels is not None else f"plugins[{i}]"
        if isinstance(item, os.PathLike):
            item = _load_file(Path(item), where)
        elif isinstance(item, str):
            item = import_plugin_module(item, where)
        if id(item) not in seen:
            seen.add(id(item))
            result.append(_one(item, where))
    return tuple(result)


def _one(item: Any, where: str) -> tuple[object, Provider]:
    if isinstance(item, type):
        kind = plugin_kind(item)
        if kind is None:
            raise PluginError(
                f"{where} is the class {qualified_name(item)}, which is not a lamina plugin: "
                "pass a subclass of lamina.Layer, lamina.Loss, lamina.Optimizer or "
                "lamina.Block, or a module with @lamina.hookimpl functions")
        return LocalPlugin(kind, item), local_provider(item.__module__, qualified_name(item))
    if isinstance(item, ModuleType):
        hooks = [name for name in HOOKS.values() if callable(getattr(item, name, None))]
        if not hooks:
            raise PluginError(
                f"{where}: module {item.__name__!r} has none of lamina's hooks "
                f"({', '.join(HOOKS.values())}); add one marked @lamina.hookimpl that "
                "returns its classes, or pass the classes themselves")
        return item, local_provider(item.__name__, item.__name__)
    if plugin_kind(type(item)) is not None and not _has_hooks(item):
        raise PluginError(f"{where} is an instance of {qualified_name(type(item))}; pass the "
                          f"class itself (plugins=[{type(item).__name__}]): lamina makes "
                          "its own instances from each config")
    if _has_hooks(item):  # an object with hook implementations, as pluggy accepts
        module = type(item).__module__
        return item, local_provider(module, qualified_name(type(item)))
    raise PluginError(f"{where} is {_brief(item)}; expected a plugin class, a module with "
                      "@lamina.hookimpl functions, a module's name or the path of a .py file")


def _has_hooks(item: Any) -> bool:
    return any(callable(getattr(item, name, None)) for name in HOOKS.values())


def import_plugin_module(spec: str, where: str = "the plugin") -> ModuleType:
    """The module ``spec`` names: the path of a ``.py`` file (loaded under its file's
    stem), or a dotted module name to import. Whatever the module raises while it is
    imported becomes a PluginError naming it."""
    looks_like_path = spec.endswith(".py") or "/" in spec or os.sep in spec
    if looks_like_path:
        return _load_file(Path(spec), where)
    if not _MODULE_NAME.match(spec):
        raise PluginError(f"{where}: {spec!r} is neither a module name (such as my_layers "
                          "or my_package.layers) nor the path of a .py file")
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and (spec == exc.name or spec.startswith(exc.name + ".")):
            raise PluginError(
                f"{where}: no module named {spec!r} can be imported; to load a file, give "
                f"its path ({spec.replace('.', '/')}.py), or install the package that "
                "provides the module") from None
        raise _import_failed(spec, exc) from exc
    except PASSED_THROUGH:
        raise
    except BaseException as exc:
        raise _import_failed(spec, exc) from exc


def _load_file(path: Path, where: str) -> ModuleType:
    """The module of a ``.py`` file, under its stem, as running it as a script would
    see it: its folder first on ``sys.path``, so that it imports the modules beside it.
    Loaded again when the file has changed since (a notebook that edits its plugin file
    and passes it again gets the new code); ``__lamina_source_sha256__`` is the hash of
    the source that ran."""
    import hashlib

    try:
        info = path.stat()
    except OSError as exc:
        raise PluginError(f"{where}: cannot read {path} ({exc.strerror or exc}); give the "
                          "path of a .py file defining the plugin") from None
    if not stat.S_ISREG(info.st_mode) or path.suffix != ".py":
        raise PluginError(f"{where}: {path} is not a .py file; give the path of the Python "
                          "file that defines the plugin (or an importable module's name)")
    if info.st_size > MAX_SOURCE_BYTES:
        raise PluginError(f"{where}: {path} holds {info.st_size:,} bytes, more than a plugin "
                          f"source file may ({MAX_SOURCE_BYTES:,}); is it the right file?")
    name = path.stem
    if not name.isidentifier():
        raise PluginError(f"{where}: {path.name} cannot be a module's name; rename the file "
                          "to letters, digits and underscores (my_layers.py)")
    resolved = path.resolve()
    try:
        with open_regular_file(resolved) as handle:
            source = handle.read(MAX_SOURCE_BYTES + 1)
    except (OSError, NotARegularFile) as exc:
        raise PluginError(f"{where}: cannot read {path} ({exc}); give the path of a .py "
                          "file defining the plugin") from None
    digest = hashlib.sha256(source).hexdigest()
    loaded = sys.modules.get(name)
    if loaded is not None:
        same_file = getattr(loaded, "__file__", None) and Path(loaded.__file__).resolve() \
            == resolved
        if not same_file:
            raise PluginError(f"{where}: a module named {name!r} is already imported (from "
                              f"{getattr(loaded, '__file__', None) or 'Python itself'}), so "
                              f"{path} cannot be loaded under that name; rename the file")
        if getattr(loaded, "__lamina_source_sha256__", None) == digest:
            return loaded  # the same file, unchanged, already loaded in this process
    else:
        found = _find_module(name)
        if found is not None and found != resolved:
            raise PluginError(f"{where}: a module named {name!r} exists already ({found}); "
                              f"loading {path} under that name would replace it for the "
                              "whole process: rename the file")
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None:
        raise PluginError(f"{where}: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    module.__lamina_source_sha256__ = digest
    folder = str(resolved.parent)
    if folder not in sys.path:  # as running the file as a script would
        sys.path.insert(0, folder)
    previous = sys.modules.get(name)
    sys.modules[name] = module  # classes and pydantic models look their module up here
    try:
        exec(compile(source, str(resolved), "exec"), module.__dict__)
    except PASSED_THROUGH:
        _restore(name, previous)
        raise
    except BaseException as exc:
        _restore(name, previous)
        raise _import_failed(str(path), exc) from exc
    return module


def _restore(name: str, previous: ModuleType | None) -> None:
    if previous is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous


def _find_module(name: str) -> Path | None:
    """Where Python would import top-level module ``name`` from (None: nowhere, or a
    built-in without a file)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    origin = spec.origin if spec.origin not in (None, "built-in", "frozen") else None
    if origin is None:
        return Path(f"<{spec.origin or 'built-in'} module {name}>")
    return Path(origin).resolve()


def _import_failed(what: str, exc: BaseException) -> PluginError:
    at = ""
    tb = exc.__traceback__
    while tb is not None:  # the line of the plugin's own code that raised
        at = f" (line {tb.tb_lineno} of {tb.tb_frame.f_code.co_filename})"
        tb = tb.tb_next
    return PluginError(f"plugin {what} failed to import: {type(exc).__name__}: {exc}{at}; "
                       "fix the module and run the command again")


def source_fingerprint(cls: type) -> dict[str, Any]:
    """Where a local plugin's class is written: its file and the SHA-256 of its source,
    when Python can find them (a class typed into an interactive prompt has neither)."""
    import hashlib

    record: dict[str, Any] = {"class": qualified_name(cls), "file": None,
                              "source_sha256": None}
    module = sys.modules.get(cls.__module__)
    ran = getattr(module, "__lamina_source_sha256__", None)
    if ran is not None:  # a file given with -p or plugins=: the hash of what was executed
        record["file"], record["source_sha256"] = getattr(module, "__file__", None), ran
        record["hash_of"] = "file"
        return record
    try:
        record["file"] = inspect.getsourcefile(cls)
        record["source_sha256"] = hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()
        record["hash_of"] = "class"
    except (OSError, TypeError):
        pass
    return record


def _brief(value: Any) -> str:
    text = value.__name__ if isinstance(value, type | ModuleType) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
