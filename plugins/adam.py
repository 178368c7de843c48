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

State: slots ``m`` and ``v`` (one array per parameter, same shape and dtype); t is
the optimizer's step count, which lamina keeps for every optimizer. All arithmetic is
done in the parameter's dtype with preallocated arrays, so float32 stays float32 and a
step allocates nothing.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from lamina import Optimizer, OptimizerConfig, OptimizerExample, OptimizerReference, hookimpl


class AdamConfig(OptimizerConfig):
    """Settings of ``adam``; the defaults are Keras's (epsilon differs from PyTorch's 1e-8)."""

    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="learning rate")
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

    def state_slots(self) -> tuple[str, ...]:
        return ("m", "v")

    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        c = self.config
        t = self.steps + 1
        lr = float(self.lr)
        alpha = lr * math.sqrt(1.0 - c.beta_2**t) / (1.0 - c.beta_1**t)
        for key, p in params.items():
            g = grads[key]
            m, v = self.slot("m", key, p), self.slot("v", key, p)
            s = self.scratch(key, p)  # intermediate terms: a step allocates nothing
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

    @classmethod
    def examples(cls) -> list[OptimizerExample]:
        return [
            # docs/optimizers.md, "Hand-worked examples": g = 0.5, then -1
            OptimizerExample(config={"lr": 0.05}, id="default", reference=OptimizerReference(
                params={"dense_1.b": [1.0]}, grads=[{"dense_1.b": [0.5]}, {"dense_1.b": [-1.0]}],
                expected={"dense_1.b": [0.968305440797669]})),
            OptimizerExample(config={"lr": 0.05, "weight_decay": 0.01}, id="adamw"),
        ]


@hookimpl
def lamina_register_optimizers() -> list[type]:
    return [Adam]
