"""Weight initializers shared by the built-in layers (and usable by any plugin).

``fan_in`` and ``fan_out`` are the number of inputs and outputs one weight
connects: for a dense layer (in, out); for a conv kernel shaped (out, in, kh, kw)
they are ``in * kh * kw`` and ``out * kh * kw``, as in Keras.

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
    """(fan_in, fan_out) of a weight: (in, out) for 2-D, (out, in, *kernel) for conv."""
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


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
