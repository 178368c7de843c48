"""RMSprop (Hinton, 2012, lecture 6e) as Keras 3 computes it, with optional momentum and
the centered variant (Graves, 2013).

For every parameter p (any shape) with gradient g (same shape), learning rate lr, decay
rho, momentum mu and epsilon, one step is::

    v = rho * v + (1 - rho) * g**2               # running mean of g**2 (v starts at 0)
    m = rho * m + (1 - rho) * g                  # running mean of g, only if centered
    s = v - m**2   if centered                   # running variance of g (floored at 0)
        v          otherwise
    d = lr * g / sqrt(s + epsilon)               # epsilon inside the square root
    b = mu * b + d                               # velocity, only if mu > 0 (b starts at 0)
    p = p - b      if mu > 0
        p - d      otherwise

Each parameter's step is scaled by the root mean square of its recent gradients, so
every parameter moves by about lr whatever the size of its gradient. The rule and the
defaults (lr 1e-3, rho 0.9, epsilon 1e-7) are Keras's, as for ``adam``: PyTorch's
``torch.optim.RMSprop`` adds its epsilon outside the root, ``sqrt(s) + eps``, keeps the
velocity without lr (``b = mu * b + g / (sqrt(s) + eps)``, ``p -= lr * b``) and
defaults to lr 1e-2 and alpha (rho) 0.99. Because the velocity holds steps already
scaled by lr, a new learning rate from a schedule acts on new steps while the velocity
still carries the earlier ones, as in Keras. ``v - m**2`` is a variance, never negative
in exact arithmetic; it is floored at 0 because in float32, with a gradient that hardly
changes, rounding takes it below -epsilon, where Keras's square root gives NaN.

State: slot ``v`` always; ``m`` when centered; ``momentum`` (b) when mu > 0: one array
per parameter each, same shape and dtype. All arithmetic is done in the parameter's
dtype with a reused work array, so float32 stays float32 and a step allocates nothing.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lamina import Optimizer, OptimizerConfig, OptimizerExample, OptimizerReference, hookimpl


class RMSpropConfig(OptimizerConfig):
    """Settings of ``rmsprop``; the defaults are Keras's (PyTorch's lr is 1e-2, alpha 0.99)."""

    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="learning rate")
    rho: float = Field(0.9, ge=0, lt=1, description="decay rate of the running means v "
                       "(of g**2) and m (of g); PyTorch calls it alpha")
    momentum: float = Field(0.0, ge=0, lt=1, description="momentum factor mu of the "
                            "velocity b; 0 disables it")
    epsilon: float = Field(1e-7, gt=0, allow_inf_nan=False,
                           description="added to v (or v - m**2) inside the square root")
    centered: bool = Field(False, description="divide by the root of the running variance "
                           "v - m**2 instead of the running mean square v")


class RMSprop(Optimizer):
    """RMSprop with optional momentum and centering; see the module docstring."""

    name = "rmsprop"
    Config = RMSpropConfig

    def state_slots(self) -> tuple[str, ...]:
        c = self.config
        return ("v", *(("m",) if c.centered else ()), *(("momentum",) if c.momentum else ()))

    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        c = self.config
        lr, rho, mu = float(self.lr), c.rho, c.momentum
        for key, p in params.items():
            g = grads[key]
            v = self.slot("v", key, p)
            d = self.scratch(key, p)  # intermediate terms: a step allocates nothing
            np.square(g, out=d)
            d *= 1.0 - rho
            v *= rho
            v += d
            if c.centered:
                m = self.slot("m", key, p)
                np.multiply(g, 1.0 - rho, out=d)
                m *= rho
                m += d
                np.square(m, out=d)
                np.subtract(v, d, out=d)
                np.maximum(d, 0.0, out=d)  # a variance: only rounding makes it negative
                d += c.epsilon
            else:
                np.add(v, c.epsilon, out=d)
            np.sqrt(d, out=d)
            np.divide(g, d, out=d)
            d *= lr
            if mu:
                b = self.slot("momentum", key, p)
                b *= mu
                b += d
                p -= b
            else:
                p -= d

    @classmethod
    def examples(cls) -> list[OptimizerExample]:
        return [
            # docs/optimizers.md, "Hand-worked examples": g = 1, 2, -1 from p = 1.
            # v = 0.1, d = 0.1 * 1 / sqrt(0.1000001) = 0.316227607903, p = 0.683772392097;
            # v = 0.09 + 0.4 = 0.49, d = 0.2 / sqrt(0.4900001) = 0.285714256560,
            # p = 0.398058135537; v = 0.441 + 0.1 = 0.541,
            # d = -0.1 / sqrt(0.5410001) = -0.135956923098, p = 0.534015058635
            OptimizerExample(config={"lr": 0.1}, id="default", reference=OptimizerReference(
                params={"dense_1.W": [1.0]},
                grads=[{"dense_1.W": [1.0]}, {"dense_1.W": [2.0]}, {"dense_1.W": [-1.0]}],
                expected={"dense_1.W": [0.534015058635]})),
            # g = 1, 2: d = 0.316227607903 as above, b = d, p = 0.683772392097;
            # d = 0.285714256560, b = 0.5 * 0.316227607903 + d = 0.443828060511,
            # p = 0.683772392097 - 0.443828060511 = 0.239944331586
            OptimizerExample(config={"lr": 0.1, "momentum": 0.5}, id="momentum",
                             reference=OptimizerReference(
                                 params={"dense_1.W": [1.0]},
                                 grads=[{"dense_1.W": [1.0]}, {"dense_1.W": [2.0]}],
                                 expected={"dense_1.W": [0.239944331586]})),
            # g = 1, 2: v = 0.1, m = 0.1, s = 0.1 - 0.01 = 0.09,
            # d = 0.1 / sqrt(0.0900001) = 0.333333148148, p = 0.666666851852;
            # v = 0.49, m = 0.09 + 0.2 = 0.29, s = 0.49 - 0.0841 = 0.4059,
            # d = 0.2 / sqrt(0.4059001) = 0.313921034229, p = 0.352745817623
            OptimizerExample(config={"lr": 0.1, "centered": True}, id="centered",
                             reference=OptimizerReference(
                                 params={"dense_1.W": [1.0]},
                                 grads=[{"dense_1.W": [1.0]}, {"dense_1.W": [2.0]}],
                                 expected={"dense_1.W": [0.352745817623]})),
        ]


@hookimpl
def lamina_register_optimizers() -> list[type]:
    return [RMSprop]
