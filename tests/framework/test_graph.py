"""The graph runner: shape inference, DAG gradients, state dicts and the summary."""

from __future__ import annotations

import numpy as np
import pytest

from lamina import PluginError, ShapeError, StateError
from lamina.config import load_config, validate_config
from lamina.graph import Network
from lamina.registry import load_registry


@pytest.fixture(scope="module")
def registry():
    return load_registry(load_entry_points=False)


def build(registry, layers, input_shape=(4,), dtype=np.float64, seed=0):
    config = validate_config({"model": {"input_shape": list(input_shape), "layers": layers}},
                             registry)
    return Network(config, registry, np.random.default_rng(seed), dtype=dtype)


def test_dense_after_a_3d_tensor_names_the_layer_and_the_fix(registry):
    with pytest.raises(ShapeError) as info:
        build(registry, [{"type": "relu"}, {"type": "dense", "units": 3}], input_shape=(2, 5, 5))
    message = str(info.value)
    assert message.startswith("model.layers[1] (dense) 'dense_1' cannot take its input")
    assert "(2, 5, 5)" in message and "add a flatten layer" in message


FAN_OUT = [
    {"type": "dense", "units": 5, "name": "trunk"},
    {"type": "relu", "name": "branch_a"},
    {"type": "dense", "units": 5, "name": "branch_b", "inputs": ["trunk"]},
    {"type": "add", "inputs": ["branch_a", "branch_b", "trunk"]},
    {"type": "dense", "units": 3},
]


def test_fan_out_gets_the_summed_gradient_checked_numerically(registry):
    """``trunk`` feeds three layers; its gradient (and the input's) must be the sum."""
    net = build(registry, FAN_OUT)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4))
    r = rng.normal(size=(6, 3))  # loss = sum(r * y): dL/dy = r

    def loss(x_):
        return float(np.sum(r * net.forward(x_, training=True)))

    loss(x)
    dx = net.backward(r, input_grad=True)
    analytic = {"input": dx, **{k: v.copy() for k, v in net.grads().items()}}

    def numeric(array):
        grad = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + 1e-6
            up = loss(x)
            array[i] = old - 1e-6
            down = loss(x)
            array[i] = old
            grad[i] = (up - down) / 2e-6
        return grad

    targets = {"input": x, **net.params()}
    for key, array in targets.items():
        num = numeric(array)
        err = np.max(np.abs(num - analytic[key]) / np.maximum(np.abs(num) + np.abs(analytic[key]),
                                                              1e-8))
        assert err < 1e-6, (key, err)
    assert set(analytic) == {"input", "trunk.W", "trunk.b", "branch_b.W", "branch_b.b",
                             "dense_1.W", "dense_1.b"}


def test_topological_order_allows_layers_listed_before_their_inputs(registry):
    layers = [
        {"type": "add", "name": "sum", "inputs": ["a", "b"]},
        {"type": "relu", "name": "a", "inputs": ["input"]},
        {"type": "dense", "units": 4, "name": "b", "inputs": ["input"]},
        {"type": "dense", "units": 2, "name": "out", "inputs": ["sum"]},
    ]
    net = build(registry, layers)
    assert [n.name for n in net.order] == ["a", "b", "sum", "out"]
    assert net.forward(np.ones((3, 4)), training=False).shape == (3, 2)


def test_state_dict_round_trip_and_strictness(registry):
    layers = [{"type": "dense", "units": 3}, {"type": "batchnorm"}, {"type": "dense", "units": 2}]
    net = build(registry, layers, seed=0)
    net.forward(np.random.default_rng(0).normal(size=(8, 4)), training=True)
    state = net.state_dict()
    assert {"batchnorm_1.running_mean", "batchnorm_1.running_var", "dense_1.W"} <= set(state)
    assert "batchnorm_1.running_mean" not in net.params()

    other = build(registry, layers, seed=1)
    other.load_state_dict(state)
    x = np.random.default_rng(2).normal(size=(5, 4))
    np.testing.assert_array_equal(other.forward(x, training=False), net.forward(x, training=False))

    broken = dict(state)
    del broken["dense_1.b"]
    broken["dense_2.W"] = np.zeros((9, 9))
    broken["extra.key"] = np.zeros(1)
    before = other.state_dict()
    with pytest.raises(StateError) as info:
        other.load_state_dict(broken)
    message = str(info.value)
    assert "3 problems" in message
    assert "missing 'dense_1.b'" in message and "unexpected 'extra.key'" in message
    assert "'dense_2.W' has shape (9, 9), expected (3, 2)" in message
    for key, value in other.state_dict().items():  # nothing was changed
        np.testing.assert_array_equal(value, before[key])


