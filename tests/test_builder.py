"""Networks from Python (issue 21): lamina.Sequential and lamina.layers make the config a
CLI user writes, checked at each call; the config stays the single source of truth."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina import ConfigError, PluginError, UnknownPluginError
from lamina.cli import main
from lamina.config import load_config
from lamina.plan import make_plan

L = lamina.layers


@pytest.fixture(scope="module")
def registry():
    return lamina.load_registry()


def mnist_cnn() -> lamina.Sequential:
    return lamina.Sequential((1, 28, 28), [
        L.conv2d(filters=32, kernel_size=3), L.relu(), L.maxpool2d(pool_size=2),
        L.conv2d(filters=64, kernel_size=3), L.relu(), L.maxpool2d(pool_size=2),
        L.flatten(), L.dropout(rate=0.5), L.dense(units=10),
    ], optimizer={"type": "adam", "lr": 1e-3}, training={"epochs": 15, "batch_size": 128})


def test_the_shipped_configs_rebuilt_in_code_resolve_to_the_same_config(registry):
    assert load_config(mnist_cnn().to_dict(), registry).to_dict() == \
        load_config("mnist_cnn", registry).to_dict()
    residual = lamina.Sequential((1, 28, 28), [
        L.conv2d(filters=16, kernel_size=3, stride=2, padding=1), L.relu(),
        L.residual(filters=16), L.maxpool2d(pool_size=2), L.flatten(), L.dense(units=10),
    ], training={"dataset": "mnist", "epochs": 5, "batch_size": 128})
    assert load_config(residual.to_dict(), registry).to_dict() == \
        load_config("residual_cnn", registry).to_dict()
    assert residual.config.to_dict() == make_plan("residual_cnn", registry).config.to_dict()


def test_to_toml_is_the_file_a_cli_user_writes(tmp_path, capsys):
    seq = mnist_cnn()
    text = seq.to_toml()
    assert tomllib.loads(text) == seq.to_dict()
    assert text.startswith("[model]\ninput_shape = [1, 28, 28]\n\n[[model.layers]]\n"
                           "type = \"conv2d\"\nfilters = 32\nkernel_size = 3\n")
    path = tmp_path / "net.toml"
    assert seq.to_toml(path) == path.read_text()
    assert main(["validate", str(path)]) == 0
    assert "valid (9 layers, output (10,), 34,826 parameters)" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        seq.to_toml(path)
    seq.to_toml(path, overwrite=True)


def test_a_spec_is_checked_at_the_call_that_makes_it():
    with pytest.raises(ConfigError, match=r"conv2d.filters: Input should be greater than or "
                                          r"equal to 1 \(received 0\)"):
        L.conv2d(filters=0, kernel_size=3)
    with pytest.raises(ConfigError, match=r"dense.unit: unknown key 'unit'; did you mean "
                                          r"'units'\?"):
        L.dense(unit=3)
    with pytest.raises(ConfigError, match=r"dense.units: Input should be a valid integer"):
        L.dense(units="3")
    with pytest.raises(ConfigError, match=r"relu.name: String should match pattern"):
        L.relu(name="block.relu")
    with pytest.raises(AttributeError, match=r"did you mean 'conv2d'\?"):
        L.conv2()
    with pytest.raises(UnknownPluginError, match=r"did you mean 'maxpool2d'\?"):
        lamina.layers("maxpol2d", pool_size=2)
    assert "conv2d" in dir(L) and "residual" in dir(L)
    assert "filters: number of output channels" in L.conv2d.__doc__


def test_a_whole_network_is_checked_when_made():
    with pytest.raises(ConfigError, match=r"model.layers\[1\] \(dense\) 'dense_1' cannot take "
                                          r"its input"):
        lamina.Sequential((1, 8, 8), [L.conv2d(filters=2, kernel_size=3), L.dense(units=3)])
    with pytest.raises(lamina.InputError, match="layers must be a list of specs"):
        lamina.Sequential((4,), ["dense"])
    with pytest.raises(ConfigError, match=r"in lamina.Sequential\(...\):\n  - optimizer "
                                          r"\(sgd\).lr: Input should be greater than 0"):
        lamina.Sequential((4,), [L.dense(units=3)], optimizer={"type": "sgd", "lr": -1})


class Cube(lamina.Layer):
    name = "cube_builder"

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, *, training):
        self.cache = x
        return x ** 3

    def backward(self, dy, *, input_grad=True):
        return 3 * self.cached() ** 2 * dy

    @classmethod
    def examples(cls):
        return [lamina.Example({}, (3,))]


def test_a_local_class_is_a_type_and_its_model_registers_it():
    seq = lamina.Sequential((6,), [L.dense(units=4, name="hidden"), lamina.layers(Cube),
                                   L.dense(units=3)], optimizer="sgd")
    assert seq.plugins == (Cube,)
    assert seq.to_dict()["model"]["layers"][1] == {"type": "cube_builder"}
    model = lamina.Model(seq)
    x = np.random.default_rng(0).random((8, 6), dtype=np.float32)
    model.fit(x, np.arange(8) % 3, epochs=1, validation_split=0.0, verbose=0)
    assert "hidden" in model.summary() and "cube_builder_1" in model.summary()
    with pytest.raises(PluginError, match="pass its class"):
        lamina.layers(Cube())
    with pytest.raises(PluginError, match="received the loss class"):
        lamina.layers(lamina.load_registry().loss("softmax_cross_entropy"))


def test_inputs_make_a_dag_and_names_are_the_validators():
    seq = lamina.Sequential((4,), [
        L.dense(units=4, name="left"), L.dense(units=4, inputs=["input"]),
        L.add(inputs=["left", "dense_1"]), L.dense(units=2)])
    layers = seq.config.to_dict()["model"]["layers"]
    assert [t["name"] for t in layers] == ["left", "dense_1", "add_1", "dense_2"]
    assert layers[2]["inputs"] == ["left", "dense_1"]


def test_blocks_can_be_defined_and_used_from_code():
    blocks = {"mlp": {"settings": {"width": "int"}, "layers": [
        {"type": "dense", "units": "${width}"}, {"type": "relu"}]}}
    seq = lamina.Sequential((5,), [{"type": "mlp", "width": 4}, L.dense(units=2)],
                            blocks=blocks)
    assert seq.to_dict()["blocks"] == blocks
    assert [n.name for n in seq.config.nodes] == ["mlp_1.dense_1", "mlp_1.relu_1", "dense_1"]
    assert tomllib.loads(seq.to_toml()) == seq.to_dict()
    with pytest.raises(UnknownPluginError):
        lamina.layers("mlp", width=3)  # a config block is a type of its own config only
    with pytest.raises(ConfigError, match=r"model.layers\[0\] \(mlp\).width: required key"):
        lamina.Sequential((5,), [{"type": "mlp"}, L.dense(units=2)], blocks=blocks)


settings_of = {
    "dense": st.fixed_dictionaries({"units": st.integers(1, 9)},
                                   optional={"use_bias": st.booleans()}),
    "relu": st.just({}),
    "dropout": st.fixed_dictionaries({"rate": st.floats(0.0, 0.9)}),
    "batchnorm": st.fixed_dictionaries({}, optional={
        "momentum": st.floats(0.0, 0.99), "epsilon": st.floats(1e-6, 1e-2)}),
}


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(sorted(settings_of)).flatmap(
    lambda kind: st.tuples(st.just(kind), settings_of[kind])), min_size=1, max_size=6))
def test_builder_to_toml_to_config_and_back_is_the_same_config(layers):
    registry = L.registry
    seq = lamina.Sequential((5,), [lamina.layers(kind, **kw) for kind, kw in layers]
                            + [L.dense(units=3)])
    document = seq.to_dict()
    assert tomllib.loads(seq.to_toml()) == document
    config = load_config(document, registry)
    assert load_config(config.to_dict(), registry).to_dict() == config.to_dict()
    assert make_plan(config, registry).config.to_dict() == seq.config.to_dict()


def test_python_values_a_notebook_has_are_taken_as_the_document_writes_them():
    seq = lamina.Sequential(np.array([6]), (s for s in [
        L.dense(units=np.int64(4)), L.dropout(rate=np.float64(0.5)), lamina.layers(Cube),
        L.dense(units=3)]), optimizer={"type": "sgd", "lr": 0.1})
    assert seq.to_dict()["model"] == {"input_shape": [6], "layers": [
        {"type": "dense", "units": 4}, {"type": "dropout", "rate": 0.5},
        {"type": "cube_builder"}, {"type": "dense", "units": 3}]}
    assert tomllib.loads(seq.to_toml()) == seq.to_dict()
    assert repr(seq).splitlines()[3] == "    lamina.layers(Cube),"
    assert repr(seq).endswith("], optimizer={'type': 'sgd', 'lr': 0.1})")
    with pytest.raises(lamina.InputError, match=r"write input_shape=\(4,\) for a vector"):
        lamina.Sequential(4, [L.dense(units=3)])
    with pytest.raises(lamina.InputError, match=r"write inputs=\['ab'\]"):
        L.add(inputs="ab")
