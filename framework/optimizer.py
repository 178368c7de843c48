"""The optimizer protocol and a convenience base class.

An optimizer plugin is a class with ``name``, ``Config`` (frozen, unknown keys
forbidden, with at least ``lr``) and

- ``step(params, grads)``: updates every array of ``params`` in place from the
  array of ``grads`` under the same dotted name (``conv2d_1.W``);
- ``lr``: the current learning rate, which a schedule may set between steps;
- ``state_dict() -> dict[str, ndarray]`` and ``load_state_dict(state)``: all the
  optimizer's state (moments, step count) as arrays, so that a checkpoint can
  save it in an ``.npz`` file and a resumed run continues bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .errors import StateError
from .layer import make_config


class OptimizerConfig(BaseModel):
    """Base of optimizer configs: a positive learning rate, unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lr: float = Field(1e-3, gt=0, description="learning rate")


class Optimizer(ABC):
    """Base class: keeps the config, the current learning rate and named state arrays.

    Subclasses keep their per-parameter state in ``self.slots`` (a dict of dicts:
    slot name -> parameter name -> array) and scalars such as the step count in
    ``self.counters``; :meth:`state_dict` and :meth:`load_state_dict` then work
    unchanged.
    """

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = OptimizerConfig

    def __init__(self, config: BaseModel | dict[str, Any] | None = None, /, **kwargs: Any):
        self.config = make_config(self.Config, config, kwargs)
        self.lr = float(self.config.lr)
        self.slots: dict[str, dict[str, np.ndarray]] = {}
        self.counters: dict[str, int] = {}

    @abstractmethod
    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def slot(self, slot: str, key: str, like: np.ndarray) -> np.ndarray:
        """The state array ``slot`` of parameter ``key``, created as zeros on first use."""
        arrays = self.slots.setdefault(slot, {})
        if key not in arrays:
            arrays[key] = np.zeros_like(like)
        return arrays[key]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every state array, so later steps cannot change a saved state."""
        state = {f"{slot}/{key}": arr.copy() for slot, arrays in self.slots.items()
                 for key, arr in arrays.items()}
        state.update({f"#{name}": np.asarray(value) for name, value in self.counters.items()})
        state["#lr"] = np.asarray(self.lr)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        slots: dict[str, dict[str, np.ndarray]] = {}
        counters: dict[str, int] = {}
        lr = self.lr
        for name, value in state.items():
            if name == "#lr":
                lr = float(value)
            elif name.startswith("#"):
                counters[name[1:]] = int(value)
            elif "/" in name:
                slot, key = name.split("/", 1)
                slots.setdefault(slot, {})[key] = np.array(value)
            else:
                raise StateError(
                    f"optimizer {self.name!r}: unexpected state entry {name!r}; "
                    "expected 'slot/param' arrays or '#counter' scalars"
                )
        self.slots, self.counters, self.lr = slots, counters, lr
