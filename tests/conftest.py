"""Shared fixtures: fake third-party distributions, built the way pip installs them."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make installed-looking distributions: a module plus a ``.dist-info`` folder
    with ``METADATA`` and an ``entry_points.txt`` in the ``lamina`` group, on a
    ``sys.path`` entry that is removed again after the test."""
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    created: list[str] = []

    def make(dist: str, version: str, module: str, source: str,
             entry_points: dict[str, str] | None = None) -> Path:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        )
        eps = entry_points or {module: module}
        (info / "entry_points.txt").write_text(
            "[lamina]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
        )
        created.append(module)
        importlib.invalidate_caches()
        return info

    yield make
    for module in created:
        sys.modules.pop(module, None)


@pytest.fixture
def mnist_root() -> str:
    """The data root holding mnist/ (``LAMINA_DATA``); tests that need MNIST skip without it."""
    root = os.environ.get("LAMINA_DATA")
    if not root or not (Path(root) / "mnist").is_dir():
        pytest.skip("set LAMINA_DATA to a folder holding mnist/ to run this test")
    return str(Path(root).resolve())


# A small convnet with every built-in layer of the reference network (training and bench
# tests).
TINY_CNN = """
[model]
input_shape = [1, 28, 28]

[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
stride = 2

[[model.layers]]
type = "relu"

[[model.layers]]
type = "maxpool2d"

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dropout"
rate = 0.25

[[model.layers]]
type = "dense"
units = 10

[optimizer]
type = "adam"
lr = 3e-3

[training]
epochs = 3
batch_size = 64
limit = 1200
seed = 7
"""


@pytest.fixture(scope="session")
def tiny_cnn_text() -> str:
    """The tiny convnet's TOML text, for fixtures of a wider scope than a test."""
    return TINY_CNN


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_CNN)
    return path


@pytest.fixture(scope="session")
def synthetic_run():
    """``synthetic_run(folder, **training)``: a run directory of the tiny convnet trained
    in ``folder/run`` on 128 random samples (no dataset needed), with its config.json;
    returns its path. ``training`` overrides the config's training settings."""
    import numpy as np

    from lamina.plan import make_plan
    from lamina.registry import load_registry
    from lamina.training import runs
    from lamina.training.trainer import Data, fit, make_session

    registry = load_registry(load_entry_points=False)

    def make(folder: Path, **training) -> Path:
        config = folder / "tiny.toml"
        config.write_text(TINY_CNN)
        plan = make_plan(config, registry, training=training)
        session = make_session(plan, registry, runs.create_run_dir(folder / "run"))
        runs.write_json(session.run_dir / runs.CONFIG, session.config.to_dict())
        rng = np.random.default_rng(0)
        x = rng.random((128, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, 128)
        fit(session, Data(x, y, x[:32], y[:32]), quiet=True, log=lambda _: None)
        return session.run_dir

    return make
