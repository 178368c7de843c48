"""Plugins defined where you work (issue 21): a layer written in the test itself is
certified, trained, saved, loaded and exported without a package; a run made with it
names its module when used without it; `lamina ... -p FILE.py` does the same from the
command line."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

import lamina
from lamina import Example, Layer, LayerConfig, PluginError, UnknownPluginError
from lamina.cli import main
from lamina.testing import check_layer

CONFIG = {
    "model": {"input_shape": [6], "layers": [
        {"type": "dense", "units": 8}, {"type": "softsign"}, {"type": "dense", "units": 3}]},
    "loss": {"type": "softmax_cross_entropy"},
    "optimizer": {"type": "adam", "lr": 0.01},
    "training": {"epochs": 2, "batch_size": 16, "validation_split": 0.0},
}


class Softsign(Layer):
    """y = x / (1 + |x|); dy/dx = 1 / (1 + |x|)^2."""

    name = "softsign"
    Config = LayerConfig

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, *, training):
        self.cache = x
        return x / (1 + np.abs(x))

    def backward(self, dy, *, input_grad=True):
        x = self.cached()
        return dy / (1 + np.abs(x)) ** 2

    def export_onnx(self, graph, inputs, name):
        return graph.add("Softsign", inputs, name)

    @classmethod
    def examples(cls):
        return [Example({}, (4,)), Example({}, (2, 3, 3))]


def blobs(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three separable classes of 6-dimensional points."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 6)).astype(np.float32)
    x[np.arange(n), y] += 2.0
    return x, y


def test_a_layer_defined_here_is_certified_trained_saved_loaded_and_exported(tmp_path):
    # certified with the suite, as a notebook's first step
    results = check_layer(Softsign)
    assert results and all(r.passed or r.skipped for r in results), \
        [str(r) for r in results if not (r.passed or r.skipped)]

    x, y = blobs()
    model = lamina.Model(CONFIG, plugins=[Softsign], seed=3)
    history = model.fit(x, y, verbose=0)
    assert len(history) == 2 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert "softsign_1" in model.summary() and f"{__name__} (local)" in model.summary()
    model.save(tmp_path / "run")

    again = lamina.Model.load(tmp_path / "run", plugins=[Softsign])
    np.testing.assert_array_equal(again.predict(x), model.predict(x))

    with pytest.raises(UnknownPluginError) as info:
        lamina.Model.load(tmp_path / "run")
    message = str(info.value)
    assert f"the local layer plugin 'softsign' ({__name__}.Softsign" in message
    assert "plugins=[Softsign]" in message and "Nothing in" in message
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())["plugins"]
    assert record["softsign"]["local"] is True and record["softsign"]["file"] == __file__

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model.export(tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    [probabilities] = session.run(["probabilities"], {"x": x})
    np.testing.assert_allclose(probabilities, model.predict(x), atol=1e-6)


def test_a_local_plugin_gets_the_validation_an_installed_one_gets():
    class Nameless(Softsign):
        name = "Not A Name"

    with pytest.raises(PluginError, match=r"local plugin .*Nameless.* cannot be used: .*"
                                          r"has name 'Not A Name'"):
        lamina.Model(CONFIG, plugins=[Nameless])


def test_a_local_plugin_never_replaces_another():
    class Relu(Softsign):
        name = "relu"

    with pytest.raises(PluginError, match="'relu' is provided twice: by lamina 0.1.0 .* give "
                                          "the local plugin another `name`"):
        lamina.load_registry(plugins=[Relu])
    # the same cell run twice in a notebook: two classes of one qualified name
    first = type("Softsign", (Softsign,), {"__qualname__": "Softsign"})
    second = type("Softsign", (Softsign,), {"__qualname__": "Softsign"})
    with pytest.raises(PluginError, match="the code defining Softsign ran twice"):
        lamina.load_registry(plugins=[first, second])


@pytest.mark.parametrize(("plugins", "message"), [
    (Softsign, r"plugins must be a list .* write plugins=\[Softsign\]"),
    ([Softsign()], r"plugins\[0\] is an instance of .*Softsign; pass the class itself"),
    ([dict], r"plugins\[0\] is the class builtins.dict, which is not a lamina plugin"),
    (["json"], r"module 'json' has none of lamina's hooks"),
    (["no_such_module_here"], r"no module named 'no_such_module_here'.*give its path"),
    ([3], r"plugins\[0\] is 3; expected a plugin class"),
])
def test_what_is_not_a_plugin_is_refused_with_what_is_expected(plugins, message):
    with pytest.raises(PluginError, match=message):
        lamina.Model(CONFIG, plugins=plugins)


def test_the_same_plugin_given_twice_counts_once_and_none_is_no_plugin():
    assert lamina.load_registry(plugins=[Softsign, Softsign]).layers["softsign"].cls \
        is Softsign
    assert lamina.load_registry(plugins=(p for p in [Softsign])).layers["softsign"]
    assert "softsign" not in lamina.load_registry(plugins=None).layers


def test_plugins_and_a_registry_are_not_both_given():
    with pytest.raises(lamina.InputError, match="pass plugins or registry, not both"):
        lamina.Model(CONFIG, plugins=[Softsign],
                     registry=lamina.load_registry(plugins=[Softsign]))


PLUGIN_FILE = textwrap.dedent('''
    import numpy as np
    from lamina import Example, Layer, LayerConfig, hookimpl


    class Cube(Layer):
        name = "cube_{tag}"
        Config = LayerConfig

        def compute_output_shape(self, input_shape):
            return input_shape

        def forward(self, x, *, training):
            self.cache = x
            return x ** 3

        def backward(self, dy, *, input_grad=True):
            return 3 * self.cached() ** 2 * dy

        @classmethod
        def examples(cls):
            return [Example({{}}, (3,))]


    @hookimpl
    def lamina_register_layers():
        return [Cube]
''')


@pytest.fixture
def plugin_file(tmp_path, request):
    """A plugin module in a file of its own, with a layer named after the test."""
    tag = f"t{abs(hash(request.node.name)) % 10**8}"
    path = tmp_path / f"local_layers_{tag}.py"
    path.write_text(PLUGIN_FILE.format(tag=tag))
    yield path, f"cube_{tag}"
    import sys

    sys.modules.pop(path.stem, None)


def test_train_and_evaluate_take_a_local_plugin_module(tmp_path, plugin_file, mnist_root,
                                                       capsys):
    path, name = plugin_file
    config = tmp_path / "net.json"
    config.write_text(json.dumps({
        "model": {"input_shape": [1, 28, 28], "layers": [
            {"type": "flatten"}, {"type": "dense", "units": 12}, {"type": name},
            {"type": "dense", "units": 10}]},
        "training": {"epochs": 1, "limit": 600, "batch_size": 50}}))
    run = tmp_path / "run"
    args = ["--data-dir", mnist_root, "--quiet"]
    assert main(["train", str(config), "--run-dir", str(run), *args]) == 2
    assert f"unknown layer type '{name}'" in capsys.readouterr().err
    assert not run.exists()

    assert main(["train", str(config), "-p", str(path), "--run-dir", str(run), *args]) == 0
    assert main(["evaluate", str(run), "-p", str(path), "--data-dir", mnist_root]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--data-dir", mnist_root]) == 2
    err = capsys.readouterr().err
    assert f"the local layer plugin '{name}' ({path.stem}.Cube, in {path})" in err
    assert f"-p {path} on the command line" in err
    for command in (["validate", str(config)], ["summary", str(config)]):
        assert main([*command, "-p", str(path)]) == 0
    assert f"{path.stem} (local)" in capsys.readouterr().out

    # every command that reads the run takes the module again, and needs it
    sample = tmp_path / "x.npy"
    np.save(sample, np.zeros((1, 28, 28), np.float32))
    for command in (["train", "--resume", str(run), "--epochs", "2", *args],
                    ["predict", str(run), str(sample)],
                    ["export", str(run), str(tmp_path / "m.onnx")]):
        assert main(command) == 2
        assert f"the local layer plugin '{name}'" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--epochs", "2", "-p", str(path), *args]) == 0
    assert main(["predict", str(run), str(sample), "-p", str(path)]) == 0
    capsys.readouterr()
    assert main(["export", str(run), str(tmp_path / "m.onnx"), "-p", str(path)]) == 2
    assert "cannot be exported to ONNX (no export_onnx() method)" in capsys.readouterr().err


def test_lamina_check_with_a_local_module_certifies_its_plugins(plugin_file, capsys):
    path, name = plugin_file
    assert main(["check", "--quick", "-p", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{name}" in out and "1 plugins" in out and "relu" not in out


@pytest.mark.parametrize(("spec", "message"), [
    ("missing.py", "-p missing.py: cannot read missing.py"),
    ("bad name.py", "cannot be a module's name"),
    ("raises.py", "failed to import: ZeroDivisionError: division by zero (line 2 of"),
])
def test_a_bad_plugin_argument_is_one_line_with_the_fix(tmp_path, monkeypatch, capsys, spec,
                                                        message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad name.py").write_text("x = 1\n")
    (tmp_path / "raises.py").write_text("import numpy\n1 / 0\n")
    assert main(["layers", "-p", spec]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_damaged_provenance_never_stops_a_load(tmp_path):
    x, y = blobs()
    model = lamina.Model(CONFIG, plugins=[Softsign], seed=3)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "run")
    record_path = tmp_path / "run" / "provenance.json"
    record = json.loads(record_path.read_text())
    record["plugins"]["softsign"]["provider"] = []  # a tampered entry: not a name
    record["plugins"]["zzz"] = {"kind": "layer", "provider": "zzz-dist"}  # not this config's
    record_path.write_text(json.dumps(record))
    again = lamina.Model.load(tmp_path / "run", plugins=[Softsign])
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    with pytest.raises(lamina.ConfigError, match="unknown layer type 'softsign'"):
        lamina.Model.load(tmp_path / "run")  # the config's own message, without the hint


CHANGING = textwrap.dedent('''
    import numpy as np
    from lamina import Example, Layer, hookimpl
    from sibling_helper import FACTOR


    class Scaled(Layer):
        name = "scaled_local"

        def compute_output_shape(self, input_shape):
            return input_shape

        def forward(self, x, *, training):
            self.cache = x
            return FACTOR * x

        def backward(self, dy, *, input_grad=True):
            self.cached()
            return FACTOR * dy

        @classmethod
        def examples(cls):
            return [Example({}, (3,))]


    @hookimpl
    def lamina_register_layers():
        return [Scaled]
''')


def test_a_plugin_file_imports_its_siblings_and_is_loaded_again_when_edited(tmp_path):
    import sys

    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "sibling_helper.py").write_text("FACTOR = 2.0\n")
    path = folder / "scaled_local_plugin.py"
    path.write_text(CHANGING)
    config = {"model": {"input_shape": [3], "layers": [{"type": "scaled_local"}]}}
    x = np.ones((1, 3), np.float32)
    try:
        first = lamina.Model(config, plugins=[path])  # a pathlib.Path works as a str does
        np.testing.assert_array_equal(first.network.forward(x, training=False), 2 * x)
        path.write_text(CHANGING.replace("FACTOR * x", "FACTOR * x + 1"))
        second = lamina.Model(config, plugins=[str(path)])
        np.testing.assert_array_equal(second.network.forward(x, training=False), 2 * x + 1)
        again = lamina.Model(config, plugins=[str(path)])  # unchanged: the same module
        assert type(again.network.nodes[0].layer) is type(second.network.nodes[0].layer)
    finally:
        for name in ("scaled_local_plugin", "sibling_helper"):
            sys.modules.pop(name, None)
        sys.path.remove(str(folder.resolve()))


def test_a_plugin_file_named_like_another_module_is_refused(tmp_path):
    path = tmp_path / "wave.py"  # the standard library's wave, not imported yet
    path.write_text("x = 1\n")
    with pytest.raises(PluginError, match=r"a module named 'wave' exists already .* rename "
                                          r"the file"):
        lamina.load_registry(plugins=[str(path)])


def test_an_installed_plugins_module_given_again_is_refused_naming_it():
    with pytest.raises(PluginError, match=r"local plugin 'lamina.plugins.relu' is the module "
                                          r"of the installed plugin .* leave it out"):
        lamina.load_registry(plugins=["lamina.plugins.relu"])
