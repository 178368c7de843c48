from __future__ import annotations

import pytest


@pytest.fixture
def mnist_dir(mnist_root: str) -> str:
    return mnist_root