def test_mnist_cnn_summary_shapes_and_total(registry):
    config = load_config("mnist_cnn", registry)
    net = Network(config, registry, np.random.default_rng(0))
    shapes = [node.output_shape for node in net.nodes]
    assert shapes == [(32, 26, 26), (32, 26, 26), (32, 13, 13), (64, 11, 11), (64, 11, 11),
                      (64, 5, 5), (1600,), (1600,), (10,)]
    counts = {k: v.size for k, v in net.params().items()}
    assert counts == {"conv2d_1.W": 288, "conv2d_1.b": 32, "conv2d_2.W": 18432,
                      "conv2d_2.b": 64, "dense_1.W": 16000, "dense_1.b": 10}
    summary = net.summary()
    assert "Total params: 34,826" in summary
    row = next(line for line in summary.splitlines() if line.startswith("conv2d_2"))
    assert row.split() == ["conv2d_2", "conv2d", "(64,", "11,", "11)", "18,496", "lamina", "0.1.0"]


def test_network_runs_in_float32_by_default(registry):
    config = load_config("mnist_cnn", registry)
    net = Network(config, registry, np.random.default_rng(0))
    y = net.forward(np.zeros((2, 1, 28, 28), np.float32), training=False)
    assert y.dtype == np.float32 and y.shape == (2, 10)
    assert all(v.dtype == np.float32 for v in net.params().values())


def run_in_config_order(net, x, dy):
    """Forward and backward through ``net``'s layers one by one in config order (no plan)."""
    for node in net.order:
        x = node.layer.forward(x, training=True)
    y = x.copy()
    for node in reversed(net.order):
        dy = node.layer.backward(dy, input_grad=True)
    return y, dy, {k: v.copy() for k, v in net.grads().items()}


POOLED = [
    {"type": "relu"},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 3, "kernel_size": 2, "padding": "same"},
    {"type": "relu"},
    {"type": "maxpool2d", "pool_size": 3, "stride": 1},
    {"type": "flatten"},
    {"type": "dense", "units": 2},
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_runs_after_its_pool_with_identical_values_and_gradients(registry, dtype):
    net = build(registry, POOLED, input_shape=(2, 8, 8), dtype=dtype)
    kinds = [tuple(node.config.type for node in step.nodes) for step in net.steps]
    assert kinds == [("maxpool2d", "relu"), ("conv2d",), ("maxpool2d", "relu"), ("flatten",),
                     ("dense",)]
    rng = np.random.default_rng(3)
    # Small integers make windows that are all negative and ties at 0 and above: the
    # cases where the order could matter.
    x = rng.integers(-2, 3, size=(5, 2, 8, 8)).astype(dtype)
    net.nodes[2].layer.params()["W"][...] = rng.integers(-1, 2, size=(3, 2, 2, 2))
    dy = rng.normal(size=(5, 2)).astype(dtype)
    y = net.forward(x, training=True).copy()
    dx = net.backward(dy, input_grad=True)
    grads = {k: v.copy() for k, v in net.grads().items()}
    y_ref, dx_ref, grads_ref = run_in_config_order(net, x, dy)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    for key, value in grads_ref.items():
        np.testing.assert_array_equal(grads[key], value, err_msg=key)


def test_relu_with_another_reader_or_as_the_output_is_not_moved(registry):
    fan_out = [
        {"type": "relu", "name": "r"},
        {"type": "maxpool2d", "name": "p"},
        {"type": "maxpool2d", "name": "q", "inputs": ["r"]},
        {"type": "add", "inputs": ["p", "q"]},
    ]
    net = build(registry, fan_out, input_shape=(1, 4, 4))
    assert all(len(step.nodes) == 1 for step in net.steps)
    last = build(registry, [{"type": "maxpool2d"}, {"type": "relu"}], input_shape=(1, 4, 4))
    assert all(len(step.nodes) == 1 for step in last.steps)


