"""Training on shards of the batch: recorded in the run, chosen per network, set on the CLI."""

from __future__ import annotations

import json

import pytest

from framework import ConfigError
from framework.cli import main
from framework.registry import load_registry
from framework.training import start_run
from framework.training.runs import PROVENANCE


def test_a_run_records_how_its_batches_were_split(tmp_path, tiny_config, mnist_dir):
    registry = load_registry(load_entry_points=False)
    run = start_run(tiny_config, registry, run_dir=tmp_path / "run", data_dir=mnist_dir,
                    quiet=True, log=lambda _: None, overrides={"epochs": 1, "limit": 256})
    provenance = json.loads((run / PROVENANCE).read_text())
    assert provenance["shards"] == 2
    assert provenance["parallel"].startswith("2 shards on ")


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
