"""Adam (Kingma & Ba, 2015) with Keras's defaults and optional decoupled weight decay.

For every parameter p (any shape) with gradient g (same shape), at step t = 1, 2, ...::

    p = p - lr * wd * p                           # decoupled decay (AdamW), only if wd > 0
    m = m + (1 - beta_1) * (g - m)                # = beta_1 * m + (1 - beta_1) * g
    v = v + (1 - beta_2) * (g**2 - v)             # = beta_2 * v + (1 - beta_2) * g**2
    alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
    p = p - alpha * m / (sqrt(v) + epsilon)

The bias correction is folded into the step size ``alpha`` (the "efficient version"
of section 2 of the paper, as Keras computes it), so epsilon is added to the
uncorrected sqrt(v). On the first step m / sqrt(v) = sign(g) and each parameter
moves by almost exactly lr. Weight decay is decoupled, as in AdamW (Loshchilov &
Hutter, 2019): it shrinks p directly, scaled by the current lr, and never enters
m or v.

State: slots ``m`` and ``v`` (one array per parameter, same shape and dtype) and
the counter ``t`` (steps taken). All arithmetic is done in the parameter's dtype
with preallocated arrays, so float32 stays float32 and a step allocates nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from lamina import Optimizer, OptimizerConfig, StateError, hookimpl


class AdamConfig(OptimizerConfig):
    """Settings of ``adam``; the defaults are Keras's (epsilon differs from PyTorch's 1e-8)."""

    lr: float = Field(1e-3, gt=0, description="learning rate")
    beta_1: float = Field(0.9, ge=0, lt=1, description="decay rate of the first moment m")
    beta_2: float = Field(0.999, ge=0, lt=1, description="decay rate of the second moment v")
    epsilon: float = Field(1e-7, gt=0, description="added to sqrt(v) to avoid division by 0")
    weight_decay: float = Field(
        0.0, ge=0, description="decoupled (AdamW) weight decay: p -= lr * weight_decay * p"
    )


class Adam(Optimizer):
    """Adam with bias correction and decoupled weight decay; see the module docstring."""

    name = "adam"
    Config = AdamConfig

    def __init__(self, config: Any = None, /, **kwargs: Any):
        super().__init__(config, **kwargs)
        # Scratch arrays for intermediate terms, so a step allocates nothing; never saved.
        self._scratch: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        c = self.config
        t = self.counters.get("t", 0) + 1
        lr = float(self.lr)
        alpha = lr * math.sqrt(1.0 - c.beta_2**t) / (1.0 - c.beta_1**t)
        for key, p in params.items():
            g = grads[key]
            m, v = self._moment("m", key, p), self._moment("v", key, p)
            s = self._scratch.get(key)
            if s is None or s.shape != p.shape or s.dtype != p.dtype:
                s = self._scratch[key] = np.empty_like(p)
            if c.weight_decay:
                p *= 1.0 - lr * c.weight_decay
            np.subtract(g, m, out=s)
            s *= 1.0 - c.beta_1
            m += s
            np.square(g, out=s)
            s -= v
            s *= 1.0 - c.beta_2
            v += s
            np.sqrt(v, out=s)
            s += c.epsilon
            np.divide(m, s, out=s)
            s *= alpha
            p -= s
        self.counters["t"] = t

    def _moment(self, slot: str, key: str, p: np.ndarray) -> np.ndarray:
        arr = self.slot(slot, key, p)
        if arr.shape != p.shape or arr.dtype != p.dtype:
            raise StateError(
                f"optimizer 'adam': loaded slot {slot!r} for {key!r} has shape {arr.shape} and "
                f"dtype {arr.dtype}, but the parameter has shape {p.shape} and dtype {p.dtype}; "
                "load optimizer state saved with the same network"
            )
        return arr

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        slots = {name.split("/", 1)[0] for name in state if "/" in name}
        counters = {name for name in state if name.startswith("#")}
        unexpected = sorted((slots - {"m", "v"}) | (counters - {"#t", "#lr"}))
        if unexpected or (slots and "#t" not in counters):
            found = f"unexpected entries {unexpected}" if unexpected else "no step count '#t'"
            raise StateError(
                f"optimizer 'adam': the state has {found}; expected the slots 'm' and 'v' "
                "with the step count '#t' (and '#lr'); load state saved by an adam optimizer"
            )
        super().load_state_dict(state)


@hookimpl
def lamina_register_optimizers() -> list[type]:
    return [Adam]