def test_input_gradient_only_on_request_and_parameter_gradients_unchanged(registry):
    config = load_config("mnist_cnn", registry)
    net = Network(config, registry, np.random.default_rng(0))
    x = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32)
    dy = np.random.default_rng(2).normal(size=(4, 10)).astype(np.float32)
    net.forward(x, training=False)
    dx = net.backward(dy, input_grad=True)
    assert dx.shape == x.shape and np.abs(dx).max() > 0
    with_dx = {k: v.copy() for k, v in net.grads().items()}
    first = net.nodes[0].layer
    asked = []
    for method in ("backward", "backward_max_pool"):  # the fused chain calls the second
        original = getattr(first, method)
        setattr(first, method, lambda dy, *, input_grad, original=original: asked.append(
            input_grad) or original(dy, input_grad=input_grad))
    assert net.backward(dy) is None
    assert asked == [False]  # the first layer's dx is not needed, and it is told so
    for key, value in net.grads().items():
        np.testing.assert_array_equal(value, with_dx[key], err_msg=key)


def test_a_layer_returning_none_for_a_needed_gradient_is_named(registry):
    net = build(registry, [{"type": "dense", "units": 3, "name": "first"},
                           {"type": "dense", "units": 2, "name": "second"}])
    net.forward(np.ones((2, 4)), training=True)
    net.nodes[1].layer.backward = lambda dy, *, input_grad: None
    with pytest.raises(PluginError, match="'second'.*only when called with input_grad=False"):
        net.backward(np.ones((2, 2)))


def test_shapes_and_parameter_counts_come_from_the_config_alone(registry):
    """validate and summary describe a network without allocating it: a dense layer of
    2**31 units on a flattened image (1.7 trillion weights) is counted, not built."""
    from lamina.graph import Architecture

    config = load_config({"model": {"input_shape": [1, 28, 28], "layers": [
        {"type": "flatten"}, {"type": "dense", "units": 2**31}]}}, registry)
    architecture = Architecture(config, registry)
    assert architecture.output_shape == (2**31,)
    assert architecture.count(trainable=True) == 784 * 2**31 + 2**31
    assert all(not node.layer.params() for node in architecture.nodes)
    assert "Total params: 1,685,774,663,680" in architecture.summary()


@pytest.mark.parametrize("raised", [ZeroDivisionError("division by zero"), SystemExit(3)])
@pytest.mark.parametrize("where", ["__init__", "compute_output_shape", "param_specs", "build"])
def test_a_plugin_raising_while_the_network_is_made_is_named_with_its_provider(registry, where,
                                                                              raised):
    import dataclasses

    from lamina.registry import Entry

    dense = registry.layers["dense"]

    class Broken(dense.cls):
        pass

    def boom(self, *args, **kwargs):
        raise raised

    setattr(Broken, where, boom)
    patched = dataclasses.replace(registry, layers={**registry.layers, "dense": Entry(
        "layer", "dense", Broken, dense.provider)})
    config = load_config({"model": {"input_shape": [4], "layers": [{"type": "dense",
                                                                     "units": 2}]}}, registry)
    with pytest.raises(PluginError) as info:
        Network(config, patched, np.random.default_rng(0))
    message = str(info.value)
    assert message.startswith("model.layers[0] (dense) 'dense_1': the dense plugin "
                              "(lamina.plugins.dense, from lamina 0.1.0) raised "
                              f"{type(raised).__name__} in ")
    assert "This is a bug in the plugin; report it to its author" in message


@pytest.mark.parametrize("raised", [IndexError("index 7 is out of bounds"), SystemExit(5)])
@pytest.mark.parametrize("method", ["forward", "backward"])
def test_a_plugin_raising_while_training_is_named_with_its_provider(registry, method, raised):
    """Whatever it raises: a plugin calling sys.exit() in forward once ended lamina train
    with its exit status and no word."""
    net = build(registry, [{"type": "dense", "units": 3}, {"type": "relu", "name": "act"}])
    layer = net.nodes[1].layer

    def boom(*args, **kwargs):
        raise raised

    setattr(layer, method, boom)
    with pytest.raises(PluginError) as info:
        net.forward(np.ones((2, 4)), training=True)
        net.backward(np.ones((2, 3)))
    message = str(info.value)
    assert message.startswith(f"model.layers[1] (relu) 'act': the relu plugin "
                              f"(lamina.plugins.relu, from lamina 0.1.0) raised "
                              f"{type(raised).__name__} in {method}(): {raised}")


