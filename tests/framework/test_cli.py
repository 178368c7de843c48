"""The command line: exit codes, messages without tracebacks, nothing saved is lost."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lamina.cli import main


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lamina.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def test_layers_lists_every_plugin_with_provider(capsys):
    assert main(["layers"]) == 0
    out = capsys.readouterr().out
    for name in ("conv2d", "maxpool2d", "dense", "softmax_cross_entropy", "adam", "sgd"):
        assert name in out
    assert "lamina 0.1.0" in out and "lamina.plugins.conv2d" in out
    # grouped by kind, each with its count; layers say whether they export
    titles = [line.split(" ", 1)[1][:4] for line in out.splitlines() if line[:1].isdigit()]
    assert titles == ["laye", "bloc", "loss", "opti"]  # "1 block" or "2 blocks"
    assert re.search(r"\n  conv2d +lamina 0\.1\.0 +lamina\.plugins\.conv2d +yes\n", out)
    assert re.search(r"\n  residual +lamina 0\.1\.0 +lamina\.plugins\.residual +as its layers",
                     out)


def test_summary_of_the_default_config(capsys):
    assert main(["summary"]) == 0
    out = capsys.readouterr().out
    for shape in ("(32, 26, 26)", "(32, 13, 13)", "(64, 11, 11)", "(64, 5, 5)", "(1600,)",
                  "(10,)"):
        assert shape in out
    assert "Total params: 34,826" in out


def test_validate_exit_codes_and_all_messages(tmp_path, capsys):
    assert main(["validate", "mnist_cnn"]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("""
