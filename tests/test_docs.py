"""The docs keep up with the code: every hook, built-in plugin and check is documented."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from lamina import hookspecs
from lamina.registry import HOOKS, load_registry

DOCS = Path(__file__).resolve().parents[1] / "docs"
REGISTRY = load_registry(load_entry_points=False)


def test_every_hookspec_is_documented():
    specs = {name for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("lamina_")}
    assert specs == set(HOOKS.values())
    text = (DOCS / "hooks.md").read_text()
    for name in specs:
        assert f"`{name}()`" in text, f"docs/hooks.md does not document {name}"
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("entry", REGISTRY.entries(), ids=lambda e: f"{e.kind}-{e.name}")
def test_every_builtin_plugin_is_documented(entry):
    if entry.kind == "optimizer":
        path = DOCS / "optimizers.md"
        assert f"`{entry.name}`" in path.read_text(), f"{path} does not describe {entry.name}"
        return
    folder = {"layer": "layers", "block": "layers", "loss": "losses"}[entry.kind]
    path = DOCS / folder / f"{entry.name}.md"
    assert path.is_file(), f"built-in {entry.kind} {entry.name!r} has no {path}"
    text = path.read_text()
    assert "backward" in text.lower() or entry.kind == "loss", f"{path} derives no backward"


def test_every_conformance_check_is_documented():
    import lamina.testing as testing

    checks = {name for name in dir(testing) if name.startswith("check_")
              and name not in ("check_layer", "check_loss")}
    assert checks, "lamina.testing exports no checks"
    text = (DOCS / "conformance.md").read_text()
    missing = sorted(c for c in checks if c not in text)
    assert not missing, f"docs/conformance.md does not explain {missing}"


def test_readme_gives_the_three_commands():
    readme = (DOCS.parent / "README.md").read_text()
    assert 'pip install -e ".[test]"' in readme
    assert "lamina train" in readme
    assert "python -m pytest" in readme


def test_docs_use_the_installed_names():
    """framework/ and plugins/ are folder names; code in the docs imports lamina."""
    import re

    wrong = re.compile(r"\b(from|import) (framework|plugins)\b|(?<![\w/.-])(framework|plugins)"
                       r"\.[a-z_]+")
    for path in [DOCS.parent / "README.md", *DOCS.rglob("*.md")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = wrong.search(line)
            assert not match, f"{path.relative_to(DOCS.parent)}:{number}: {match.group(0)}"