@pytest.mark.parametrize(("method", "returned", "said"), [
    ("forward", None, "returned None from forward(); the runner needs a floating-point "
                      "array of shape (2, 3)"),
    ("forward", np.ones((2, 4)), "returned an array of shape (2, 4) and dtype float64 from "
                                 "forward(); the runner needs a floating-point array of "
                                 "shape (2, 3)"),
    ("forward", np.ones((1, 3)), "returned an array of shape (1, 3) and dtype float64 from "
                                 "forward()"),
    ("forward", np.ones((2, 3), object), "returned an array of shape (2, 3) and dtype object"),
    ("backward", [1.0, 2.0], "returned a list from backward(); the runner needs an array of "
                             "shape (2, 3)"),
    ("backward", np.ones((2, 2)), "returned an array of shape (2, 2) and dtype float64 from "
                                  "backward()"),
])
def test_a_plugin_returning_the_wrong_thing_is_named_not_the_next_layer(registry, method,
                                                                      returned, said):
    net = build(registry, [{"type": "dense", "units": 3}, {"type": "relu", "name": "act"},
                           {"type": "dense", "units": 2}])
    setattr(net.nodes[1].layer, method, lambda *args, **kwargs: returned)
    with pytest.raises(PluginError) as info:
        net.forward(np.ones((2, 4)), training=True)
        net.backward(np.ones((2, 2)))
    assert str(info.value).startswith("model.layers[1] (relu) 'act': the relu plugin")
    assert said in str(info.value)


def test_a_plugin_s_param_specs_of_the_wrong_kind_is_named(registry):
    import dataclasses

    from lamina.registry import Entry

    dense = registry.layers["dense"]

    class Broken(dense.cls):
        def param_specs(self, input_shape):
            return {"w": 5}

    patched = dataclasses.replace(registry, layers={**registry.layers, "dense": Entry(
        "layer", "dense", Broken, dense.provider)})
    config = load_config({"model": {"input_shape": [4], "layers": [{"type": "dense",
                                                                     "units": 2}]}}, registry)
    with pytest.raises(PluginError, match=r"'dense_1': the dense plugin \(lamina.plugins.dense, "
                                          r"from lamina 0.1.0\) returned a dict from "
                                          r"param_specs\(\); the runner needs a dict of "
                                          r"lamina.ParamSpec by key"):
        Network(config, patched, np.random.default_rng(0))


@pytest.mark.parametrize("which", ["params", "grads", "state"])
def test_a_layer_whose_arrays_cannot_be_listed_is_named_not_the_optimizer(registry, which):
    net = build(registry, [{"type": "dense", "units": 3}, {"type": "relu", "name": "act"}])

    def boom():
        raise ValueError("params boom")

    setattr(net.nodes[1].layer, which, boom)
    with pytest.raises(PluginError, match=rf"'act': the relu plugin .* raised ValueError in "
                                          rf"{which}\(\): params boom"):
        getattr(net, which)()


# -- fused chains: a fuses_max_pool layer ending in the max pool after it ------------------


def test_the_reference_network_runs_two_fused_chains_and_agrees_unfused(registry, monkeypatch):
    config = load_config("mnist_cnn", registry)
    fused = Network(config, registry, np.random.default_rng(0), dtype=np.float64)
    plain = Network(config, registry, np.random.default_rng(0), dtype=np.float64, fuse=False)
    assert fused.fused_chains() == [("conv2d_1", "relu_1", "maxpool2d_1"),
                                    ("conv2d_2", "relu_2", "maxpool2d_2")]
    assert plain.fused_chains() == []
    monkeypatch.setenv("LAMINA_FUSION", "0")
    assert Network(config, registry, np.random.default_rng(0)).fused_chains() == []
    assert fused.replica(np.random.default_rng(1)).fused_chains() == fused.fused_chains()
    x = np.random.default_rng(1).random((3, 1, 28, 28))
    dy = np.random.default_rng(2).normal(size=(3, 10))
    for net in (fused, plain):  # dropout off: eval-mode forward, then backward
        net.forward(x, training=False)
    outputs = [net.forward(x, training=False) for net in (fused, plain)]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-12, atol=1e-12)
    dxs = [net.backward(dy, input_grad=True) for net in (fused, plain)]
    np.testing.assert_allclose(dxs[0], dxs[1], rtol=1e-10, atol=1e-12)
    for key, value in plain.grads().items():
        np.testing.assert_allclose(fused.grads()[key], value, rtol=1e-10, atol=1e-12,
                                   err_msg=key)


