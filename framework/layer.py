"""The layer protocol and a convenience base class.

A layer plugin is a class with

- ``name``: its plugin name, the value of ``type`` in a config (``"conv2d"``);
- ``Config``: a frozen pydantic model of its settings that forbids unknown keys;
- ``build(input_shape, rng, *, dtype) -> output_shape``: shapes are per sample
  (no batch axis). Allocates and initialises parameters from ``rng`` (the one
  generator the runner owns) and raises :class:`ShapeError` when the input does
  not fit. A stochastic layer keeps ``rng`` and draws from it alone: when training
  runs on shards, each replica's generator is reseeded every step
  (:mod:`lamina.parallel`);
- ``forward(x, *, training) -> y`` and ``backward(dy) -> dx``: arrays carry the
  batch axis first. ``backward`` overwrites (never accumulates) the gradients;
- ``params()``, ``grads()``: live arrays under the same keys and shapes;
- ``state()``: non-trainable arrays (running statistics) saved with the params;
- ``examples()``: configs and input shapes the conformance suite exercises.

A layer that takes several inputs (``multi_input = True``, e.g. ``add``) gets a
tuple of shapes in ``build``, a list of arrays in ``forward`` and returns a list
of gradients from ``backward``.

Loaders (the graph runner's ``load_state_dict``, checkpoints) copy values *into*
the arrays that ``params()`` and ``state()`` return, so a layer may keep
references to them.

Optional parts of the protocol, each with a default that is always correct:

- ``needs_input_grad`` (instance attribute, default ``True``): the graph runner
  sets it to ``False`` on a layer whose input is the network input when nobody
  asked for the input gradient (training never does). ``backward`` may then skip
  computing dx and return ``None`` (a multi-input layer: ``None`` in its list);
  the parameter gradients must still be filled.
- ``monotone_elementwise`` and ``max_selecting`` (class flags, default ``False``):
  declarations that let the runner run a pair of layers in the cheaper order with
  exactly the same results. ``monotone_elementwise``: the layer applies one scalar
  function f to every entry, f is non-decreasing, f' = 0 (in backward) wherever f is
  flat, including the ends of a flat piece, it has no parameters and takes any
  shape (relu). ``max_selecting``: every output is the first maximal entry of a
  window of its input, in a fixed order of the window, and backward routes each
  output's gradient to exactly that entry (max pooling). Then f(pool(x)) equals
  pool(f(x)), value and gradient: a flat piece of f only ties entries whose
  derivative is 0 either way. When a ``monotone_elementwise`` layer feeds only a
  ``max_selecting`` layer, the runner pools first and applies f to the smaller
  pooled array (see :mod:`lamina.graph`); the config and the summary do not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from .errors import BackwardBeforeForwardError

Shape = tuple[int, ...]


class LayerConfig(BaseModel):
    """Base of every plugin's config model: frozen, unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Example:
    """One configuration the conformance suite runs a plugin with.

    ``input_shape`` is per sample (a tuple of shapes for a multi-input layer).
    ``input_range`` bounds the uniform inputs the checks draw; a layer whose
    forward is only defined on part of the line (a log, a sqrt) narrows it.
    """

    config: dict[str, Any]
    input_shape: Any
    id: str = ""
    input_range: tuple[float, float] = (-1.0, 1.0)
    extra: dict[str, Any] = field(default_factory=dict)


def make_config(model: type[BaseModel], config: BaseModel | dict[str, Any] | None,
                kwargs: dict[str, Any]) -> BaseModel:
    """A plugin's config from a config object, a dict, or keyword arguments (not both)."""
    if config is None:
        return model(**kwargs)
    if kwargs:
        raise TypeError("pass either a config object or keyword arguments, not both")
    return model(**config) if isinstance(config, dict) else config


class Layer(ABC):
    """Convenience base class implementing the bookkeeping of the layer protocol.

    Subclasses set ``name`` and ``Config`` and implement ``build``, ``forward``,
    ``backward`` and ``examples``. In ``build`` they call :meth:`add_param` (a
    trainable array with a zero gradient beside it) and :meth:`add_state`
    (non-trainable). In ``forward`` they keep what ``backward`` needs in
    ``self.cache``; ``backward`` reads it back with :meth:`cached`, which raises
    :class:`BackwardBeforeForwardError` if ``forward`` has not run.
    """

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = LayerConfig
    #: takes a list of inputs (e.g. ``add``)
    multi_input: ClassVar[bool] = False
    #: one sample's output depends on other samples of the batch (e.g. batchnorm)
    batch_dependent: ClassVar[bool] = False
    #: training-mode output is random (e.g. dropout); eval mode must not be
    stochastic: ClassVar[bool] = False
    #: y = f(x) entry by entry, f non-decreasing with f' = 0 where flat; no params, any shape
    monotone_elementwise: ClassVar[bool] = False
    #: each output is its window's first maximal input, which alone receives its gradient
    max_selecting: ClassVar[bool] = False
    #: set to False by the runner when backward may return None for the input (not a ClassVar)
    needs_input_grad: bool = True

    def __init__(self, config: BaseModel | dict[str, Any] | None = None, /, **kwargs: Any):
        self.config = make_config(self.Config, config, kwargs)
        self._params: dict[str, np.ndarray] = {}
        self._grads: dict[str, np.ndarray] = {}
        self._state: dict[str, np.ndarray] = {}
        self.cache: Any = None
        self.input_shape: Any = None
        self.output_shape: Any = None
        self.dtype = np.dtype(np.float32)

    # -- the protocol -----------------------------------------------------------------
    @abstractmethod
    def build(self, input_shape: Shape, rng: np.random.Generator, *, dtype=np.float32) -> Shape:
        raise NotImplementedError(f"{type(self).__name__} must implement build()")

    @abstractmethod
    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    @abstractmethod
    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement backward()")

    def params(self) -> dict[str, np.ndarray]:
        return self._params

    def grads(self) -> dict[str, np.ndarray]:
        return self._grads

    def state(self) -> dict[str, np.ndarray]:
        return self._state

    @classmethod
    @abstractmethod
    def examples(cls) -> list[Example]:
        raise NotImplementedError(f"{cls.__name__} must list examples() for the conformance suite")

    # -- helpers for subclasses -------------------------------------------------------
    def add_param(self, key: str, value: np.ndarray) -> np.ndarray:
        """Register a trainable array and a zero gradient of the same shape and dtype."""
        self._params[key] = value
        self._grads[key] = np.zeros_like(value)
        return value

    def add_state(self, key: str, value: np.ndarray) -> np.ndarray:
        """Register a non-trainable array (saved with the params, never optimised)."""
        self._state[key] = value
        return value

    def cached(self) -> Any:
        """What ``forward`` kept for ``backward``; raises if ``forward`` never ran."""
        if self.cache is None:
            raise BackwardBeforeForwardError(
                f"layer {self.name!r}: backward() was called before forward(); "
                "run forward(x, training=True) on a batch first"
            )
        return self.cache

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({settings})"