[model]
input_shape = [1, 28, 28]
[[model.layers]]
type = "conv2d"
filters = 0
kernel_size = 3
[[model.layers]]
type = "maxpol2d"
[[model.layers]]
type = "dense"
units = 10
use_bias = "maybe"
""")
    result = run("validate", str(bad))
    assert result.returncode == 2
    no_traceback(result)
    assert "3 problems found" in result.stderr
    assert "model.layers[0] (conv2d).filters" in result.stderr
    assert "model.layers[1] (maxpol2d).type" in result.stderr
    assert "did you mean 'maxpool2d'?" in result.stderr
    assert "model.layers[2] (dense).use_bias" in result.stderr


def test_validate_reports_shape_misfit_with_the_fix(tmp_path):
    config = tmp_path / "misfit.json"
    config.write_text(json.dumps({"model": {"input_shape": [1, 28, 28], "layers": [
        {"type": "conv2d", "filters": 4, "kernel_size": 3}, {"type": "dense", "units": 10}]}}))
    result = run("validate", str(config))
    assert result.returncode == 2
    no_traceback(result)
    assert "model.layers[1] (dense)" in result.stderr and "add a flatten layer" in result.stderr


@pytest.mark.parametrize("args", [
    ["train", "--epochs", "0"],
    ["train", "--batch-size", "many"],
    ["train", "--lr", "-1"],
    ["frobnicate"],
    ["summary", "no_such_config"],
])
def test_wrong_arguments_give_a_clear_error(args):
    result = run(*args)
    assert result.returncode == 2, result.stderr
    no_traceback(result)
    assert "error" in result.stderr


def test_resume_refuses_settings_that_would_change_the_run(tmp_path):
    result = run("train", "--resume", str(tmp_path), "--lr", "0.1")
    assert result.returncode == 2
    assert "--lr cannot change a run being resumed" in result.stderr


def test_missing_or_corrupt_data_gives_a_clear_error(tmp_path, mnist_root):
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    for f in Path(mnist_root, "mnist").glob("*.gz"):
        shutil.copy(f, data / "mnist" / f.name)
    labels = data / "mnist" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-100])  # truncated
    result = run("train", "--data-dir", str(data), "--run-dir", str(tmp_path / "run"),
                 "--limit", "500", "--epochs", "1", "--quiet")
    assert result.returncode == 2
    no_traceback(result)
    assert "train-labels-idx1-ubyte.gz" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing half-made


def test_used_run_dir_and_corrupt_checkpoint_lose_nothing(tmp_path, mnist_root):
    run_dir = tmp_path / "run"
    ok = run("train", "--data-dir", mnist_root, "--run-dir", str(run_dir), "--limit", "600",
             "--epochs", "1", "--batch-size", "100", "--quiet")
    assert ok.returncode == 0, ok.stderr
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}

    again = run("train", "--data-dir", mnist_root, "--run-dir", str(run_dir), "--limit", "600",
                "--epochs", "1", "--quiet")
    assert again.returncode == 2
    no_traceback(again)
    assert "already exists and is not empty" in again.stderr and "--resume" in again.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before

    npz = next(run_dir.glob("*.npz"))
    npz.write_bytes(npz.read_bytes()[:-50])
    for args in (["evaluate", str(run_dir)], ["train", "--resume", str(run_dir)]):
        result = run(*args, "--data-dir", mnist_root)
        assert result.returncode == 2
        no_traceback(result)
        assert "corrupt" in result.stderr


def test_evaluate_json_has_the_documented_keys(tmp_path, mnist_root):
    run_dir = tmp_path / "run"
    assert run("train", "--data-dir", mnist_root, "--run-dir", str(run_dir), "--limit", "600",
               "--epochs", "1", "--quiet").returncode == 0
    result = run("evaluate", str(run_dir), "--json", "--data-dir", mnist_root)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"loss", "accuracy", "per_class_accuracy", "confusion_matrix"} <= set(report)
    matrix = report["confusion_matrix"]
    assert len(matrix) == 10 and sum(map(sum, matrix)) == 10_000
    assert report["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(10)) / 10_000)
    text = run("evaluate", str(run_dir), "--data-dir", mnist_root)
    assert "confusion matrix" in text.stdout and "per-class accuracy" in text.stdout


def test_resource_bombs_in_a_config_are_refused_quickly(tmp_path):
    """Each of these once hung, exhausted memory or printed a traceback."""
    reference = {"model": {"input_shape": [1, 28, 28], "layers": [
        {"type": "conv2d", "filters": 4, "kernel_size": 3}, {"type": "flatten"},
        {"type": "dense", "units": 10}]}}
    bombs = {
        "deep.json": ('{"model": ' + "[" * 5000 + "]" * 5000 + "}", "nests"),
        "deep.toml": ("[model]\ninput_shape = " + "[" * 5000 + "]" * 5000 + "\n", "nests"),
        "digits.toml": ("[training]\nseed = " + "9" * 5000 + "\n", "a value cannot be read"),
        "units.json": (json.dumps({"model": {"input_shape": [1, 28, 28], "layers": [
            {"type": "flatten"}, {"type": "dense", "units": 2**31}]}}),
            "lamina allows at most 268,435,456"),
        "pool.json": (json.dumps({"model": {"input_shape": [1, 28, 28], "layers": [
            {"type": "maxpool2d", "pool_size": 1_000_000}, {"type": "flatten"},
            {"type": "dense", "units": 10}]}}), "pool_size (1000000, 1000000) is larger"),
        "padding.json": (json.dumps({"model": {"input_shape": [1, 28, 28], "layers": [
            {"type": "conv2d", "filters": 64, "kernel_size": 3, "padding": 100_000},
            {"type": "flatten"}, {"type": "dense", "units": 10}]}}), "values per sample"),
        "input.json": (json.dumps({**reference, "model": {**reference["model"],
                                   "input_shape": [4096, 4096, 4096]}}), "values per sample"),
        "batch.json": (json.dumps({"model": {"input_shape": [1, 28, 28], "layers": [
            {"type": "conv2d", "filters": 64, "kernel_size": 3}, {"type": "flatten"},
            {"type": "dense", "units": 10}]}, "training": {"batch_size": 65536}}),
            "use a batch size of at most 24,818"),
    }
    for name, (text, expected) in bombs.items():
        path = tmp_path / name
        path.write_text(text)
        result = run("validate", str(path))
        assert result.returncode == 2, (name, result.stdout)
        no_traceback(result)
        assert expected in result.stderr, (name, result.stderr)


def test_devices_pipes_and_odd_names_are_refused(tmp_path):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    long_name = tmp_path / ("x" * 300 + ".toml")
    cases = {"/dev/zero": "not a regular file", str(fifo): "not a regular file",
             str(long_name): "File name too long", str(tmp_path): "is a directory"}
    for path, expected in cases.items():
        result = run("validate", path)
        assert result.returncode == 2 and expected in result.stderr, (path, result.stderr)
        no_traceback(result)
    undecodable = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "validate", os.fsencode(tmp_path) + b"/\xff.toml"],
        capture_output=True, timeout=120)
    assert undecodable.returncode == 2
    assert b"Traceback" not in undecodable.stderr and b"\\udcff.toml" in undecodable.stderr


def test_names_too_long_are_input_mistakes_in_every_command(tmp_path, synthetic_run, capsys):
    """Exit 2 (bad input), not 1 (a failed run), and no traceback."""
    run_dir = synthetic_run(tmp_path)
    long = "x" * 300
    (tmp_path / "a.png").write_bytes(b"")
    for argv in (["validate", long], ["summary", long], ["train", f"{long}.toml"],
                 ["predict", str(run_dir), f"{long}.png"],
                 ["predict", str(run_dir), str(tmp_path / f"{long}.npy")],
                 ["export", str(run_dir), f"{long}.onnx"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "File name too long" in err and "Traceback" not in err, (argv, err)
        assert "framework/configs" not in err  # the shipped configs were never the point


def test_an_export_target_inside_a_file_says_so(tmp_path, synthetic_run, capsys):
    run_dir = synthetic_run(tmp_path)
    (tmp_path / "notes.txt").write_text("")
    assert main(["export", str(run_dir), str(tmp_path / "notes.txt" / "model.onnx")]) == 2
    assert f"{tmp_path / 'notes.txt'} is a file, not a folder" in capsys.readouterr().err


def test_python_warnings_during_a_command_are_one_line(tmp_path, synthetic_run, capsys,
                                                      monkeypatch):
    import warnings

    import lamina.predict

    real = lamina.predict.read_file

    def noisy(*args, **kwargs):
        warnings.warn("overflow encountered\n   in cast", RuntimeWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(lamina.predict, "read_file", noisy)
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28), np.float32))
    assert main(["predict", str(synthetic_run(tmp_path)), str(tmp_path / "x.npy")]) == 0
    err = capsys.readouterr().err
    assert "warning: overflow encountered in cast\n" in err
    assert "RuntimeWarning" not in err and "warnings.warn" not in err


#: the address space the tests hold every command that reads a run to
#: (docs/limits-and-guarantees.md: measured need ~570-620 MiB on 2 cores)
ADDRESS_SPACE = 1 << 30


def capped(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``lamina ARGS`` with its address space (RLIMIT_AS) capped at 1 GiB."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    return subprocess.run([sys.executable, "-m", "lamina.cli", *args], capture_output=True,
                          text=True, timeout=300, preexec_fn=cap, env=env)


def test_commands_reading_a_run_work_in_1_gib_of_address_space(tmp_path, synthetic_run,
                                                               mnist_root):
    """Before: a bounded read reserved its bound (8 GiB for a checkpoint) up front, so
    every command reading a run needed more than 8 GiB of address space."""
    import numpy as np
    from PIL import Image

    from lamina.images import MAX_PIXELS

    run_dir = synthetic_run(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 28, 28), np.float32))
    # an image at the pixel budget, with transparency: the costliest conversion
    Image.new("LA", (MAX_PIXELS // 5000, 5000)).save(tmp_path / "big.png")
    env = {**os.environ, "LAMINA_DATA": mnist_root}
    for args in (["evaluate", str(run_dir)], ["predict", str(run_dir), str(tmp_path / "x.npy")],
                 ["predict", str(run_dir), str(tmp_path / "big.png")],
                 ["export", str(run_dir), str(tmp_path / "model.onnx")],
                 ["train", "--resume", str(run_dir), "--epochs", "2", "--quiet"]):
        result = capped(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        no_traceback(result)


ROGUE = """
import sys
from pydantic import field_validator
from lamina import Example, Layer, LayerConfig, hookimpl

