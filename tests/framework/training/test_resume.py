"""A run killed with SIGKILL and resumed ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lamina.registry import load_registry
from lamina.training import load_checkpoint, resume_run, start_run


def lamina(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lamina.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def final_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    ckpt = load_checkpoint(run_dir)
    return {**{f"p/{k}": v for k, v in ckpt.params.items()},
            **{f"o/{k}": v for k, v in ckpt.optimizer.items()}}


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_sigkilled_run_resumes_bit_identically(tmp_path, tiny_config, mnist_dir):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    env = {**os.environ, "LAMINA_DATA": mnist_dir}
    common = [str(tiny_config), "--quiet", "--epochs", "3"]

    proc = lamina("train", *common, "--run-dir", str(killed), env=env)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.json").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(killed).epoch < 3  # really interrupted

    resumed = lamina("train", "--resume", str(killed), "--quiet", env=env)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming" in out  # a result: stdout (diagnostics go to stderr)

    registry = load_registry(load_entry_points=False)
    start_run(tiny_config, registry, run_dir=straight, data_dir=mnist_dir, quiet=True,
              log=lambda _: None)
    assert load_checkpoint(straight).epoch == load_checkpoint(killed).epoch == 3
    assert_identical(final_arrays(straight), final_arrays(killed))


def test_resume_in_process_and_extend_epochs(tmp_path, tiny_config, mnist_dir):
    registry = load_registry(load_entry_points=False)
    quiet = {"data_dir": mnist_dir, "quiet": True, "log": lambda _: None}
    two, three = tmp_path / "two", tmp_path / "three"
    start_run(tiny_config, registry, run_dir=two, overrides={"epochs": 2}, **quiet)
    resume_run(two, registry, epochs=3, **quiet)
    start_run(tiny_config, registry, run_dir=three, **quiet)
    assert_identical(final_arrays(two), final_arrays(three))
    history = load_checkpoint(two).history
    assert [r["epoch"] for r in history] == [1, 2, 3]
