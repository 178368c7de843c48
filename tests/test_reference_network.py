"""The reference network end to end: a float64 gradient check through network and loss."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.config import load_config
from lamina.graph import Network
from lamina.registry import load_registry
from lamina.testing.gradcheck import compare, sample_indices


@pytest.mark.parametrize("config_name", ["mnist_cnn", "residual_cnn"])
def test_end_to_end_gradient_in_float64(config_name):
    registry = load_registry(load_entry_points=False)
    config = load_config(config_name, registry)
    rng = np.random.default_rng(0)
    net = Network(config, registry, rng, dtype=np.float64)
    loss = registry.loss(config.loss.type)(config.loss.config)
    data = np.random.default_rng(1)
    x = data.random((3, *config.input_shape))
    y = data.integers(0, 10, 3)
    mask_state = rng.bit_generator.state  # dropout draws here: replay the same masks

    def total_loss() -> np.ndarray:
        rng.bit_generator.state = mask_state
        return np.array(loss.forward(net.forward(x, training=True), y))

    total_loss()
    dx = net.backward(loss.backward(), input_grad=True)
    analytic = {"input": dx, **{k: g.copy() for k, g in net.grads().items()}}
    targets = {"input": x, **net.params()}
    assert all(a.dtype == np.float64 for a in analytic.values())

    picker = np.random.default_rng(2)
    for name, array in targets.items():
        def evaluate(index, delta, array=array):
            old = array[index]
            array[index] = old + delta
            try:
                return total_loss()
            finally:
                array[index] = old

        report = compare(name, analytic[name], evaluate, np.array(1.0),
                         sample_indices(array.shape, picker)[:40], step=1e-5)
        assert report.ok, report.describe()
        assert report.kinks <= report.checked // 4, report.describe()  # mostly smooth points