class Rogue(Layer):
    name = "rogue"

    class Config(LayerConfig):
        mode: str = "fine"

        @field_validator("mode")
        @classmethod
        def _mode(cls, value):
            if value == "typeerror":
                raise TypeError("unhashable type: 'list'")
            return value

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, *, training):
        if self.config.mode == "exit":
            sys.exit(5)
        self.cache = x.shape
        return x

    def backward(self, dy, *, input_grad=True):
        self.cached()
        return dy

    @classmethod
    def examples(cls):
        return [Example({}, (3,))]

@hookimpl
def lamina_register_layers():
    return [Rogue]
"""


def rogue_config(tmp_path: Path, mode: str) -> str:
    path = tmp_path / f"{mode}.toml"
    path.write_text(f"""
[model]
input_shape = [1, 28, 28]
[[model.layers]]
type = "rogue"
mode = "{mode}"
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 10
[loss]
type = "softmax_cross_entropy"
[optimizer]
type = "sgd"
lr = 0.1
""")
    return str(path)


def test_a_plugin_s_config_validator_that_breaks_is_named_by_validate(tmp_path, fake_dist,
                                                                     capsys):
    fake_dist("lamina-rogue", "0.1.0", "lamina_rogue", ROGUE)
    assert main(["validate", rogue_config(tmp_path, "typeerror")]) == 2
    err = capsys.readouterr().err
    assert "model.layers[0] (rogue): the rogue plugin's config validation raised TypeError: " \
           "unhashable type: 'list'. This is a bug in the plugin (lamina_rogue = lamina_rogue, " \
           "from lamina-rogue 0.1.0)" in err
    assert "Traceback" not in err


def test_a_plugin_calling_sys_exit_is_a_plugin_error_not_an_exit(tmp_path, fake_dist, capsys):
    """Before: lamina train ended with the plugin's exit status 5 and no message."""
    fake_dist("lamina-rogue", "0.1.0", "lamina_rogue", ROGUE)
    config = rogue_config(tmp_path, "exit")
    assert main(["bench", config, "--steps", "1", "--warmup", "0"]) == 2
    err = capsys.readouterr().err
    assert "the rogue plugin (lamina_rogue = lamina_rogue, from lamina-rogue 0.1.0) raised " \
           "SystemExit in forward(): 5. This is a bug in the plugin" in err


