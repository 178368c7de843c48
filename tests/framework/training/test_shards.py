"""Training on shards of the batch: recorded in the run, chosen per network, set on the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lamina import ConfigError
from lamina.cli import main
from lamina.registry import load_registry
from lamina.training import load_checkpoint, resume_run, start_run
from lamina.training.runs import CONFIG, PROVENANCE

QUIET = {"quiet": True, "log": lambda _: None}


def test_a_run_records_how_its_batches_were_split(tmp_path, tiny_config, mnist_dir):
    registry = load_registry(load_entry_points=False)
    run = start_run(tiny_config, registry, run_dir=tmp_path / "run", data_dir=mnist_dir,
                    quiet=True, log=lambda _: None, overrides={"epochs": 1, "limit": 256})
    provenance = json.loads((run / PROVENANCE).read_text())
    assert provenance["shards"] == 2
    assert provenance["parallel"].startswith("2 shards on ")
    # The resolved count, not "default": a resume must split batches the same way.
    assert json.loads((run / CONFIG).read_text())["training"]["shards"] == 2


def test_a_run_from_before_shards_resumes_whole_and_bit_identically(tmp_path, tiny_config,
                                                                   mnist_dir):
    """config.json of older runs has no training.shards: they ran whole, and resume so."""
    registry = load_registry(load_entry_points=False)
    old, straight = tmp_path / "old", tmp_path / "straight"
    limit = {"limit": 256, "shards": 1}
    start_run(tiny_config, registry, run_dir=old, data_dir=mnist_dir,
              overrides={"epochs": 1, **limit}, **QUIET)
    raw = json.loads((old / CONFIG).read_text())
    del raw["training"]["shards"]
    (old / CONFIG).write_text(json.dumps(raw))
    resume_run(old, registry, epochs=2, data_dir=mnist_dir, **QUIET)
    start_run(tiny_config, registry, run_dir=straight, data_dir=mnist_dir,
              overrides={"epochs": 2, **limit}, **QUIET)
    a, b = load_checkpoint(old), load_checkpoint(straight)
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key], err_msg=key)
    assert json.loads((old / CONFIG).read_text())["training"]["shards"] == 1


BATCHNORM = """
[model]
input_shape = [1, 28, 28]
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "batchnorm"
[[model.layers]]
type = "dense"
units = 10
[training]
epochs = 1
limit = 128
"""


def test_a_batchnorm_network_trains_whole_and_refuses_shards(tmp_path, mnist_dir, capsys):
    config = tmp_path / "bn.toml"
    config.write_text(BATCHNORM)
    run = tmp_path / "run"
    assert main(["train", str(config), "--shards", "2", "--run-dir", str(run),
                 "--data-dir", mnist_dir, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "training.shards" in err and "batchnorm_1" in err and "Traceback" not in err
    assert not run.exists()  # rejected before anything was written
    assert main(["train", str(config), "--run-dir", str(run), "--data-dir", mnist_dir,
                 "--quiet"]) == 0
    assert json.loads((run / PROVENANCE).read_text())["parallel"] == "whole batch"


def test_shards_override_is_validated_like_the_file(tmp_path, tiny_config, mnist_dir):
    registry = load_registry(load_entry_points=False)
    with pytest.raises(ConfigError, match="shards"):
        start_run(tiny_config, registry, run_dir=tmp_path / "run", data_dir=mnist_dir,
                  quiet=True, log=lambda _: None, overrides={"shards": 0})
