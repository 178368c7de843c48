"""Weight initializers shared by the built-in layers (and usable by any plugin).

``fan_in`` and ``fan_out`` are the number of inputs and outputs one weight
connects, read from the weight's shape as Keras reads it: (in, out) for a 2-D weight
(a dense layer); ``in * k`` and ``out * k`` for a weight shaped (out, in, *kernel),
k the kernel's size (a conv kernel (out, in, kh, kw): k = kh * kw); the length for a
1-D weight (a per-channel scale), and 1 for a scalar. A layer whose weight is laid
out otherwise passes its own function as ``ParamSpec(init=...)``.

- Glorot (Xavier) uniform: U(-l, l) with l = sqrt(6 / (fan_in + fan_out)); Keras's default.
- Glorot normal: N(0, 2 / (fan_in + fan_out)).
- He uniform: U(-l, l) with l = sqrt(6 / fan_in); He normal: N(0, 2 / fan_in). Suited to ReLU.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Initializer = Literal["glorot_uniform", "glorot_normal", "he_uniform", "he_normal"]
INITIALIZERS: tuple[str, ...] = Initializer.__args__


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: (in, out) for 2-D, (out, in, *kernel) for conv, the
    length twice for 1-D, (1, 1) for a scalar."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def constant(value: float):
    """An init function for ``ParamSpec(init=...)`` filling an array with ``value``, in the
    dtype the network runs in (as every init function must return)."""
    def init(shape: tuple[int, ...], rng: np.random.Generator, dtype) -> np.ndarray:
        return np.full(shape, value, dtype=dtype)

    return init


def initialize(
    kind: Initializer, shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    """A new array of ``shape`` drawn from ``rng`` by the named scheme."""
    fan_in, fan_out = fans(shape)
    if kind == "glorot_uniform":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=shape)
    elif kind == "glorot_normal":
        w = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)
    elif kind == "he_uniform":
        limit = np.sqrt(6.0 / fan_in)
        w = rng.uniform(-limit, limit, size=shape)
    elif kind == "he_normal":
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    else:
        raise ValueError(f"unknown initializer {kind!r}; expected one of {', '.join(INITIALIZERS)}")
    return w.astype(dtype)