def test_lamina_train_survives_a_plugin_calling_sys_exit(tmp_path, fake_dist, capsys,
                                                        mnist_root):
    fake_dist("lamina-rogue", "0.1.0", "lamina_rogue", ROGUE)
    argv = ["train", rogue_config(tmp_path, "exit"), "--epochs", "1", "--limit", "64",
            "--data-dir", mnist_root, "--run-dir", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "raised SystemExit in forward(): 5" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # train's first pass ran before anything was made


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_texts_say_what_the_commands_do(capsys):
    assert "every discovered layer, loss, optimizer and block" in _help("check", capsys)
    assert "every registered layer, loss, optimizer and block" in _help("layers", capsys)
    validate = _help("validate", capsys)
    assert "name of a shipped config" in validate and "default" not in validate  # CONFIG needed
    for command in ("train", "evaluate"):
        assert "--data-dir DATA_DIR folder holding <dataset>/ (else LAMINA_DATA, else " \
               "~/.cache/lamina)" in _help(command, capsys)


@pytest.mark.parametrize("missing", [("onnxruntime",), ("onnx",), ("onnx", "onnxruntime")])
@pytest.mark.parametrize("what", [[], ["relu", "dense"], ["--config", "mnist_cnn"]])
def test_check_onnx_without_onnx_or_onnx_runtime_is_one_setup_error(missing, what, capsys,
                                                                     monkeypatch):
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    assert main(["check", "--onnx", *what]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("error: lamina check --onnx runs each layer's export in ONNX Runtime; "
                   f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                   "installed: pip install 'lamina[onnx]' (or leave out --onnx)\n")


def test_check_onnx_with_a_broken_onnx_runtime_says_to_reinstall_it(capsys, monkeypatch):
    class Broken:  # an installed package whose import fails (a shared library missing)
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "onnxruntime":
                raise OSError("libonnxruntime.so: cannot open shared object file")

    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken, *sys.meta_path])
    assert main(["check", "--onnx", "relu"]) == 2
    assert capsys.readouterr().err == (
        "error: lamina check --onnx runs each layer's export in ONNX Runtime; the onnxruntime "
        "package is installed but cannot be imported (OSError: libonnxruntime.so: cannot "
        "open shared object file): reinstall it: pip install --force-reinstall onnxruntime "
        "(or leave out --onnx)\n")


def test_validate_suggests_the_choice_and_lamina_s_name_for_a_setting(tmp_path):
    config = tmp_path / "net.toml"
    config.write_text("""
[model]
input_shape = [1, 8, 8]

[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
padding = "smae"

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
out_features = 10

[loss]
type = "softmax_cross_entropy"

[optimizer]
type = "sgd"
learning_rate = 0.1
""")
    result = run("validate", str(config))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"""error: 3 problems found in {config}:
  - model.layers[0] (conv2d).padding: Input should be 'valid' or 'same' (received 'smae'); \
did you mean 'same'?
  - model.layers[2] (dense).out_features: unknown key 'out_features'; lamina calls it 'units'; \
known keys: units, use_bias, initializer
  - optimizer (sgd).learning_rate: unknown key 'learning_rate'; lamina calls it 'lr'; known \
keys: lr, momentum, nesterov, weight_decay
"""
