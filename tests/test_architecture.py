"""The architecture rules: the core names plugins only in one tuple; no global state."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pluggy

import lamina
from lamina.registry import BUILTIN_PLUGINS

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def is_builtin_plugins(module: str) -> bool:
    return module == "lamina.plugins" or module.startswith("lamina.plugins.")


def test_core_never_imports_the_plugins_package():
    for path in (ROOT / "framework").rglob("*.py"):
        offending = {m for m in imported_modules(path) if is_builtin_plugins(m)}
        assert not offending, f"{path} imports {offending}"
        # relative imports stay inside the core's folder: `from ..plugins` cannot exist
        assert "from .plugins" not in path.read_text() and "from ..plugins" not in \
            path.read_text(), path
    # ...and names plugin modules only in the one tuple
    mentions = [p for p in (ROOT / "framework").rglob("*.py")
                if '"lamina.plugins.' in p.read_text()]
    assert mentions == [ROOT / "framework" / "registry.py"]
    assert all(name.startswith("lamina.plugins.") for name in BUILTIN_PLUGINS)


def test_plugins_depend_on_the_core_only():
    allowed = {"lamina", "numpy", "pydantic", "__future__", "typing", "dataclasses",
               "collections", "math", "functools"}
    for path in (ROOT / "plugins").glob("*.py"):
        for module in imported_modules(path):
            assert module.split(".")[0] in allowed, f"{path.name} imports {module}"
            assert not is_builtin_plugins(module), f"{path.name} imports another plugin"


def test_nothing_imports_the_folder_names():
    """The folders framework/ and plugins/ install as lamina and lamina.plugins: no code
    of the project imports them by their folder names."""
    code = [*ROOT.glob("framework/**/*.py"), *ROOT.glob("plugins/*.py"),
            *ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/*.py"),
            *ROOT.glob("docs/examples/*/src/**/*.py"), *ROOT.glob("docs/examples/*/tests/*.py")]
    for path in code:
        for module in imported_modules(path):
            assert module.split(".")[0] not in ("framework", "plugins"), \
                f"{path.relative_to(ROOT)} imports {module}"


def test_every_builtin_module_is_in_the_tuple():
    on_disk = {f"lamina.plugins.{p.stem}" for p in (ROOT / "plugins").glob("*.py")
               if not p.stem.startswith("_")}
    assert on_disk == set(BUILTIN_PLUGINS)


def test_no_module_holds_a_plugin_manager_or_generator():
    for info in pkgutil.walk_packages(lamina.__path__, "lamina."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            assert not isinstance(value, pluggy.PluginManager | np.random.Generator), \
                f"{info.name}.{name} is global state"
    for name in BUILTIN_PLUGINS:
        module = importlib.import_module(name)
        assert not any(isinstance(v, np.random.Generator) for v in vars(module).values())


def test_no_code_uses_numpys_global_random_state():
    legacy = ("np.random.seed", "np.random.rand(", "np.random.randn(", "np.random.randint(",
              "np.random.normal(", "np.random.uniform(", "np.random.shuffle(",
              "np.random.permutation(", "np.random.choice(")
    for path in [*(ROOT / "framework").rglob("*.py"), *(ROOT / "plugins").glob("*.py")]:
        text = path.read_text()
        assert not any(call in text for call in legacy), f"{path} uses the global RNG"
