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

import numpy as np
from pydantic import Field, model_validator

from lamina import Optimizer, OptimizerConfig, OptimizerExample, OptimizerReference, hookimpl


class SGDConfig(OptimizerConfig):
    """Settings of ``sgd``."""

    lr: float = Field(0.01, gt=0, allow_inf_nan=False,
                      description="learning rate (Keras's SGD default)")
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

    def state_slots(self) -> tuple[str, ...]:
        return ("momentum",) if self.config.momentum else ()

    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        lr, mu, wd = float(self.lr), self.config.momentum, self.config.weight_decay
        for key, p in params.items():
            g = grads[key]
            d = self.scratch(key, p)  # the direction, in a reused array: a step allocates nothing
            if wd:
                np.multiply(p, wd, out=d)
                d += g
            else:
                np.copyto(d, g)
            if mu:
                b = self.slot("momentum", key, p)
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

    @classmethod
    def examples(cls) -> list[OptimizerExample]:
        return [
            OptimizerExample(config={}, id="plain"),
            # docs/optimizers.md, "Hand-worked examples": g = 1 twice; b = 1, p = 0.95; then
            # b = 0.9 * 1 + 1 = 1.9, p = 0.95 - 0.05 * 1.9 = 0.855
            OptimizerExample(config={"lr": 0.05, "momentum": 0.9}, id="momentum",
                             reference=OptimizerReference(
                                 params={"dense_1.W": [1.0]},
                                 grads=[{"dense_1.W": [1.0]}, {"dense_1.W": [1.0]}],
                                 expected={"dense_1.W": [0.855]})),
            # g' = 1 + 1e-4 = 1.0001, b = 1.0001, d = g' + 0.9 b = 1.90019,
            # p = 1 - 0.05 * 1.90019 = 0.9049905
            OptimizerExample(config={"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                     "weight_decay": 1e-4}, id="nesterov-decay",
                             reference=OptimizerReference(
                                 params={"dense_1.W": [1.0]}, grads=[{"dense_1.W": [1.0]}],
                                 expected={"dense_1.W": [0.9049905]})),
        ]


@hookimpl
def lamina_register_optimizers() -> list[type]:
    return [SGD]
