"""Config validation: structure first, then each plugin's own model; all errors at once."""

from __future__ import annotations

import json

import pytest

from lamina import ConfigError
from lamina.config import load_config, read_config, shipped_configs, validate_config
from lamina.registry import load_registry


@pytest.fixture(scope="module")
def registry():
    return load_registry(load_entry_points=False)


def mlp(*layers, **sections):
    return {"model": {"input_shape": [8], "layers": list(layers)}, **sections}


def test_three_mistakes_are_reported_together_with_their_paths(registry):
    raw = mlp(
        {"type": "dense", "units": 0},
        {"type": "relu", "alpha": 0.1},
        {"type": "dropout", "rate": 1.0},
        {"type": "dense", "units": 10},
    )
    with pytest.raises(ConfigError) as info:
        validate_config(raw, registry)
    paths = [issue.path for issue in info.value.issues]
    assert paths == [
        "model.layers[0] (dense).units",
        "model.layers[1] (relu).alpha",
        "model.layers[2] (dropout).rate",
    ]
    message = str(info.value)
    assert message.startswith("3 problems found")
    assert "received 0" in message and "received 1.0" in message
    assert "unknown key 'alpha'" in message


def test_unknown_type_suggests_the_closest_and_lists_known(registry):
    with pytest.raises(ConfigError) as info:
        validate_config(mlp({"type": "dense", "units": 4}, {"type": "rellu"}), registry)
    [issue] = info.value.issues
    assert issue.path == "model.layers[1] (rellu).type"
    assert "did you mean 'relu'?" in issue.message
    assert "known layer and block types:" in issue.message and "residual" in issue.message


def test_misspelled_key_gets_a_did_you_mean(registry):
    with pytest.raises(ConfigError) as info:
        validate_config(mlp({"type": "dense", "unit": 4}), registry)
    # one mistake, one issue: the key it meant is not also reported missing
    assert [str(i) for i in info.value.issues] == [
        "model.layers[0] (dense).unit: unknown key 'unit'; did you mean 'units'? known keys: "
        "units, use_bias, initializer"]


@pytest.mark.parametrize(("table", "expected"), [
    ({"type": "dense", "out_features": 4},
     "(dense).out_features: unknown key 'out_features'; lamina calls it 'units'; known keys: "
     "units, use_bias, initializer"),
    ({"type": "dense", "units": 4, "in_features": 8},
     "(dense).in_features: unknown key 'in_features'; lamina infers it from the layer's "
     "input: remove it; known keys: units, use_bias, initializer"),
    ({"type": "dropout", "p": 0.5},
     "(dropout).p: unknown key 'p'; lamina calls it 'rate'; known keys: rate"),
    ({"type": "maxpool2d", "kernel_size": 2},
     "(maxpool2d).kernel_size: unknown key 'kernel_size'; lamina calls it 'pool_size'; "
     "known keys: pool_size, stride"),
])
def test_another_frameworks_name_for_a_setting_gets_lamina_s(registry, table, expected):
    raw = mlp(table)
    raw["model"]["input_shape"] = [1, 4, 4]
    with pytest.raises(ConfigError) as info:
        validate_config(raw, registry)
    assert [str(i) for i in info.value.issues] == [f"model.layers[0] {expected}"]


def test_another_frameworks_optimizer_settings_get_lamina_s(registry):
    raw = mlp({"type": "dense", "units": 2}, optimizer={
        "type": "adam", "learning_rate": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8})
    with pytest.raises(ConfigError) as info:
        validate_config(raw, registry)
    known = "known keys: lr, beta_1, beta_2, epsilon, weight_decay"
    assert [str(i) for i in info.value.issues] == [
        f"optimizer (adam).learning_rate: unknown key 'learning_rate'; lamina calls it 'lr'; "
        f"{known}",
        f"optimizer (adam).betas: unknown key 'betas'; lamina splits it into 'beta_1' and "
        f"'beta_2'; {known}",
        f"optimizer (adam).eps: unknown key 'eps'; lamina calls it 'epsilon'; {known}"]


