from __future__ import annotations

from pathlib import Path

import pytest

TINY_CNN = """
[model]
input_shape = [1, 28, 28]

[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
stride = 2

[[model.layers]]
type = "relu"

[[model.layers]]
type = "maxpool2d"

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dropout"
rate = 0.25

[[model.layers]]
type = "dense"
units = 10

[optimizer]
type = "adam"
lr = 3e-3

[training]
epochs = 3
batch_size = 64
limit = 1200
seed = 7
"""


@pytest.fixture
def mnist_dir(mnist_root: str) -> str:
    return mnist_root


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_CNN)
    return path
