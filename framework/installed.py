"""What is installed but not loaded: the hints lamina gives plugin authors.

Two mistakes make a plugin invisible though its code is installed, and each gets a
message saying exactly that instead of only a did-you-mean:

- :func:`unregistered_plugin_hint`: a class whose ``name`` is the missing type lives
  in a distribution that depends on lamina, but no entry point of the ``lamina``
  group loads its module: the entry point was never declared, names another module,
  or was added to ``pyproject.toml`` without reinstalling (the installed metadata is
  what Python reads);
- :func:`shadowing_hint`: an entry point's module failed to import because its
  top-level package was found somewhere else first, typically a folder of the same
  name (``plugins/``) in the working directory.

Both read files and metadata only when something already went wrong, never on the
way to a working command; neither imports a plugin.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from collections.abc import Iterator
from importlib import metadata, util
from pathlib import Path
from urllib.parse import unquote, urlparse

GROUP = "lamina"
#: bounds of the source scan, so that a hint never costs more than a moment
MAX_FILES = 2000
MAX_BYTES = 1_000_000
_SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "__pycache__", "node_modules", ".tox"}


def _plugin_distributions() -> Iterator[metadata.Distribution]:
    """Installed distributions that depend on lamina or declare lamina entry points, each
    once (the first on sys.path wins, as for entry points)."""
    seen = set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name or name in seen or name == "lamina":
            continue
        seen.add(name)
        depends = any(re.match(r"lamina(\W|$)", req.strip(), re.IGNORECASE)
                      for req in dist.requires or [])
        if depends or any(ep.group == GROUP for ep in dist.entry_points):
            yield dist


def _editable_root(dist: metadata.Distribution) -> Path | None:
    """The project folder of an editable install (pip's direct_url.json), if it is one."""
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except (OSError, ValueError):
        return None
    if not info.get("dir_info", {}).get("editable"):
        return None
    url = urlparse(info.get("url", ""))
    return Path(unquote(url.path)) if url.scheme == "file" else None


def _sources(dist: metadata.Distribution) -> Iterator[Path]:
    """The Python files a distribution installed, or its project's for an editable one."""
    root = _editable_root(dist)
    if root is not None:
        candidates = (p for p in root.rglob("*.py")
                      if not _SKIP_DIRS & set(p.relative_to(root).parts))
    else:
        candidates = (Path(dist.locate_file(f)) for f in dist.files or []
                      if str(f).endswith(".py"))
    yield from itertools.islice(candidates, MAX_FILES)


def _module_of(path: Path) -> str:
    """The dotted module name of a source file, from its enclosing regular packages."""
    parts = [path.stem] if path.stem != "__init__" else []
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def _defines(path: Path, name: str) -> bool:
    try:
        if path.stat().st_size > MAX_BYTES:
            return False
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    pattern = rf"^\s+name\s*(:[^=\n]*)?=\s*['\"]{re.escape(name)}['\"]"
    return re.search(pattern, text, re.MULTILINE) is not None


def _declared_in_pyproject(root: Path | None) -> dict[str, str]:
    """The lamina entry points a project's pyproject.toml declares (name -> module)."""
    if root is None:
        return {}
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    table = project.get("project", {}).get("entry-points", {}).get(GROUP, {})
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}


def unregistered_plugin_hint(kind: str, name: str,
                             skipped: dict[str, str] | None = None) -> str | None:
    """Why the plugin ``name``, whose class an installed distribution holds, is not
    registered, and the fix; ``None`` when no installed source defines it. ``skipped``
    maps the distributions the registry had to skip to the reason."""
    for dist in _plugin_distributions():
        found = next((path for path in _sources(dist) if _defines(path, name)), None)
        if found is None:
            continue
        who = f"{dist.metadata['Name']} {dist.version}"
        module = _module_of(found)
        installed = {ep.name: ep.value.split(":")[0].strip() for ep in dist.entry_points
                     if ep.group == GROUP}
        root = _editable_root(dist)
        declared = _declared_in_pyproject(root)
        where = f"{kind} {name!r} is defined in {found} (module {module}) of {who}"
        reinstall = (f"run `pip install -e {root}`" if root is not None else
                     f"reinstall {dist.metadata['Name']} from its project folder "
                     "(`pip install .` there)")
        reason = (skipped or {}).get(dist.metadata["Name"])
        if reason is not None:
            return f"{where}, which lamina skipped: {reason}"
        if module in installed.values():
            return (f"{where}, whose module is registered, but its lamina_register_{kind}s() "
                    f"hook does not return the class: add it to the list the hook returns")
        if module in declared.values() and module not in installed.values():
            return (f"{where}; its pyproject.toml declares the entry point, but the installed "
                    f"metadata does not have it: entry points are read at install time, so "
                    f"{reinstall}")
        listed = ", ".join(f"{k} = {v}" for k, v in installed.items())
        state = (f"its entry points in the '{GROUP}' group ({listed}) do not load that module"
                 if installed else f"it declares no entry point in the '{GROUP}' group")
        return (f"{where}, but {state}. Add to its pyproject.toml\n"
                f"    [project.entry-points.{GROUP}]\n"
                f"    {name} = \"{module}\"\n"
                f"  and {reinstall}")
    return None


def shadowing_hint(module: str, dist: metadata.Distribution | None) -> str:
    """When ``module`` (an entry point's) failed to import: the place its top-level package
    was found, if that is outside ``dist``, and the fix; else an empty string."""
    if dist is None:
        return ""
    top = module.split(".")[0]
    try:
        spec = util.find_spec(top)
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return ""
    origin = Path(spec.origin).resolve()
    root = _editable_root(dist)
    if root is not None:
        inside = root.resolve() in origin.parents
    else:
        files = {Path(dist.locate_file(f)).resolve() for f in dist.files or []}
        inside = origin in files
        if not any(str(f).split("/")[0] == top or str(f) == f"{top}.py"
                   for f in dist.files or []):
            return ""  # the distribution does not install that package: nothing to compare
    if inside:
        return ""
    return (f"; '{top}' was imported from {origin}, not from {dist.metadata['Name']}: a "
            f"module or folder of that name earlier on sys.path (often the working directory) "
            f"shadows the plugin's. Rename it or run lamina from another directory")
