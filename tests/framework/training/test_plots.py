"""lamina plot: curves and first-layer filters as PNGs; a clear message without matplotlib."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from lamina import LaminaError
from lamina.plan import make_plan
from lamina.registry import load_registry
from lamina.training import runs
from lamina.training.plots import plot_run
from lamina.training.trainer import Data, fit, make_session


@pytest.fixture
def trained_run(tmp_path, tiny_config):
    registry = load_registry(load_entry_points=False)
    plan = make_plan(tiny_config, registry, training={"epochs": 2})
    session = make_session(plan, registry, runs.create_run_dir(tmp_path / "run"))
    runs.write_json(session.run_dir / runs.CONFIG, session.config.to_dict())
    rng = np.random.default_rng(0)
    x = rng.random((128, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    fit(session, Data(x, y, x[:32], y[:32]), quiet=True, log=lambda _: None)
    return registry, session.run_dir


def test_plot_writes_curves_and_filters(trained_run):
    pytest.importorskip("matplotlib")
    registry, run_dir = trained_run
    written = plot_run(run_dir, registry)
    assert [p.name for p in written] == ["curves.png", "filters.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install_it(trained_run, monkeypatch):
    registry, run_dir = trained_run
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(LaminaError, match=r"pip install 'lamina\[plot\]'"):
        plot_run(run_dir, registry)


def test_plot_onto_a_file_is_a_clear_error(trained_run, tmp_path):
    registry, run_dir = trained_run
    a_file = tmp_path / "curves.png"
    a_file.write_bytes(b"mine")
    with pytest.raises(LaminaError, match="--out .* is a file; give a folder"):
        plot_run(run_dir, registry, a_file)
    assert a_file.read_bytes() == b"mine"
