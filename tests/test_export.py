"""ONNX export: ONNX Runtime agrees with lamina on every shipped config, a trained run and
the example plugin; a layer that cannot export is named."""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from lamina.cli import main
from lamina.export import ExportError, to_onnx
from lamina.registry import load_registry

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

SHIPPED = ["mnist_cnn", "residual_cnn"]


def run_onnx(model_proto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    [probabilities] = session.run(["probabilities"], {"x": x})
    return probabilities


def randomised(model: lamina.Model, seed: int) -> lamina.Model:
    """Non-trivial values in every array: biases and running statistics too."""
    rng = np.random.default_rng(seed)
    for key, value in {**model.network.params(), **model.network.state()}.items():
        if key.endswith("running_var"):
            value[...] = rng.uniform(0.5, 2.0, value.shape)
        else:
            value[...] = rng.normal(0.0, 0.3, value.shape)
    return model


@pytest.mark.parametrize("config", SHIPPED)
def test_onnx_runtime_agrees_with_predict_on_every_shipped_config(config):
    model = randomised(lamina.Model(config, seed=1), seed=2)
    x = np.random.default_rng(3).random((7, 1, 28, 28), dtype=np.float32)
    expected = model.predict(x)
    got = run_onnx(to_onnx(model.network, model.loss), x)
    assert got.shape == expected.shape == (7, 10)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_a_trained_run_exports_from_the_command_line(tmp_path, tiny_config, mnist_root,
                                                     capsys):
    from lamina.data import load_dataset

    run, out = tmp_path / "run", tmp_path / "tiny.onnx"
    assert main(["train", str(tiny_config), "--epochs", "1", "--limit", "500", "--quiet",
                 "--run-dir", str(run), "--data-dir", mnist_root]) == 0
    capsys.readouterr()
    assert main(["export", str(run), str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out} (ONNX opset 17, ") and "weights epoch 1 (last)" in said
    test = load_dataset("mnist", data_dir=mnist_root, parts=("test",))
    x = test.test_x[:64]
    expected = lamina.Model.load(run).predict(x)
    np.testing.assert_allclose(run_onnx(onnx.load(out), x), expected, atol=1e-5, rtol=0)
    # an existing file is kept unless --force; a failed export writes nothing
    before = out.read_bytes()
    assert main(["export", str(run), str(out)]) == 2
    assert "exists; choose another name, or pass --force" in capsys.readouterr().err
    assert main(["export", str(run), str(out), "--weights", "best", "--force"]) == 0
    assert "weights epoch 1 of 1 (best validation loss" in capsys.readouterr().out
    assert out.read_bytes() != before  # its description names the weights
    assert main(["export", str(run), str(tmp_path / "model.bin")]) == 2
    assert "extension" in capsys.readouterr().err
    assert not (tmp_path / "model.bin").exists()


class NoExport(lamina.Layer):
    """An identity layer without export_onnx."""

    name = "no_export"

    class Config(lamina.LayerConfig):
        pass

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, *, training):
        return x

    def backward(self, dy, *, input_grad=True):
        return dy

    @classmethod
    def examples(cls):
        return [lamina.Example(config={}, input_shape=(3,))]


class ReturnsNothing(NoExport):
    """An identity layer whose export_onnx adds a node but returns None."""

    name = "returns_nothing"

    def export_onnx(self, graph, inputs, name):
        graph.add("Identity", inputs, name)


class ExitsInExport(NoExport):
    """An export_onnx that calls sys.exit()."""

    name = "exits_in_export"

    def export_onnx(self, graph, inputs, name):
        raise SystemExit(5)


def acme(*layers) -> lamina.Model:
    from lamina.registry import Provider

    class Plugin:
        @lamina.hookimpl
        def lamina_register_layers(self):
            return [NoExport, ReturnsNothing, ExitsInExport]

    registry = load_registry(load_entry_points=False, extra_plugins=(
        (Plugin(), Provider("acme-layers", "1.0", "acme.layers")),))
    return lamina.Model({
        "model": {"input_shape": [4], "layers": [*({"type": t} for t in layers),
                                                 {"type": "dense", "units": 3}]},
        "loss": {"type": "softmax_cross_entropy"}, "optimizer": {"type": "sgd", "lr": 0.1},
    }, registry=registry)


def test_every_layer_without_export_onnx_is_named_at_once_with_its_provider():
    model = acme("no_export", "no_export")
    with pytest.raises(ExportError, match=r"2 layers of this network cannot be exported to "
                                          r"ONNX \(no export_onnx\(\) method\): "
                                          r"model.layers\[0\] \(no_export\) 'no_export_1' "
                                          r"\(acme.layers, from acme-layers 1.0\); "
                                          r"model.layers\[1\] \(no_export\) 'no_export_2'"):
        to_onnx(model.network, model.loss)


@pytest.mark.parametrize(("layer", "message"), [
    ("returns_nothing", r"'returns_nothing_1' \(acme.layers, from acme-layers 1.0\): "
                        r"export_onnx\(\) returned None; it must return the name"),
    ("exits_in_export", r"raised SystemExit in export_onnx\(\): 5. This is a bug in the plugin"),
])
def test_a_plugin_export_that_misbehaves_is_named(layer, message):
    from lamina.errors import PluginError

    model = acme(layer)
    with pytest.raises(PluginError, match=message):
        to_onnx(model.network, model.loss)


def test_a_broken_onnx_install_is_one_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "onnx":
            raise AttributeError("module 'google.protobuf' has no attribute 'x'")
        return real(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "onnx", raising=False)
    monkeypatch.setattr(builtins, "__import__", broken)
    model = lamina.Model("mnist_cnn")
    with pytest.raises(ExportError, match=r"onnx package is installed but cannot be imported "
                                          r"\(AttributeError: .*pip install --force-reinstall"):
        to_onnx(model.network, model.loss)


def test_without_onnx_the_message_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    model = lamina.Model("mnist_cnn")
    with pytest.raises(ExportError, match=r"pip install 'lamina\[onnx\]'"):
        to_onnx(model.network, model.loss)


def test_model_export_writes_a_file_onnx_runtime_runs(tmp_path):
    model = randomised(lamina.Model("mnist_cnn", seed=4), seed=5)
    path = model.export(tmp_path / "model.onnx")
    x = np.random.default_rng(6).random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(run_onnx(onnx.load(path), x), model.predict(x), atol=1e-5,
                               rtol=0)
    with pytest.raises(ExportError, match="exists"):
        model.export(path)


def test_the_example_plugin_package_exports_its_swish_layer_and_loss():
    """A third-party layer exports through its own export_onnx (docs/examples/lamina-swish)."""
    from pathlib import Path

    pytest.importorskip("lamina_swish")
    config = Path(__file__).resolve().parents[1] / "docs/examples/lamina-swish/swish_mnist.toml"
    model = randomised(lamina.Model(config, seed=7), seed=8)
    x = np.random.default_rng(9).random((5, 1, 28, 28), dtype=np.float32)
    proto = to_onnx(model.network, model.loss)
    assert [n.op_type for n in proto.graph.node].count("Sigmoid") == 2
    np.testing.assert_allclose(run_onnx(proto, x), model.predict(x), atol=1e-5, rtol=0)


def test_layer_names_that_collide_with_the_graph_s_names_still_export(tmp_path):
    model = randomised(lamina.Model({
        "model": {"input_shape": [6], "layers": [
            {"type": "dense", "units": 5, "name": "x"},
            {"type": "relu", "name": "softmax"},
            {"type": "dense", "units": 3, "name": "probabilities"},
        ]},
        "loss": {"type": "softmax_cross_entropy"}, "optimizer": {"type": "sgd", "lr": 0.1},
    }), seed=10)
    x = np.random.default_rng(11).random((4, 6), dtype=np.float32)
    np.testing.assert_allclose(run_onnx(to_onnx(model.network, model.loss), x),
                               model.predict(x), atol=1e-6, rtol=0)
    for bad, message in [(tmp_path / "model.bin", "extension"),
                         (tmp_path / "missing" / "m.onnx", "does not exist")]:
        with pytest.raises(ExportError, match=message):
            model.export(bad)
