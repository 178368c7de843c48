"""Hints for plugin authors: a plugin installed but not registered, a module shadowed.

Distributions are faked the way pip installs them: a ``.dist-info`` folder with
METADATA, RECORD, entry_points.txt and, for an editable install, direct_url.json.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest

from lamina import ConfigError, load_config
from lamina.registry import load_registry

LAYER = '''
import numpy as np
from lamina import Example, Layer, LayerConfig, hookimpl


class Scale(Layer):
    name = "scale"
    Config = LayerConfig

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, *, training):
        self.cache = True
        return 2.0 * x

    def backward(self, dy, *, input_grad=True):
        self.cached()
        return 2.0 * dy

    @classmethod
    def examples(cls):
        return [Example({}, (3,))]
'''
CONFIG = {"model": {"input_shape": [3], "layers": [{"type": "scale"}]}}


def install(site: Path, package: str, files: dict[str, str], *, entry_points: str = "",
            editable_root: Path | None = None, dist: str = "lamina-scale") -> Path:
    """A distribution requiring lamina, installed into ``site`` (or editable from a project)."""
    for relative, text in files.items():
        path = (editable_root / "src" if editable_root else site) / package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n"
                                   "Requires-Dist: lamina>=0.1\n")
    if entry_points:
        (info / "entry_points.txt").write_text(f"[lamina]\n{entry_points}\n")
    if editable_root is None:
        record = [f"{package}/{relative},," for relative in files]
        (info / "RECORD").write_text("\n".join(record) + "\n")
    else:
        (info / "direct_url.json").write_text(json.dumps(
            {"url": editable_root.resolve().as_uri(), "dir_info": {"editable": True}}))
        (info / "RECORD").write_text(f"{info.name}/METADATA,,\n")
    importlib.invalidate_caches()
    return info


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith(("scalepkg", "shadowed")):
            sys.modules.pop(name)


def message_for_scale() -> str:
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG, load_registry())
    return str(info.value)


def test_a_plugin_without_an_entry_point_is_named_with_the_fix(site):
    install(site, "scalepkg", {"__init__.py": "", "layers.py": LAYER})
    message = message_for_scale()
    assert "unknown layer type 'scale'" in message
    assert (f"layer 'scale' is defined in {site / 'scalepkg' / 'layers.py'} (module "
            "scalepkg.layers) of lamina-scale 1.0, but it declares no entry point in the "
            "'lamina' group. Add to its pyproject.toml") in message
    assert '[project.entry-points.lamina]\n    scale = "scalepkg.layers"' in message
    assert message.endswith("and reinstall lamina-scale from its project folder "
                            "(`pip install .` there)")


def test_an_entry_point_to_another_module_is_named(site):
    install(site, "scalepkg", {"__init__.py": "", "layers.py": LAYER, "other.py": ""},
            entry_points="other = scalepkg.other")
    message = message_for_scale()
    assert ("its entry points in the 'lamina' group (other = scalepkg.other) do not load "
            "that module") in message


def test_an_entry_point_added_without_reinstalling_says_reinstall(site, tmp_path):
    project = tmp_path / "lamina-scale"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "lamina-scale"\n\n[project.entry-points.lamina]\n'
        'scale = "scalepkg.layers"\n')
    install(site, "scalepkg", {"__init__.py": "", "layers.py": LAYER}, editable_root=project)
    message = message_for_scale()
    assert "its pyproject.toml declares the entry point, but the installed metadata does " \
           "not have it" in message
    assert f"run `pip install -e {project.resolve()}`" in message


def test_an_unknown_name_no_installed_source_defines_gets_no_note(site):
    install(site, "scalepkg", {"__init__.py": "", "layers.py": LAYER.replace('"scale"',
                                                                              '"other"')})
    message = message_for_scale()
    assert "unknown layer type 'scale'" in message and "Note:" not in message


def test_a_folder_shadowing_a_plugin_package_is_named(site, tmp_path, monkeypatch):
    install(site, "shadowed", {"__init__.py": "", "layers.py": LAYER + (
        "\n@hookimpl\ndef lamina_register_layers():\n    return [Scale]\n")},
        entry_points="scale = shadowed.layers")
    working = tmp_path / "working"
    (working / "shadowed").mkdir(parents=True)
    (working / "shadowed" / "__init__.py").write_text("")  # the author's own folder
    monkeypatch.syspath_prepend(str(working))
    importlib.invalidate_caches()
    registry = load_registry()
    [problem] = [p for p in registry.problems if p.provider.dist == "lamina-scale"]
    assert "import failed: ModuleNotFoundError" in problem.reason
    assert (f"'shadowed' was imported from {(working / 'shadowed' / '__init__.py').resolve()}, "
            "not from lamina-scale: a module or folder of that name earlier on sys.path") \
        in problem.reason
    assert "scale" not in registry.layers


def test_the_same_package_loads_when_nothing_shadows_it(site):
    install(site, "shadowed", {"__init__.py": "", "layers.py": LAYER + (
        "\n@hookimpl\ndef lamina_register_layers():\n    return [Scale]\n")},
        entry_points="scale = shadowed.layers")
    registry = load_registry()
    assert registry.layers["scale"].provider.dist == "lamina-scale"


def test_a_registered_module_whose_hook_leaves_the_class_out_is_named(site):
    install(site, "scalepkg", {"__init__.py": "", "layers.py": LAYER + (
        "\n@hookimpl\ndef lamina_register_layers():\n    return []\n")},
        entry_points="scale = scalepkg.layers")
    message = message_for_scale()
    assert ("whose module is registered, but its lamina_register_layers() hook does not "
            "return the class") in message


def test_a_skipped_plugin_says_why_it_was_skipped(site):
    install(site, "scalepkg", {"__init__.py": "", "layers.py": LAYER + (
        "\n@hookimpl\ndef lamina_register_layers():\n    raise RuntimeError('no GPU')\n")},
        entry_points="scale = scalepkg.layers")
    message = message_for_scale()
    assert "of lamina-scale 1.0, which lamina skipped: no GPU" in message