def test_chains_are_decided_by_declarations_not_names(registry):
    # a pool the conv does not end in (3x3), a conv read by two layers, an activation
    # read by two layers: no chain; the conv's pool directly after it: a chain
    def chains(layers):
        return build(registry, layers, input_shape=(4, 9, 9)).fused_chains()

    conv = {"type": "conv2d", "filters": 4, "kernel_size": 3, "name": "c"}
    assert chains([conv, {"type": "maxpool2d", "pool_size": 3}]) == []
    assert chains([conv, {"type": "maxpool2d", "name": "p"}]) == [("c", "p")]
    assert chains([conv, {"type": "sigmoid", "name": "s"}, {"type": "maxpool2d", "name": "p"}]
                  ) == [("c", "s", "p")]
    assert chains([conv, {"type": "gelu"}, {"type": "maxpool2d"}]) == []  # gelu dips
    assert chains([conv, {"type": "maxpool2d", "name": "p"},
                   {"type": "maxpool2d", "name": "q", "inputs": ["c"]},
                   {"type": "add", "inputs": ["p", "q"]}]) == []
    assert chains([conv, {"type": "relu", "name": "r"}, {"type": "maxpool2d", "name": "p"},
                   {"type": "flatten", "name": "f"}, {"type": "flatten", "name": "g",
                                                      "inputs": ["r"]},
                   {"type": "concat", "inputs": ["f", "g"]}]) == []
    grouped = {**conv, "groups": 2}
    assert chains([grouped, {"type": "maxpool2d"}]) == []  # conv2d fuses groups = 1 only


