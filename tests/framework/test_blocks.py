"""Blocks (issue 21): sub-networks of existing layers used as a layer type, defined in a
config's [blocks] or by a plugin; expanded at validation, named through, summarised
folded, certified like a layer."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import Field

import lamina
from lamina import Block, ConfigError, Example, LayerConfig, PluginError, StateError
from lamina.config import load_config, validate_config
from lamina.registry import load_registry
from lamina.testing import check_layer, run_checks

SPELLED_OUT = Path(__file__).resolve().parents[1] / "data" / "residual_cnn_spelled_out.toml"

BLOCKS = {
    "conv_bn_relu": {
        "settings": {"filters": "int", "kernel_size": {"type": "int", "default": 3}},
        "layers": [
            {"type": "conv2d", "filters": "${filters}", "kernel_size": "${kernel_size}",
             "padding": "same", "use_bias": False},
            {"type": "batchnorm"},
            {"type": "relu"},
        ],
    },
}


def network(*layers: dict, blocks: dict | None = None, input_shape=(1, 8, 8)) -> dict:
    document = {"model": {"input_shape": list(input_shape), "layers": list(layers)},
                "optimizer": {"type": "sgd", "lr": 0.1}}
    if blocks is not None:
        document["blocks"] = blocks
    return document


HEAD = ({"type": "flatten"}, {"type": "dense", "units": 3})


@pytest.fixture(scope="module")
def registry():
    return load_registry(load_entry_points=False)


def issues_of(document: dict, registry) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(document, registry)
    return [str(issue) for issue in info.value.issues]


# -- the built-in residual block and residual_cnn -------------------------------------------
def test_residual_cnn_with_the_block_trains_bit_identically_to_the_spelled_out_config():
    rng = np.random.default_rng(0)
    x, y = rng.random((192, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 192)
    block, spelled = lamina.Model("residual_cnn", seed=5), lamina.Model(SPELLED_OUT, seed=5)
    assert block.summary().splitlines()[-3:] == spelled.summary().splitlines()[-3:]
    for model in (block, spelled):
        model.fit(x, y, epochs=2, batch_size=64, validation_split=0.25, verbose=0)
    ours, theirs = block.network.state_dict(), spelled.network.state_dict()
    renamed = {"residual_1.conv2d_1.W": "conv2d_2.W",
               "residual_1.batchnorm_1.gamma": "batchnorm_1.gamma",
               "residual_1.batchnorm_1.beta": "batchnorm_1.beta",
               "residual_1.batchnorm_1.running_mean": "batchnorm_1.running_mean",
               "residual_1.batchnorm_1.running_var": "batchnorm_1.running_var"}
    assert {renamed.get(k, k) for k in ours} == set(theirs)
    for key, value in ours.items():
        np.testing.assert_array_equal(value, theirs[renamed.get(key, key)], err_msg=key)
    assert block.history == spelled.history or [
        {k: v for k, v in r.items() if k != "seconds"} for r in block.history] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in spelled.history]


def test_a_state_saved_before_the_layers_became_a_block_is_named_renamed():
    block, spelled = lamina.Model("residual_cnn", seed=1), lamina.Model(SPELLED_OUT, seed=1)
    with pytest.raises(StateError, match=r"the layers were renamed, as putting them into a "
                                         r"block renames them"):
        block.network.load_state_dict(spelled.network.state_dict())


def test_block_arrays_are_named_through_the_block(registry):
    config = load_config("residual_cnn", registry)
    net = lamina.Network(config, registry, np.random.default_rng(0))
    assert [k for k in net.params() if k.startswith("residual_1.")] == [
        "residual_1.conv2d_1.W", "residual_1.batchnorm_1.gamma", "residual_1.batchnorm_1.beta"]
    assert [n.path for n in config.nodes if n.scope][0] == \
        "model.layers[2] (residual) > layers[0] (conv2d)"


def test_the_summary_folds_a_block_and_unfolds_it_on_request(registry):
    from lamina.plan import make_plan

    architecture = make_plan("residual_cnn", registry).architecture
    folded = architecture.summary()
    assert "residual_1   residual   (16, 14, 14)   2,368  lamina 0.1.0" in folded
    assert "conv2d_1" in folded and "batchnorm" not in folded
    expanded = architecture.summary(expand=True).splitlines()
    rows = [line.split()[:2] for line in expanded if "└" in line]
    assert rows == [["└", "conv2d_1"], ["└", "batchnorm_1"], ["└", "add_1"], ["└", "relu_1"]]
    add = next(line for line in expanded if "add_1" in line)
    assert "input, batchnorm_1" in add  # the block's input, by the name the block uses


def test_the_stored_config_keeps_the_block_and_loads_back_equal(registry):
    config = load_config("residual_cnn", registry)
    written = config.to_dict()
    assert written["model"]["layers"][2] == {"type": "residual", "name": "residual_1",
                                             "filters": 16, "kernel_size": 3}
    again = validate_config(json.loads(json.dumps(written)), registry)
    assert dataclasses.replace(again, source=config.source) == config


# -- blocks defined in the config ---------------------------------------------------------
def test_a_config_block_expands_with_its_settings_and_writes_its_definition_back(registry):
    document = network({"type": "conv_bn_relu", "filters": 4},
                       {"type": "conv_bn_relu", "filters": 2, "kernel_size": 1}, *HEAD,
                       blocks=BLOCKS)
    config = validate_config(copy.deepcopy(document), registry)
    assert [n.name for n in config.nodes][:4] == [
        "conv_bn_relu_1.conv2d_1", "conv_bn_relu_1.batchnorm_1", "conv_bn_relu_1.relu_1",
        "conv_bn_relu_2.conv2d_1"]
    assert config.nodes[3].config.kernel_size == 1 and config.nodes[0].config.filters == 4
    written = config.to_dict()
    assert written["blocks"] == {"conv_bn_relu": {
        "settings": {"filters": "int", "kernel_size": {"type": "int", "default": 3}},
        "layers": BLOCKS["conv_bn_relu"]["layers"]}}
    again = validate_config(json.loads(json.dumps(written)), registry)
    assert dataclasses.replace(again, source=config.source) == config
    assert {use.provider for use in config.blocks} == {"config"}


def test_blocks_nest_and_their_layers_are_named_through_each(registry):
    blocks = {**BLOCKS, "stage": {"settings": {"width": "int"}, "layers": [
        {"type": "conv_bn_relu", "filters": "${width}"},
        {"type": "residual", "filters": "${width}"}]}}
    config = validate_config(network({"type": "stage", "width": 2}, *HEAD, blocks=blocks),
                             registry)
    names = [n.name for n in config.nodes]
    assert names[:4] == ["stage_1.conv_bn_relu_1.conv2d_1", "stage_1.conv_bn_relu_1.batchnorm_1",
                         "stage_1.conv_bn_relu_1.relu_1", "stage_1.residual_1.conv2d_1"]
    add = next(n for n in config.nodes if n.type == "add")
    # the nested block's input is the output of the layer before it, inside the outer block
    assert add.inputs == ("stage_1.conv_bn_relu_1.relu_1", "stage_1.residual_1.batchnorm_1")
    assert set(validate_config(config.to_dict(), registry).to_dict()["blocks"]) == {
        "stage", "conv_bn_relu"}


def test_a_block_is_one_input_one_output_and_a_dag_inside(registry):
    blocks = {"two_paths": {"settings": {}, "layers": [
        {"type": "relu"}, {"type": "dense", "units": 4, "inputs": ["input"]},
        {"type": "dense", "units": 4, "inputs": ["relu_1"]},
        {"type": "add", "inputs": ["dense_1", "dense_2"]}]}}
    config = validate_config(network({"type": "flatten"}, {"type": "two_paths"},
                                     {"type": "dense", "units": 3}, blocks=blocks), registry)
    inputs = {n.name: n.inputs for n in config.nodes}
    assert inputs["two_paths_1.relu_1"] == ("flatten_1",)
    assert inputs["two_paths_1.dense_1"] == ("flatten_1",)
    assert inputs["dense_1"] == ("two_paths_1.add_1",)
    model = lamina.Model(network({"type": "flatten"}, {"type": "two_paths"},
                                 {"type": "dense", "units": 3}, blocks=blocks))
    x = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    model.fit(x, np.arange(6) % 3, epochs=1, validation_split=0.0, verbose=0)


@pytest.mark.parametrize(("layers", "blocks", "expected"), [
    ([{"type": "conv_bn_relu", "filters": 0}], BLOCKS,
     "model.layers[0] (conv_bn_relu) > layers[0] (conv2d).filters: Input should be greater "
     "than or equal to 1 (received 0) (from conv_bn_relu.filters = 0)"),
    ([{"type": "conv_bn_relu"}], BLOCKS,
     "model.layers[0] (conv_bn_relu).filters: required key is missing"),
    ([{"type": "conv_bn_relu", "filters": 2, "filtres": 3}], BLOCKS,
     "model.layers[0] (conv_bn_relu).filtres: unknown key 'filtres'; did you mean 'filters'?"),
    ([{"type": "conv_bn_relu", "filters": "2"}], BLOCKS,
     "model.layers[0] (conv_bn_relu).filters: Input should be a valid integer"),
    ([{"type": "residual", "filters": 3}], None,
     "model.layers[0] (residual) > layers[2] (add) 'residual_1.add_1' cannot take its input"),
    ([{"type": "conv_bn_relu", "filters": 2}, {"type": "flatten",
                                                "inputs": ["conv_bn_relu_1.relu_1"]}], BLOCKS,
     "'conv_bn_relu_1.relu_1' is inside block 'conv_bn_relu_1', whose layers cannot be read "
     "from outside it; read the block's output, 'conv_bn_relu_1'"),
    ([{"type": "relu"}, {"type": "residual", "filters": 1, "inputs": ["input", "relu_1"]}],
     None, "model.layers[1] (residual).inputs: a block takes one input, received 2"),
    ([{"type": "relu", "name": "a.b"}], None, "model.layers[0].name: String should match"),
])
def test_a_mistake_in_a_use_gives_the_path_through_the_block(registry, layers, blocks,
                                                            expected):
    from lamina.plan import make_plan

    document = network(*layers, *HEAD[:0], blocks=blocks)
    document["model"]["layers"] += list(HEAD) if layers[-1]["type"] != "flatten" else [
        {"type": "dense", "units": 3}]
    with pytest.raises(ConfigError) as info:
        make_plan(document, registry)
    assert any(expected in str(issue) for issue in info.value.issues), \
        [str(i) for i in info.value.issues]


@pytest.mark.parametrize(("definition", "expected"), [
    ({"settings": {"n": "int"}, "layers": [{"type": "dense", "units": "${m}"}]},
     ["blocks.b.layers[0].units: ${m} names no setting of block 'b'",
      "blocks.b.settings.n: no layer of the block uses this setting"]),
    ({"settings": {"n": "integer"}, "layers": [{"type": "dense", "units": "${n}"}]},
     ["blocks.b.settings.n: unknown setting type 'integer'"]),
    ({"settings": {"n": {"type": "int", "default": 1.5}},
      "layers": [{"type": "dense", "units": "${n}"}]},
     ["blocks.b.settings.n.default: the default 1.5 is not of type int"]),
    ({"layers": [{"type": "rellu"}]},
     ["blocks.b.layers[0].type: unknown layer or block type 'rellu'; did you mean 'relu'?"]),
    ({"layers": []}, ["blocks.b.layers: List should have at least 1 item"]),
    ({"settings": {"t": "str"}, "layers": [{"type": "${t}"}]},
     ["blocks.b.layers[0].type: type cannot come from a setting"]),
    ({"layers": [{"type": "b"}]}, ["blocks.b: block 'b' contains itself (b > b)"]),
])
def test_a_mistake_in_a_definition_is_reported_once_at_the_definition(registry, definition,
                                                                       expected):
    found = issues_of(network({"type": "b"}, {"type": "b"}, *HEAD, blocks={"b": definition},
                              input_shape=(4,)), registry)
    for text in expected:
        assert sum(text in issue for issue in found) == 1, found
    assert not any(i.startswith("model.layers") for i in found), found


def test_a_config_block_cannot_take_a_plugin_name(registry):
    found = issues_of(network({"type": "flatten"}, blocks={"relu": {"layers": [
        {"type": "flatten"}]}}, input_shape=(4,)), registry)
    assert found == ["blocks.relu: 'relu' is already the name of the layer plugin "
                     "lamina.plugins.relu (lamina 0.1.0); a block defined here cannot replace "
                     "it: rename the block"]


def test_nesting_is_bounded(registry):
    blocks = {f"b{i}": {"layers": [{"type": f"b{i + 1}"}]} for i in range(10)}
    blocks["b10"] = {"layers": [{"type": "relu"}]}
    found = issues_of(network({"type": "b0"}, input_shape=(4,), blocks=blocks), registry)
    assert any("nested more than 8 deep" in issue for issue in found), found


# -- block plugins ------------------------------------------------------------------------
class DenseReluConfig(LayerConfig):
    units: int = Field(4, ge=1, le=64)


class DenseRelu(Block):
    name = "dense_relu"
    Config = DenseReluConfig

    @classmethod
    def layers(cls, config):
        return [{"type": "dense", "units": config.units}, {"type": "relu"}]

    @classmethod
    def examples(cls):
        return [Example({"units": 3}, (5,))]


def test_a_local_block_plugin_is_certified_and_used_in_a_model(tmp_path):
    results = check_layer(DenseRelu)
    assert [r.message for r in results if not r.passed] == []
    assert {"check_block_expansion", "check_gradient", "check_threads"} <= {
        r.check for r in results}
    model = lamina.Model(network({"type": "dense_relu", "units": 6}, *HEAD, input_shape=(5,)),
                         plugins=[DenseRelu])
    assert "dense_relu_1  dense_relu" in model.summary() and f"{__name__} (local)" in \
        model.summary()
    x = np.random.default_rng(0).random((9, 5), dtype=np.float32)
    model.fit(x, np.arange(9) % 3, epochs=1, validation_split=0.0, verbose=0)
    model.save(tmp_path / "run")
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())["plugins"]
    assert record["dense_relu"]["kind"] == "block" and record["dense_relu"]["local"]
    with pytest.raises(lamina.UnknownPluginError, match="the local block plugin 'dense_relu'"):
        lamina.Model.load(tmp_path / "run")
    np.testing.assert_array_equal(
        lamina.Model.load(tmp_path / "run", plugins=[DenseRelu]).predict(x), model.predict(x))


def test_layers_and_blocks_share_one_namespace():
    class Relu(DenseRelu):
        name = "relu"

    with pytest.raises(PluginError, match=r"'relu' is provided twice: .*, as a layer\)"):
        load_registry(plugins=[Relu])


@pytest.mark.parametrize(("layers", "expected"), [
    (lambda cls, config: 1 / 0, "the broken block's layers() raised ZeroDivisionError"),
    (lambda cls, config: {"type": "relu"}, "returned a dict, {'type': 'relu'}; expected a "
                                           "non-empty list of layer tables"),
    (lambda cls, config: [], "returned []; expected a non-empty list"),
])
def test_a_block_plugin_that_breaks_is_named(layers, expected):
    broken = type("Broken", (DenseRelu,), {"name": "broken", "layers": classmethod(layers),
                                           "__module__": __name__})
    with pytest.raises(ConfigError) as info:
        lamina.Model(network({"type": "broken"}, *HEAD, input_shape=(5,)), plugins=[broken])
    [issue] = info.value.issues
    assert issue.path == "model.layers[0] (broken)" and expected in issue.message
    assert f"{__name__}.Broken" in issue.message


def test_a_block_holding_a_broken_layer_fails_that_layers_check():
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "testing"))
    import broken

    class WrongBlock(DenseRelu):
        name = "wrong_block"

        @classmethod
        def layers(cls, config):
            return [{"type": "wrong_gradient_sign"}]

        @classmethod
        def examples(cls):
            return [Example({}, (3,))]

    failed = {r.check for r in run_checks(WrongBlock, plugins=[broken.WrongGradientSign])
              if not r.passed}
    assert "check_gradient" in failed


def test_a_block_whose_tables_do_not_validate_fails_its_expansion_check():
    class Typo(DenseRelu):
        name = "typo"

        @classmethod
        def layers(cls, config):
            return [{"type": "dense", "unit": 3}]

    [result] = [r for r in run_checks(Typo) if r.check == "check_block_expansion"]
    assert not result.passed
    assert "model.layers[0] (typo) > layers[0] (dense).unit: unknown key 'unit'" in \
        result.message


def test_lamina_check_config_certifies_its_own_blocks_on_their_uses(tmp_path, capsys):
    from lamina.cli import main
    from lamina.plan import make_plan
    from lamina.testing.blocks import config_block_classes

    document = network({"type": "conv_bn_relu", "filters": 4},
                       {"type": "conv_bn_relu", "filters": 4},
                       {"type": "conv_bn_relu", "filters": 2, "kernel_size": 1}, *HEAD,
                       blocks=BLOCKS, input_shape=(1, 28, 28))
    path = tmp_path / "net.json"
    path.write_text(json.dumps(document))
    registry = load_registry()
    [block] = config_block_classes(make_plan(document, registry), registry)
    # one example per distinct (settings, input shape), images cut to a size the block
    # takes and the gradient check can see past relu's kinks in
    assert [(e.id, e.config, e.input_shape) for e in block.examples()] == [
        ("conv_bn_relu_1", {"filters": 4, "kernel_size": 3}, (1, 4, 4)),
        ("conv_bn_relu_2", {"filters": 4, "kernel_size": 3}, (4, 4, 4)),
        ("conv_bn_relu_3", {"filters": 2, "kernel_size": 1}, (4, 4, 4))]
    assert main(["check", "--quick", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[2:10]}
    assert rows == {"conv2d": ["layer", "lamina"], "relu": ["layer", "lamina"],
                    "flatten": ["layer", "lamina"], "dense": ["layer", "lamina"],
                    "batchnorm": ["layer", "lamina"],
                    "softmax_cross_entropy": ["loss", "lamina"],
                    "sgd": ["optimizer", "lamina"], "conv_bn_relu": ["block", "config"]}
    assert "8 plugins" in out and "0 failures" in out
    assert main(["check", "relu", "--config", str(path)]) == 2
    assert "give plugin names or --config, not both" in capsys.readouterr().err


NESTED = {
    "inner": {"settings": {"u": "int"}, "layers": [
        {"type": "dense", "units": "${u}"}, {"type": "add", "inputs": ["input", "dense_1"]}]},
    "outer": {"settings": {"u": "int"}, "layers": [
        {"type": "inner", "u": "${u}"}, {"type": "relu"}]},
}


def test_nested_config_blocks_read_their_input_and_are_listed_in_config_order(registry):
    from lamina.plan import make_plan
    from lamina.testing.blocks import config_block_classes
    from lamina.testing.report import run_config_report

    document = network({"type": "outer", "u": 4}, {"type": "outer", "u": 4},
                       {"type": "dense", "units": 3}, blocks=NESTED, input_shape=(4,))
    config = validate_config(document, registry)
    assert [(u.name, u.inputs) for u in config.blocks] == [
        ("outer_1", ("input",)), ("outer_1.inner_1", ("input",)),
        ("outer_2", ("outer_1.relu_1",)), ("outer_2.inner_1", ("outer_1.relu_1",))]
    plan = make_plan(document, registry)
    assert {cls.name for cls in config_block_classes(plan, registry)} == {"inner", "outer"}
    text, failed = run_config_report(plan, registry, quick=True)
    assert failed == 0, text


class RateConfig(LayerConfig):
    rate: float = Field(0.0, ge=0.0, lt=1.0)


def test_a_block_holding_a_dropout_at_rate_0_is_not_held_to_draw(registry):
    class Dense2Dropout(Block):
        name = "dense_dropout_t"
        Config = RateConfig

        @classmethod
        def layers(cls, config):
            return [{"type": "dense", "units": 6}, {"type": "dropout", "rate": config.rate}]

        @classmethod
        def examples(cls):
            return [Example({}, (4,), id="rate_0"), Example({"rate": 0.5}, (4,), id="rate_half")]

    results = run_checks(Dense2Dropout)
    assert [r.message for r in results if not r.passed] == []
    ran = {(r.example, r.check) for r in results}
    assert ("rate_half", "check_training_flag") in ran
    assert ("rate_0", "check_training_deterministic") in ran


def test_a_bias_before_a_batchnorm_does_not_fail_the_gradient_checks():
    """Its gradient is exactly 0: both sides of each comparison are rounding."""
    class ConvBNReLU(Block):
        name = "conv_bn_relu_t"
        Config = DenseReluConfig

        @classmethod
        def layers(cls, config):
            return [{"type": "conv2d", "filters": config.units, "kernel_size": 3,
                     "padding": "same"}, {"type": "batchnorm"}, {"type": "relu"}]

        @classmethod
        def examples(cls):
            return [Example({"units": 2}, (2, 3, 3)), Example({"units": 3}, (1, 4, 4))]

    assert [r.message for r in check_layer(ConvBNReLU) if not r.passed] == []


def test_a_definition_mistake_is_reported_once_however_many_uses(registry):
    blocks = {"b": {"settings": {"f": "int"}, "layers": [
        {"type": "dense", "units": "${f}", "bogus": 3},
        {"type": "relu", "inputs": ["nothere"]}]}}
    found = issues_of(network({"type": "b", "f": 0}, {"type": "b", "f": 2}, *HEAD,
                              input_shape=(4,), blocks=blocks), registry)
    assert found == [
        "model.layers[0] (b) > layers[0] (dense).units: Input should be greater than or equal "
        "to 1 (received 0) (from b.f = 0)",
        "blocks.b.layers[0] (dense).bogus: unknown key 'bogus'; known keys: units, use_bias, "
        "initializer",
        "blocks.b.layers[1] (relu).inputs[0]: no layer named 'nothere' in block 'b'; the "
        "layers are: input, dense_1"]


def test_a_small_config_of_nested_blocks_cannot_make_validation_slow(registry):
    blocks = {f"b{i}": {"layers": [{"type": f"b{i + 1}"}] * 10} for i in range(6)}
    blocks["b6"] = {"layers": [{"type": "relu"}]}
    found = issues_of(network({"type": "b0"}, input_shape=(4,), blocks=blocks), registry)
    assert found == ["model.layers: the network would have more than 10,000 layers once its "
                     "blocks are expanded; lamina allows at most that many"]


def test_a_plugin_block_cannot_name_a_block_the_config_defines(registry):
    class UsesConfigBlock(DenseRelu):
        name = "uses_config_block"

        @classmethod
        def layers(cls, config):
            return [{"type": "conv_bn_relu", "filters": 2}]

    with pytest.raises(ConfigError, match=r"'conv_bn_relu' is a block this config defines, "
                                          r"which the plugin block 'uses_config_block' cannot "
                                          r"name"):
        lamina.Model(network({"type": "uses_config_block"}, *HEAD, blocks=BLOCKS),
                     plugins=[UsesConfigBlock])
