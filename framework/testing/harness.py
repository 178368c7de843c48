"""How the layer checks build, feed and run a plugin: one place that knows the declarations
and single- versus multi-input layers.

Every check builds its own layer from the class and the example's config, draws its
own data from a generator seeded with :data:`~lamina.testing.base.SEED`, and hands
the layer copies, so that one broken contract fails one check. Layers run in
float64 unless a check says otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import gradcheck
from .base import fail, rng

BATCH = 3


def flag(plugin: type, example: Any, name: str) -> bool:
    """A declaration of ``plugin`` (:class:`lamina.LayerTraits`), as ``example`` overrides it."""
    return bool(example.extra.get(name, getattr(plugin.traits, name, False)))


def multi(plugin: Any) -> bool:
    return bool(plugin.traits.multi_input)


def input_shapes(plugin: type, example: Any) -> list[tuple[int, ...]]:
    if multi(plugin):
        return [tuple(shape) for shape in example.input_shape]
    return [tuple(example.input_shape)]


def build(plugin: type, example: Any, *, dtype=np.float64, seed: int = 0,
          input_shape: Any = None):
    """A layer of ``plugin`` built from the example's config; returns (layer, output shape)."""
    layer = plugin(dict(example.config))
    shape = example.input_shape if input_shape is None else input_shape
    out_shape = layer.build(shape, rng(seed), dtype=dtype)
    return layer, out_shape


def draw_inputs(plugin: type, example: Any, *, dtype=np.float64, n: int = BATCH,
                seed: int = 7) -> list[np.ndarray]:
    lo, hi = (float(v) for v in example.input_range)
    # Keep the finite-difference stencil inside the range the layer is defined on.
    margin = 2 * gradcheck.STEP if hi - lo > 8 * gradcheck.STEP else 0.0
    gen = rng(seed)
    return [gen.uniform(lo + margin, hi - margin, size=(n, *shape)).astype(dtype)
            for shape in input_shapes(plugin, example)]


def forward(layer: Any, xs: list[np.ndarray], *, training: bool) -> np.ndarray:
    """The layer's output on copies of ``xs``, itself copied (layers may reuse buffers)."""
    arg = [x.copy() for x in xs] if multi(layer) else xs[0].copy()
    return np.array(layer.forward(arg, training=training), copy=True)


def backward(layer: Any, dy: np.ndarray, n_inputs: int, *,
             input_grad: bool = True) -> list[np.ndarray]:
    """The input gradients (copies) of ``backward(dy)``, one per input."""
    dx = layer.backward(dy.copy(), input_grad=input_grad)
    if not input_grad:
        return []
    if not multi(layer):
        return [np.array(dx, copy=True)]
    if not isinstance(dx, list | tuple) or len(dx) != n_inputs:
        fail(f"backward() of a multi-input layer to return a list of {n_inputs} gradients",
             repr(type(dx)) if not isinstance(dx, list | tuple) else f"{len(dx)} gradients")
    return [np.array(d, copy=True) for d in dx]


def upstream(y: np.ndarray, dtype=np.float64) -> np.ndarray:
    return rng(11).uniform(-1.0, 1.0, size=y.shape).astype(dtype)


def shared_keys(layer: Any) -> list[str]:
    grads = layer.grads()
    return [k for k in layer.params() if k in grads and grads[k].shape == layer.params()[k].shape]


def arrays_of(layer: Any) -> dict[str, dict[str, np.ndarray]]:
    """The layer's live arrays: ``params``, ``grads`` and ``state`` by key."""
    return {what: dict(getattr(layer, what)()) for what in ("params", "grads", "state")}


def copy_values(source: Any, target: Any) -> None:
    """Copy ``source``'s params and state into ``target``'s arrays, as loaders do."""
    for what in ("params", "state"):
        targets = getattr(target, what)()
        for key, value in getattr(source, what)().items():
            np.copyto(targets[key], value, casting="same_kind")


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def close(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1.0)
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=1e-12 * scale)
