"""The graph runner: shape inference, DAG gradients, state dicts and the summary."""

from __future__ import annotations

import numpy as np
import pytest

from framework import ShapeError, StateError
from framework.config import load_config, validate_config
from framework.graph import Network
from framework.registry import load_registry


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
    dx = net.backward(r)
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
    assert net.forward(np.ones((3, 4))).shape == (3, 2)


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
    np.testing.assert_array_equal(other.forward(x), net.forward(x))

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
    y = net.forward(np.zeros((2, 1, 28, 28), np.float32))
    assert y.dtype == np.float32 and y.shape == (2, 10)
    assert all(v.dtype == np.float32 for v in net.params().values())