def test_other_names_point_to_a_plugin_s_setting_only_when_it_has_one():
    """The table is the core's, not the built-ins': a third-party config naming a setting
    as lamina does gets the suggestion; one without that setting gets none."""
    from pydantic import BaseModel, ConfigDict

    from lamina.config.strict import validate_settings

    class Rmsprop(BaseModel):
        model_config = ConfigDict(extra="forbid")
        lr: float = 0.01
        rho: float = 0.9

    class Annealer(BaseModel):
        model_config = ConfigDict(extra="forbid")
        step_size: float = 0.1

    _, [issue] = validate_settings(Rmsprop, {"learning_rate": 0.1}, "optimizer (rmsprop)")
    assert str(issue) == ("optimizer (rmsprop).learning_rate: unknown key 'learning_rate'; "
                          "lamina calls it 'lr'; known keys: lr, rho")
    _, [issue] = validate_settings(Annealer, {"learning_rate": 0.1}, "annealer")
    assert str(issue) == ("annealer.learning_rate: unknown key 'learning_rate'; known keys: "
                          "step_size")


def test_a_misspelt_choice_gets_a_did_you_mean(registry):
    raw = mlp({"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "smae",
               "initializer": "he_unifrom"}, {"type": "conv2d", "filters": 2,
                                              "kernel_size": 3, "padding": "full"},
              training={"dataset": "fashion_mnist"})
    raw["model"]["input_shape"] = [1, 8, 8]
    with pytest.raises(ConfigError) as info:
        validate_config(raw, registry)
    assert [str(i) for i in info.value.issues] == [
        # the close choice is what was meant: the int form padding also takes is not named
        "model.layers[0] (conv2d).padding: Input should be 'valid' or 'same' (received "
        "'smae'); did you mean 'same'?",
        "model.layers[0] (conv2d).initializer: Input should be 'glorot_uniform', "
        "'glorot_normal', 'he_uniform' or 'he_normal' (received 'he_unifrom'); did you mean "
        "'he_uniform'?",
        # nothing close: every form's complaint, as before
        "model.layers[1] (conv2d).padding: Input should be 'valid' or 'same' (received "
        "'full'); or, as another form it takes: Input should be a valid integer (received "
        "'full')",
        "training.dataset: Input should be 'mnist' or 'fashion-mnist' (received "
        "'fashion_mnist'); did you mean 'fashion-mnist'?"]


def test_a_misspelt_enum_member_gets_a_did_you_mean():
    import enum

    from pydantic import BaseModel

    from lamina.config.strict import validate_settings

    class Mode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"

    class Upsample(BaseModel):
        mode: Mode

    _, [issue] = validate_settings(Upsample, {"mode": "bilinaer"}, "upsample")
    assert str(issue).startswith("upsample.mode: Input should be 'nearest' or 'bilinear' "
                                 "(received 'bilinaer'); did you mean 'bilinear'?")


def test_loss_optimizer_and_training_sections_are_validated(registry):
    raw = mlp({"type": "dense", "units": 2}, loss={"type": "softmax_crossentropy"},
              optimizer={"type": "adam", "lr": -1}, training={"epochs": 0, "batchsize": 3})
    with pytest.raises(ConfigError) as info:
        validate_config(raw, registry)
    paths = {issue.path for issue in info.value.issues}
    assert paths == {"loss.type", "optimizer (adam).lr", "training.epochs",
                     "training.batchsize"}
    assert "did you mean 'softmax_cross_entropy'" in str(info.value)


def test_unknown_top_level_section_and_missing_model(registry):
    with pytest.raises(ConfigError) as info:
        validate_config({"modle": {}}, registry)
    paths = {issue.path for issue in info.value.issues}
    assert paths == {"model", "modle"}


def test_inputs_must_name_existing_layers_and_fit_arity(registry):
    raw = mlp(
        {"type": "dense", "units": 4, "name": "a"},
        {"type": "dense", "units": 4, "inputs": ["input", "a"]},
        {"type": "add", "inputs": ["b"]},
    )
    with pytest.raises(ConfigError) as info:
        validate_config(raw, registry)
    messages = "\n".join(str(i) for i in info.value.issues)
    assert "model.layers[1] (dense).inputs: dense takes one input, received 2" in messages
    assert "model.layers[2] (add).inputs[0]: no layer named 'b'" in messages


def test_duplicate_names_and_cycles_are_rejected(registry):
    dupes = mlp({"type": "relu", "name": "x"}, {"type": "relu", "name": "x"})
    with pytest.raises(ConfigError, match="already used by model.layers"):
        validate_config(dupes, registry)
    cycle = mlp({"type": "relu", "name": "a", "inputs": ["b"]},
                {"type": "relu", "name": "b", "inputs": ["a"]})
    with pytest.raises(ConfigError, match="form a cycle"):
        validate_config(cycle, registry)


