"""Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay.

For every parameter p (any shape) with gradient g (same shape), learning rate lr,
momentum mu and weight decay wd, one step is::

    g' = g + wd * p                  # L2 penalty wd/2 * |p|^2 folded into the gradient
    b  = mu * b + g'                 # velocity, kept only when mu > 0 (b starts at 0)
    d  = g' + mu * b   if nesterov   # look-ahead direction
         b             if mu > 0
         g'            otherwise
    p  = p - lr * d

This is PyTorch's ``torch.optim.SGD`` with ``dampening=0``. The weight decay is
coupled (an L2 term in the gradient, so momentum also carries it), not the
decoupled decay of AdamW. ``p`` is updated in place and ``g`` is never written.

State: the slot ``momentum`` (one array per parameter, same shape and dtype), only
when mu > 0; plain SGD has none.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from lamina import Optimizer, OptimizerConfig, StateError, hookimpl


class SGDConfig(OptimizerConfig):
    """Settings of ``sgd``."""

    lr: float = Field(0.01, gt=0, description="learning rate (Keras's SGD default)")
    momentum: float = Field(0.0, ge=0, lt=1, description="momentum factor mu; 0 disables it")
    nesterov: bool = Field(False, description="use Nesterov momentum (needs momentum > 0)")
    weight_decay: float = Field(
        0.0, ge=0, description="L2 penalty coefficient added to the gradient as wd * p"
    )

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDConfig:
        if self.nesterov and self.momentum == 0:
            raise ValueError(
                "nesterov=true needs momentum > 0, received momentum=0; "
                "set momentum (for example 0.9) or set nesterov=false"
            )
        return self


class SGD(Optimizer):
    """SGD with momentum, Nesterov and coupled (L2) weight decay; see the module docstring."""

    name = "sgd"
    Config = SGDConfig

    def __init__(self, config: Any = None, /, **kwargs: Any):
        super().__init__(config, **kwargs)
        # Scratch arrays for d, so a step allocates nothing; not state, never saved.
        self._scratch: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        lr, mu, wd = float(self.lr), self.config.momentum, self.config.weight_decay
        for key, p in params.items():
            g = grads[key]
            d = self._scratch.get(key)
            if d is None or d.shape != p.shape or d.dtype != p.dtype:
                d = self._scratch[key] = np.empty_like(p)
            if wd:
                np.multiply(p, wd, out=d)
                d += g
            else:
                np.copyto(d, g)
            if mu:
                b = self._velocity(key, p)
                b *= mu
                b += d
                if self.config.nesterov:
                    # p -= lr * (g' + mu * b), as two in-place subtractions.
                    d *= lr
                    p -= d
                    np.multiply(b, lr * mu, out=d)
                else:
                    np.multiply(b, lr, out=d)
            else:
                d *= lr
            p -= d

    def _velocity(self, key: str, p: np.ndarray) -> np.ndarray:
        b = self.slot("momentum", key, p)
        if b.shape != p.shape or b.dtype != p.dtype:
            raise StateError(
                f"optimizer 'sgd': loaded momentum for {key!r} has shape {b.shape} and dtype "
                f"{b.dtype}, but the parameter has shape {p.shape} and dtype {p.dtype}; "
                "load optimizer state saved with the same network"
            )
        return b

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        expected = {"momentum"} if self.config.momentum else set()
        slots = {name.split("/", 1)[0] for name in state if "/" in name}
        counters = {name for name in state if name.startswith("#")}
        unexpected = sorted((slots - expected) | (counters - {"#lr"}))
        if unexpected:
            raise StateError(
                f"optimizer 'sgd' (momentum={self.config.momentum}): unexpected state entries "
                f"{unexpected}, expected only the slots {sorted(expected)} and '#lr'; "
                "load state saved by an sgd optimizer with the same settings"
            )
        super().load_state_dict(state)


@hookimpl
def lamina_register_optimizers() -> list[type]:
    return [SGD]
