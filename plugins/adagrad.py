"""Adagrad (Duchi, Hazan & Singer, 2011) as Keras 3 computes it.

For every parameter p (any shape) with gradient g (same shape), learning rate lr and
epsilon, one step is::

    a = a + g**2                        # accumulator, starts at initial_accumulator_value
    p = p - lr * g / sqrt(a + epsilon)  # epsilon inside the square root

Each parameter's step is divided by the root of the sum of all its squared gradients
so far: parameters with large or frequent gradients take ever smaller steps, rarely
updated ones keep larger ones, and every step shrinks roughly as 1 / sqrt(t). The rule
and the defaults (lr 1e-3, initial_accumulator_value 0.1, epsilon 1e-7) are Keras's, as
for ``adam`` and ``rmsprop``: PyTorch's ``torch.optim.Adagrad`` adds its epsilon outside
the root, ``sqrt(a) + eps``, and defaults to lr 1e-2, an accumulator starting at 0 and
eps 1e-10. The starting value 0.1 bounds the first steps: with a = 0, the first step is
lr * sign(g) for every parameter however small its gradient.

State: the slot ``accumulator`` (one array per parameter, same shape and dtype), the
sum a itself, so a saved state reads as the formula. All arithmetic is done in the
parameter's dtype with a reused work array, so float32 stays float32 and a step
allocates nothing.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lamina import Optimizer, OptimizerConfig, OptimizerExample, OptimizerReference, hookimpl


class AdagradConfig(OptimizerConfig):
    """Settings of ``adagrad``; the defaults are Keras's (PyTorch's: lr 1e-2, 0, eps 1e-10)."""

    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="learning rate")
    initial_accumulator_value: float = Field(
        0.1, ge=0, allow_inf_nan=False,
        description="starting value of the accumulator a of squared gradients")
    epsilon: float = Field(1e-7, gt=0, allow_inf_nan=False,
                           description="added to the accumulator inside the square root")


class Adagrad(Optimizer):
    """Adagrad; see the module docstring."""

    name = "adagrad"
    Config = AdagradConfig

    def state_slots(self) -> tuple[str, ...]:
        return ("accumulator",)

    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        c = self.config
        lr = float(self.lr)
        for key, p in params.items():
            g = grads[key]
            fresh = key not in self.slots["accumulator"]
            a = self.slot("accumulator", key, p)
            if fresh:
                a += c.initial_accumulator_value
            d = self.scratch(key, p)  # intermediate terms: a step allocates nothing
            np.square(g, out=d)
            a += d
            np.add(a, c.epsilon, out=d)
            np.sqrt(d, out=d)
            np.divide(g, d, out=d)
            d *= lr
            p -= d

    @classmethod
    def examples(cls) -> list[OptimizerExample]:
        return [
            # docs/optimizers.md, "Hand-worked examples": g = 1, 2, 0.5 from p = 1.
            # a = 0.1 + 1 = 1.1, d = 0.1 * 1 / sqrt(1.1000001) = 0.0953462545906,
            # p = 0.904653745409; a = 1.1 + 4 = 5.1, d = 0.2 / sqrt(5.1000001)
            # = 0.0885614876858, p = 0.816092257724; a = 5.1 + 0.25 = 5.35,
            # d = 0.05 / sqrt(5.3500001) = 0.0216168848563, p = 0.794475372867
            OptimizerExample(config={"lr": 0.1}, id="default", reference=OptimizerReference(
                params={"dense_1.W": [1.0]},
                grads=[{"dense_1.W": [1.0]}, {"dense_1.W": [2.0]}, {"dense_1.W": [0.5]}],
                expected={"dense_1.W": [0.794475372867]})),
            # PyTorch's starting accumulator, g = 2 twice: a = 4, d = 0.2 / sqrt(4.0000001)
            # = 0.0999999987500 (lr * sign(g), less epsilon's share), p = 0.900000001250;
            # a = 8, d = 0.2 / sqrt(8.0000001) = 0.0707106776767, p = 0.829289323573
            OptimizerExample(config={"lr": 0.1, "initial_accumulator_value": 0.0},
                             id="zero-start", reference=OptimizerReference(
                                 params={"dense_1.W": [1.0]},
                                 grads=[{"dense_1.W": [2.0]}, {"dense_1.W": [2.0]}],
                                 expected={"dense_1.W": [0.829289323573]})),
        ]


@hookimpl
def lamina_register_optimizers() -> list[type]:
    return [Adagrad]
