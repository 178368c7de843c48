"""The loss protocol and a convenience base class.

A loss plugin is a class with ``name``, ``Config`` (frozen, unknown keys
forbidden) and

- ``forward(logits, targets) -> float``: the mean loss over the batch. ``logits``
  is (N, C); ``targets`` are class indices (N,), one-hot rows or soft labels
  (N, C) whose rows sum to 1;
- ``backward() -> dlogits``: (N, C), the gradient of that mean loss;
- ``predict_proba(logits) -> (N, C)`` probabilities;
- ``examples()``: configs and class counts the conformance suite exercises.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from .errors import BackwardBeforeForwardError
from .layer import LayerConfig, make_config


@dataclass(frozen=True)
class LossExample:
    """One configuration the conformance suite runs a loss with."""

    config: dict[str, Any]
    n_classes: int
    id: str = ""


class Loss(ABC):
    """Base class: keeps the config and what ``forward`` left for ``backward``."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = LayerConfig

    def __init__(self, config: BaseModel | dict[str, Any] | None = None, /, **kwargs: Any):
        self.config = make_config(self.Config, config, kwargs)
        self.cache: Any = None

    @abstractmethod
    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    @abstractmethod
    def backward(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement backward()")

    @abstractmethod
    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement predict_proba()")

    @classmethod
    @abstractmethod
    def examples(cls) -> list[LossExample]:
        raise NotImplementedError(f"{cls.__name__} must list examples() for the conformance suite")

    def cached(self) -> Any:
        if self.cache is None:
            raise BackwardBeforeForwardError(
                f"loss {self.name!r}: backward() was called before forward(); "
                "run forward(logits, targets) first"
            )
        return self.cache
