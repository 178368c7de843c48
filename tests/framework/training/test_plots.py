"""lamina plot: curves and first-layer filters as PNGs; a clear message without matplotlib."""

from __future__ import annotations

import builtins

import pytest

from lamina import LaminaError
from lamina.registry import load_registry
from lamina.training.plots import plot_run


@pytest.fixture
def trained_run(tmp_path, synthetic_run):
    return load_registry(load_entry_points=False), synthetic_run(tmp_path, epochs=2)


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
