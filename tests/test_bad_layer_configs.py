"""Bad layer settings are rejected at config or build time with the layer's path and a fix."""

from __future__ import annotations

import numpy as np
import pytest

from lamina import ConfigError, ShapeError
from lamina.config import validate_config
from lamina.graph import Network
from lamina.registry import load_registry

REGISTRY = load_registry(load_entry_points=False)


def network(layer: dict) -> Network:
    config = validate_config({"model": {"input_shape": [1, 28, 28], "layers": [layer]}},
                             REGISTRY)
    return Network(config, REGISTRY, np.random.default_rng(0))


@pytest.mark.parametrize(("layer", "error", "path", "hint"), [
    ({"type": "conv2d", "filters": 0, "kernel_size": 3}, ConfigError,
     "model.layers[0] (conv2d).filters", "greater than or equal to 1"),
    ({"type": "dropout", "rate": 1.0}, ConfigError,
     "model.layers[0] (dropout).rate", "Use a rate such as 0.5"),
    ({"type": "conv2d", "filters": 4, "kernel_size": 30}, ShapeError,
     "model.layers[0] (conv2d) 'conv2d_1'", "use a smaller kernel_size"),
    ({"type": "maxpool2d", "pool_size": 29}, ShapeError,
     "model.layers[0] (maxpool2d) 'maxpool2d_1'", "use a smaller pool_size"),
])
def test_bad_layer_settings(layer, error, path, hint):
    with pytest.raises(error) as info:
        network(layer)
    assert path in str(info.value) and hint in str(info.value)
    assert str(info.value).count("received") == 1 or error is ShapeError