def test_unused_layer_output_is_reported(registry):
    raw = mlp({"type": "relu", "name": "dangling"}, {"type": "relu", "inputs": ["input"]})
    with pytest.raises(ConfigError, match="'dangling' is used by no layer"):
        validate_config(raw, registry)


def test_automatic_names_are_numbered_per_type(registry):
    config = validate_config(
        mlp({"type": "dense", "units": 4}, {"type": "relu"}, {"type": "dense", "units": 2}),
        registry,
    )
    assert [n.name for n in config.nodes] == ["dense_1", "relu_1", "dense_2"]
    assert config.is_sequential()


def test_resolved_config_round_trips_through_json(registry, tmp_path):
    config = load_config("mnist_cnn", registry)
    path = tmp_path / "resolved.json"
    path.write_text(json.dumps(config.to_dict()))
    again = load_config(path, registry)
    assert again.to_dict() == config.to_dict()
    assert again.nodes[0].config.filters == 32


def test_shipped_configs_and_file_errors(registry, tmp_path):
    assert {"mnist_cnn", "residual_cnn"} <= set(shipped_configs())
    with pytest.raises(ConfigError, match="no config file 'mnist_cn'"):
        read_config("mnist_cn")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        read_config(bad)
    yaml = tmp_path / "net.yaml"
    yaml.write_text("model: {}")
    with pytest.raises(ConfigError, match="use .toml or .json"):
        read_config(yaml)


def test_validate_reports_shape_run_and_section_mistakes_in_one_pass(registry):
    """A shape that does not fit, a schedule that does not fit the epochs, a cosine floor
    above the learning rate and a misspelt dataset, all in one ConfigError."""
    from lamina.plan import make_plan

    raw = {"model": {"input_shape": [1, 8, 8], "layers": [
        {"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "dense", "units": 3}]},
        "optimizer": {"type": "sgd", "lr": 0.01},
        "training": {"epochs": 2, "dataset": "mnsit",
                     "schedule": {"type": "cosine", "warmup_epochs": 5, "min_lr": 0.5}}}
    with pytest.raises(ConfigError) as info:
        make_plan(raw, registry)
    messages = [str(issue) for issue in info.value.issues]
    assert any(m.startswith("training.dataset") and "'mnist'" in m for m in messages)
    assert any("warmup_epochs < epochs" in m for m in messages)
    assert any("model.layers[1] (dense) 'dense_1' cannot take its input" in m
               and "add a flatten layer" in m for m in messages)
    raw["training"]["schedule"]["warmup_epochs"] = 0
    with pytest.raises(ConfigError) as info:
        make_plan(raw, registry)
    assert any(str(i).startswith("training.schedule.min_lr: the cosine schedule decays")
               for i in info.value.issues)


def test_names_that_mean_one_setting_here_and_another_there(tmp_path, capsys):
    """alpha is RMSprop's rho in PyTorch and LeakyReLU's slope in Keras; "SAME" is
    TensorFlow's 'same'; from_logits has no meaning for lamina's losses."""
    from lamina.cli import main

    path = tmp_path / "net.toml"
    path.write_text('[model]\ninput_shape = [1, 8, 8]\n[[model.layers]]\ntype = "avgpool2d"\n'
                    'pool_size = 2\npadding = "SAME"\n[[model.layers]]\ntype = "leaky_relu"\n'
                    'alpha = 0.2\n[[model.layers]]\ntype = "reshape"\nshape = [16]\n'
                    '[[model.layers]]\ntype = "dense"\nunits = 1\n[loss]\n'
                    'type = "binary_cross_entropy"\nfrom_logits = true\n[optimizer]\n'
                    'type = "rmsprop"\nalpha = 0.9\n')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    for line in ["(avgpool2d).padding: Input should be 'valid' or 'same' (received 'SAME'); "
                 "did you mean 'same'?",
                 "(leaky_relu).alpha: unknown key 'alpha'; lamina calls it 'slope'",
                 "(reshape).shape: unknown key 'shape'; lamina calls it 'target_shape'",
                 "from_logits: unknown key 'from_logits'; lamina's losses always take the "
                 "last layer's raw outputs (logits)",
                 "optimizer (rmsprop).alpha: unknown key 'alpha'; lamina calls it 'rho'"]:
        assert line in err
    assert "required key is missing" not in err  # target_shape is the shape given
