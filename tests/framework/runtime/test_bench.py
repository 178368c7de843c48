"""`lamina bench`: the figures it reports, on a small network and a few steps."""

from __future__ import annotations

import json

import pytest

from lamina.cli import main
from lamina.registry import load_registry
from lamina.runtime.bench import format_bench, run_bench


def test_run_bench_reports_every_layer_and_both_ways_of_running_the_step(tiny_config):
    registry = load_registry(load_entry_points=False)
    result = run_bench(tiny_config, registry, batch_size=6, steps=2, warmup=1)
    assert [layer["name"] for layer in result["layers"]] == [
        "conv2d_1", "relu_1", "maxpool2d_1", "flatten_1", "dropout_1", "dense_1"]
    assert result["shards"] == 2 and result["parallel"].startswith("2 shards on ")
    for key in ("train_step", "infer_step", "whole_train_step", "whole_infer_step"):
        spread = result[key]
        assert 0 < spread["min_ms"] <= spread["median_ms"] <= spread["max_ms"], key
    assert result["train_samples_per_s"] == pytest.approx(
        6 / result["train_step"]["median_ms"] * 1e3)
    assert result["epoch_seconds"] == pytest.approx(60_000 / result["train_samples_per_s"])
    text = format_bench(result)
    assert "conv2d_1" in text and "2 shards on" in text and "samples/s" in text


def test_bench_json_on_one_shard(tiny_config, capsys):
    assert main(["bench", str(tiny_config), "--steps", "1", "--warmup", "0", "--batch-size", "4",
                 "--shards", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["shards"] == 1 and result["parallel"] == "whole batch"
    assert result["train_samples_per_s"] > 0 and result["infer_samples_per_s"] > 0


def test_bench_rejects_a_bad_shard_count_without_a_traceback(tiny_config, capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", str(tiny_config), "--shards", "0"])
    assert info.value.code == 2
    assert "--shards" in capsys.readouterr().err
