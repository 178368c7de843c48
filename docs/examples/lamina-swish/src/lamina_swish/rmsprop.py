"""rmsprop_eps_outside: RMSprop with epsilon added outside the square root.

For every parameter p (any shape) with gradient g (same shape), learning rate lr,
decay rho and epsilon, one step is (Hinton's lecture 6e, with epsilon where PyTorch
puts it):

    s = rho * s + (1 - rho) * g**2            # running mean of g**2, s starts at 0
    p = p - lr * g / (sqrt(s) + epsilon)

lamina's built-in ``rmsprop`` follows Keras and adds epsilon inside the root,
``sqrt(s + epsilon)``; that is the one difference (the defaults are the same). It
matters while |g| is near sqrt(epsilon) or below: there this form takes larger steps.

State: the slot ``s`` (one array per parameter, same shape and dtype). lamina keeps
the step count and the learning rate, and checks every state loaded into it.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lamina import Optimizer, OptimizerConfig, OptimizerExample, OptimizerReference, hookimpl


class RMSpropEpsOutsideConfig(OptimizerConfig):
    """Settings of rmsprop_eps_outside."""

    lr: float = Field(1e-3, gt=0, description="learning rate")
    rho: float = Field(0.9, ge=0, lt=1, description="decay of the running mean of g**2")
    epsilon: float = Field(1e-7, gt=0, description="added to sqrt(s) against division by 0")


class RMSpropEpsOutside(Optimizer):
    """RMSprop with epsilon outside the square root; see the module docstring."""

    name = "rmsprop_eps_outside"
    Config = RMSpropEpsOutsideConfig

    def state_slots(self) -> tuple[str, ...]:
        return ("s",)

    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        rho, eps, lr = self.config.rho, self.config.epsilon, float(self.lr)
        for key, p in params.items():
            g = grads[key]
            s = self.slot("s", key, p)
            d = self.scratch(key, p)
            np.square(g, out=d)
            s *= rho
            s += (1 - rho) * d
            np.sqrt(s, out=d)
            d += eps
            np.divide(g, d, out=d)
            d *= lr
            p -= d

    @classmethod
    def examples(cls) -> list[OptimizerExample]:
        # Worked by hand: g = 0.5 on p = 1: s = 0.1 * 0.25 = 0.025, and the step is
        # 0.05 * 0.5 / (sqrt(0.025) + 1e-7) = 0.158113783, so p = 0.841886217
        # (epsilon inside the root would give 0.841886433).
        return [OptimizerExample(config={"lr": 0.05}, id="default", reference=OptimizerReference(
                    params={"dense_1.W": [1.0]}, grads=[{"dense_1.W": [0.5]}],
                    expected={"dense_1.W": [0.8418862169915]})),
                OptimizerExample(config={"lr": 0.02, "rho": 0.5}, id="short-memory")]


@hookimpl
def lamina_register_optimizers():
    return [RMSpropEpsOutside]
