"""lamina installs as ``lamina`` and ``lamina.plugins`` only, whatever the folders are called.

The repository keeps the core in ``framework/`` and the built-ins in ``plugins/``;
setuptools' ``package-dir`` installs them under the project's name. These tests build
the wheel and read its file list, and run lamina from a working directory holding a
plugin author's own ``plugins/`` and ``framework/`` packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

import lamina
import lamina.plugins

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"lamina": ROOT / "framework", "lamina.plugins": ROOT / "plugins"}


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    # ``python -c`` puts the working directory first on sys.path, as a REPL or a notebook
    # started there does: the user's folders are found before anything installed.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.fixture
def authors_folder(tmp_path: Path) -> Path:
    """A plugin author's working directory: their own plugins/ and framework/ packages."""
    for package in ("plugins", "framework"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"WHOSE = 'the author\\'s {package}'\n")
    (tmp_path / "plugins" / "conv2d.py").write_text("raise RuntimeError('not lamina\\'s')\n")
    (tmp_path / "plugins" / "mylayer.py").write_text("SHAPE = 'mine'\n")
    return tmp_path


def test_the_installed_packages_are_the_repository_folders():
    assert Path(lamina.__file__).parent == FOLDERS["lamina"]
    assert Path(lamina.plugins.__file__).parent == FOLDERS["lamina.plugins"]


def test_a_working_directory_with_its_own_plugins_and_framework(authors_folder: Path):
    code = textwrap.dedent("""
        import framework, plugins, plugins.mylayer
        import lamina, lamina.plugins
        from lamina.registry import load_registry
        registry = load_registry(load_entry_points=False)
        print(framework.WHOSE, '|', plugins.WHOSE, '|', plugins.mylayer.SHAPE)
        print(lamina.plugins.__file__)
        print(' '.join(sorted(registry.layers)))
    """)
    result = run_python(code, authors_folder)
    assert result.returncode == 0, result.stderr
    theirs, ours, layers = result.stdout.splitlines()
    # Both names stay the author's, and lamina's built-ins load from lamina.
    assert theirs == "the author's framework | the author's plugins | mine"
    assert Path(ours).parent == FOLDERS["lamina.plugins"]
    assert layers.split() == [
        "add", "avgpool2d", "batchnorm", "concat", "conv2d", "dense", "dropout", "elu",
        "flatten", "gelu", "global_avgpool2d", "global_maxpool2d", "layernorm", "leaky_relu",
        "maxpool2d", "relu", "reshape", "sigmoid", "softmax", "tanh"]


def test_the_command_line_runs_from_that_directory(authors_folder: Path):
    # ``python -m`` also puts the working directory first on sys.path.
    result = subprocess.run([sys.executable, "-m", "lamina.cli", "validate", "mnist_cnn"],
                            cwd=authors_folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "valid (9 layers, output (10,), 34,826 parameters)" in result.stdout


def test_nothing_is_installed_as_framework_or_plugins(tmp_path: Path):
    for name in ("framework", "plugins"):
        result = run_python(f"import {name}", tmp_path)
        assert result.returncode == 1
        assert f"No module named '{name}'" in result.stderr


def test_the_folders_refuse_to_be_imported_by_their_own_names():
    """In a checkout's root the folders are importable as framework and plugins; that would
    be a second copy of the core, so the import fails and says what to import instead."""
    for name, fix in (("framework", "import it as 'lamina'"),
                      ("plugins", "import them as 'lamina.plugins'")):
        result = run_python(f"import {name}", ROOT)
        assert result.returncode == 1
        assert "ImportError" in result.stderr and fix in result.stderr


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    on_disk = {"lamina.plugins"}
    for folder in FOLDERS["lamina"].rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.iterdir()):
            on_disk.add(".".join(["lamina", *folder.relative_to(FOLDERS["lamina"]).parts]))
    assert listed == on_disk | {"lamina"}


def test_the_onnx_extra_installs_what_docs_export_serves_with():
    """docs/export.md's serving snippet and lamina check --onnx need ONNX Runtime beside
    onnx; the test extra pins both the same way."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = {requirement.split(">")[0] for requirement in extras["onnx"]}
    assert names == {"onnx", "onnxruntime"}
    assert set(extras["onnx"]) <= set(extras["test"])


def test_the_wheel_holds_lamina_only(tmp_path: Path):
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("building the wheel needs setuptools >= 77 (the test extra installs it)")
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for folder in ("framework", "plugins"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path / "dist"
    build = ("import setuptools.build_meta as b, sys; "
             "print(b.build_wheel(sys.argv[1]))")
    result = subprocess.run([sys.executable, "-c", build, str(out)], cwd=source,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = out / result.stdout.strip().splitlines()[-1]
    names = zipfile.ZipFile(wheel).namelist()
    code = [n for n in names if ".dist-info/" not in n]
    assert {n.split("/")[0] for n in code} == {"lamina"}
    # Every source file is in it, under its installed name.
    expected = {f"lamina/{p.relative_to(FOLDERS['lamina']).as_posix()}"
                for p in FOLDERS["lamina"].rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    expected |= {f"lamina/plugins/{p.name}" for p in FOLDERS["lamina.plugins"].glob("*.py")}
    assert set(code) == expected
    assert "lamina/configs/mnist_cnn.toml" in code
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "lamina = lamina.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