def test_a_third_party_layer_takes_part_through_its_declarations(registry):
    from lamina import Example, Layer, LayerConfig, LayerTraits

    calls = []

    class Doubler(Layer):
        """y = 2x on images, ending in a 2x2 pool itself when asked."""

        name = "doubler"
        Config = LayerConfig
        traits = LayerTraits(fuses_max_pool=True)

        def compute_output_shape(self, input_shape):
            return input_shape

        def forward(self, x, *, training):
            self.cache = True
            return 2 * x

        def backward(self, dy, *, input_grad=True):
            return 2 * dy

        def fusable_max_pool(self, window):
            return window == ((2, 2), (2, 2))

        def forward_max_pool(self, x, window, *, training):
            calls.append("forward_max_pool")
            n, c, h, w = x.shape
            blocks = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
            flat = blocks.reshape(n, c, h // 2, w // 2, 4)
            self.cache = (x.shape, np.argmax(flat, axis=-1))
            return 2 * flat.max(axis=-1)

        def backward_max_pool(self, dy, *, input_grad=True):
            calls.append("backward_max_pool")
            (n, c, h, w), winner = self.cached()
            routed = np.zeros((n, c, h // 2, w // 2, 4))
            np.put_along_axis(routed, winner[..., None], 2 * dy[..., None], axis=-1)
            return routed.reshape(n, c, h // 2, w // 2, 2, 2).transpose(
                0, 1, 2, 4, 3, 5).reshape(n, c, h, w)

        @classmethod
        def examples(cls):
            return [Example(config={}, input_shape=(1, 4, 4))]

    registry = load_registry(load_entry_points=False, plugins=[Doubler])
    net = build(registry, [{"type": "doubler", "name": "d"}, {"type": "relu", "name": "r"},
                           {"type": "maxpool2d", "name": "p"}], input_shape=(2, 4, 4))
    assert net.fused_chains() == [("d", "r", "p")]
    x = np.random.default_rng(3).normal(size=(2, 2, 4, 4))
    y = net.forward(x, training=True)
    np.testing.assert_array_equal(
        y, np.maximum(2 * x.reshape(2, 2, 2, 2, 2, 2).max(axis=(3, 5)), 0))
    dx = net.backward(np.ones_like(y), input_grad=True)
    assert calls == ["forward_max_pool", "backward_max_pool"]
    assert dx.shape == x.shape and np.count_nonzero(dx) == np.count_nonzero(y > 0)


def test_a_fused_chain_failing_is_named_with_the_method(registry):
    net = build(registry, [{"type": "conv2d", "filters": 4, "kernel_size": 3, "name": "c"},
                           {"type": "maxpool2d"}], input_shape=(4, 6, 6))

    def broken(x, window, *, training):
        raise RuntimeError("oops")

    net.nodes[0].layer.forward_max_pool = broken
    with pytest.raises(PluginError, match=r"'c'.*raised RuntimeError in forward_max_pool\(\)"):
        net.forward(np.ones((1, 4, 6, 6)), training=False)


def test_a_fused_chain_returning_the_wrong_shape_names_its_method(registry):
    net = build(registry, [{"type": "conv2d", "filters": 4, "kernel_size": 3, "name": "c"},
                           {"type": "maxpool2d"}], input_shape=(4, 6, 6))
    net.nodes[0].layer.forward_max_pool = lambda x, window, *, training: np.ones((1, 4, 3, 3))
    with pytest.raises(PluginError, match=r"'c'.*returned an array of shape \(1, 4, 3, 3\).* "
                                          r"from forward_max_pool\(\)"):
        net.forward(np.ones((1, 4, 6, 6)), training=False)
    net = build(registry, [{"type": "dense", "units": 36}, {"type": "reshape",
                                                            "target_shape": [1, 6, 6]},
                           {"type": "conv2d", "filters": 4, "kernel_size": 3, "name": "c"},
                           {"type": "maxpool2d"}], input_shape=(3,))
    net.forward(np.ones((2, 3)), training=True)
    net.nodes[2].layer.backward_max_pool = lambda dy, *, input_grad: None
    with pytest.raises(PluginError, match=r"'c'.*returned None from backward_max_pool\(\)"):
        net.backward(np.ones((2, 4, 2, 2)))


def test_a_pool_whose_window_method_fails_is_named_when_the_network_is_built(registry,
                                                                           monkeypatch):
    from lamina.plugins.maxpool2d import MaxPool2D

    def broken(self):
        raise RuntimeError("no window")

    monkeypatch.setattr(MaxPool2D, "max_pool_window", broken)
    with pytest.raises(PluginError, match=r"'p'.*raised RuntimeError in max_pool_window\(\)"):
        build(registry, [{"type": "conv2d", "filters": 4, "kernel_size": 3},
                         {"type": "maxpool2d", "name": "p"}], input_shape=(4, 6, 6))


@pytest.mark.parametrize("value", ["0", "false", "No", " off "])
def test_lamina_fusion_turns_chains_off_with_any_false_spelling(registry, monkeypatch, value):
    monkeypatch.setenv("LAMINA_FUSION", value)
    net = build(registry, [{"type": "conv2d", "filters": 4, "kernel_size": 3},
                           {"type": "maxpool2d"}], input_shape=(4, 6, 6))
    assert net.fused_chains() == []


def test_only_the_windows_the_suite_checks_are_fused(registry, monkeypatch):
    """A layer accepting every window still fuses only FUSED_POOL_WINDOWS, the ones
    check_fuses_max_pool verifies."""
    from lamina.layer import FUSED_POOL_WINDOWS
    from lamina.plugins.conv2d import Conv2D

    monkeypatch.setattr(Conv2D, "fusable_max_pool", lambda self, window: True)
    for pool, stride in (((3, 3), 3), ((2, 2), 2), ((3, 3), 2)):
        net = build(registry, [{"type": "conv2d", "filters": 4, "kernel_size": 3},
                               {"type": "maxpool2d", "pool_size": list(pool),
                                "stride": stride}], input_shape=(4, 9, 9))
        fused = ((pool, (stride, stride)) in FUSED_POOL_WINDOWS)
        assert bool(net.fused_chains()) == fused
