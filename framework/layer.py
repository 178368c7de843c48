"""The layer contract: what a layer plugin writes, what it declares, what lamina relies on.

A layer plugin subclasses :class:`Layer` and writes

- ``name`` (the value of ``type`` in a config) and ``Config`` (a frozen pydantic
  model that forbids unknown keys);
- ``compute_output_shape(input_shape) -> output_shape``: per-sample shapes (no
  batch axis), a pure function of the config and the input shape. It allocates
  nothing, so ``lamina validate`` and ``lamina summary`` run it from the config
  alone; it raises :class:`~lamina.errors.ShapeError` when the input does not fit;
- ``param_specs(input_shape) -> {key: ParamSpec}`` when the layer has parameters
  or non-trainable state: their shapes and how they start. lamina allocates and
  initialises them;
- ``forward(x, *, training) -> y`` and ``backward(dy, *, input_grad) -> dx``:
  arrays carry the batch axis first. ``forward`` keeps what ``backward`` needs in
  ``self.cache``; ``backward`` starts with ``self.cached()``, overwrites (never
  accumulates) every parameter gradient, and returns dx. With ``input_grad=False``
  the caller does not need dx (the layer reads the network input): ``backward``
  may return ``None`` then, but fills exactly the same parameter gradients;
- ``examples()``: configs and input shapes the conformance suite exercises;
- ``traits``: the optional declarations (:class:`LayerTraits`), when any applies.

:meth:`Layer.build` is the template that does the bookkeeping every layer shares:
it normalises and checks the shapes, records ``dtype``, ``input_shape`` and
``output_shape``, keeps the generator (``self.rng``) and creates the arrays the
specs describe. What the rest of lamina relies on, and the conformance check that
holds a plugin to it (docs/writing-a-plugin.md has the full list):

- ``params()``, ``grads()`` and ``state()`` return the live arrays, under the same
  keys, for the layer's whole life: optimizers update parameters in place,
  loaders and checkpoints copy values into them, and training loops may hold the
  gradient arrays (``check_arrays_stay_live``, ``check_uses_current_params``);
- randomness comes only from ``self.rng``, the generator ``build`` received: the
  sharded training step reseeds it every step (``check_draws_from_build_generator``);
- the same inputs give the same gradients in float32 as in float64, within float32
  rounding (``check_float32_matches_float64``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .errors import BackwardBeforeForwardError, PluginError, ShapeError
from .initializers import INITIALIZERS, initialize

Shape = tuple[int, ...]


#: The type of a string setting that takes any text (a label, a file name). Every other
#: string setting is a closed set of choices (``Literal[...]``) or a ``pattern``, so that
#: a misspelt choice is an error rather than a silent fallback; the conformance suite
#: holds configs to that and accepts a field typed ``FreeText`` as declared free.
FreeText = Annotated[str, Field(json_schema_extra={"free_form": True})]


class LayerConfig(BaseModel):
    """Base of every plugin's config model: frozen, unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class LayerTraits:
    """The optional declarations of a layer, all ``False`` unless the layer sets them.

    Each one changes what the graph runner or the sharded training step does with
    the layer, so each is checked by the conformance suite: a declaration that does
    not hold fails ``lamina check``.
    """

    #: takes two or more inputs (``add``): ``build`` gets a tuple of shapes,
    #: ``forward`` a list of arrays, and ``backward`` returns a list of gradients
    multi_input: bool = False
    #: one sample's output depends on the other samples of the batch (batchnorm):
    #: the sharded step then runs the batch whole
    batch_dependent: bool = False
    #: training-mode output is random (dropout), drawn only from ``self.rng``; eval
    #: mode is deterministic. The sharded step reseeds ``self.rng`` every step
    stochastic: bool = False
    #: y = f(x) entry by entry, one scalar f, non-decreasing, with f' = 0 wherever f
    #: is flat; no parameters; any shape (relu, leaky_relu, elu, sigmoid, tanh; not
    #: gelu, which dips). The runner may then apply the layer after a ``max_selecting``
    #: layer instead of before it, on fewer entries. An increasing curved f qualifies when
    #: its gradient is 0 where its output has rounded to f's limit, a flat piece of the
    #: computed f (compute it from the output, as tanh's 1 - y^2). The swap is exact for
    #: relu; for a curved f it holds to f's rounding (lamina.steps)
    monotone_elementwise: bool = False
    #: every output is the first maximal entry of a window of its input (in a fixed
    #: order of the window), and backward routes its gradient to exactly that entry
    #: (max pooling): f(pool(x)) equals pool(f(x)), values and gradients. A max_selecting
    #: layer that pools windows of the last two axes says which in ``max_pool_window()``
    max_selecting: bool = False
    #: the layer can end in the max pool that follows it (conv2d): for the windows
    #: ``fusable_max_pool(window)`` accepts, ``forward_max_pool(x, window, *, training)``
    #: returns the pool of its forward and ``backward_max_pool(dy, *, input_grad)`` takes
    #: the pooled output's gradient. The runner then runs layer, pool (and a
    #: monotone_elementwise layer between them, moved behind the pool) as one fused chain
    #: (lamina.steps); the conformance suite holds the pair to the unfused layers
    fuses_max_pool: bool = False

    def __post_init__(self) -> None:
        for item in fields(self):
            if not isinstance(getattr(self, item.name), bool):
                raise TypeError(f"LayerTraits.{item.name} must be True or False, received "
                                f"{getattr(self, item.name)!r}")
        if self.multi_input and (self.monotone_elementwise or self.max_selecting
                                 or self.fuses_max_pool):
            raise TypeError("a multi_input layer cannot be monotone_elementwise, max_selecting "
                            "or fuses_max_pool: each acts on one input")


#: the max pools (window, stride) a ``fuses_max_pool`` layer may end in: the runner fuses
#: only these, the ones ``check_fuses_max_pool`` verifies (the reference network's 2x2
#: pool, an overlapping and a strided one)
FUSED_POOL_WINDOWS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((2, 2), (2, 2)), ((3, 3), (2, 2)), ((2, 2), (1, 1)))

#: the names of the declarations, for the places that read them by name
TRAIT_NAMES: tuple[str, ...] = tuple(item.name for item in fields(LayerTraits))

#: ``init`` of a :class:`ParamSpec`: a name, or a function (shape, rng, dtype) -> array
Init = str | Callable[[Shape, np.random.Generator, np.dtype], np.ndarray]


@dataclass(frozen=True)
class ParamSpec:
    """One array a layer owns: its shape, how it starts, and whether it is trained.

    ``init`` is ``"zeros"``, ``"ones"``, the name of an initializer
    (:data:`lamina.INITIALIZERS`: ``"glorot_uniform"``, ...) or a function
    ``(shape, rng, dtype) -> array``. A trainable array gets a gradient beside it
    and is updated by the optimizer; a non-trainable one (running statistics) is
    ``state()``, saved with the parameters and never optimised.
    """

    shape: Shape
    init: Init = "zeros"
    trainable: bool = True

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def create(self, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        if self.init == "zeros":
            return np.zeros(self.shape, dtype=dtype)
        if self.init == "ones":
            return np.ones(self.shape, dtype=dtype)
        if isinstance(self.init, str):
            if self.init not in INITIALIZERS:
                raise PluginError(f"unknown init {self.init!r}; expected 'zeros', 'ones', one "
                                  f"of {', '.join(INITIALIZERS)} or a function")
            return initialize(self.init, self.shape, rng, dtype)
        value = np.asarray(self.init(self.shape, rng, dtype))
        if value.shape != tuple(self.shape) or value.dtype != dtype:
            raise PluginError(f"an init function returned an array of shape {value.shape} "
                              f"and dtype {value.dtype}; expected {tuple(self.shape)} and {dtype}")
        return value


@dataclass(frozen=True)
class Reference:
    """Values worked out by hand (from the layer's derivation) for one example: what the
    layer must compute, which no generic check can know (``check_reference_values``).

    ``x`` is a batch (a list of batches for a multi-input layer); ``params`` and
    ``state`` are copied into the layer's arrays before it runs (keys left out keep
    their initial values); ``y`` is the expected eval-mode output. Optionally the
    results of a training forward on the same ``x``: its output ``y_training``, the
    ``state_after`` it leaves, and for an upstream gradient ``dy`` the input gradient
    ``dx`` (a list for a multi-input layer) and parameter gradients ``grads``. Each is
    compared within ``tolerance``, absolute and relative.
    """

    x: Any
    y: Any
    params: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    y_training: Any = None
    state_after: dict[str, Any] = field(default_factory=dict)
    dy: Any = None
    dx: Any = None
    grads: dict[str, Any] = field(default_factory=dict)
    tolerance: float = 1e-6


@dataclass(frozen=True)
class Example:
    """One configuration the conformance suite runs a plugin with.

    ``input_shape`` is per sample (a tuple of shapes for a multi-input layer).
    ``input_range`` bounds the uniform inputs the checks draw; a layer whose
    forward is only defined on part of the line (a log, a sqrt) narrows it.
    ``extra`` overrides declarations for this example only, by their
    :class:`LayerTraits` names (a dropout with rate 0 is not stochastic).
    ``reference`` holds values worked out by hand for this configuration
    (:class:`Reference`); one example per plugin should have them.
    """

    config: dict[str, Any]
    input_shape: Any
    id: str = ""
    input_range: tuple[float, float] = (-1.0, 1.0)
    extra: dict[str, Any] = field(default_factory=dict)
    reference: Reference | None = None


def make_config(model: type[BaseModel], config: BaseModel | dict[str, Any] | None,
                kwargs: dict[str, Any]) -> BaseModel:
    """A plugin's config from a config object, a dict, or keyword arguments (not both)."""
    if config is None:
        return model(**kwargs)
    if kwargs:
        raise TypeError("pass either a config object or keyword arguments, not both")
    return model(**config) if isinstance(config, dict) else config


def sample_axis(axis: int, rank: int, refused: str) -> int:
    """The per-sample index (0: the first axis after the batch axis) of a setting's
    ``axis``, counted as Keras, PyTorch and ONNX count it in the (N, ...) array: 1 is the
    first per-sample axis, -1 the last. An axis a sample of ``rank`` axes does not have is
    a :class:`ShapeError` opening with ``refused`` (the layer's own words) and saying which
    axes there are. The batch axis 0 is for a config validator to refuse."""
    index = axis - 1 if axis > 0 else rank + axis
    if not 0 <= index < rank:
        raise ShapeError(f"{refused} (axes counted from the batch axis, 0); expected an axis "
                         f"from 1 to {rank} or from -{rank} to -1")
    return index


def normalize_input_shape(input_shape: Any, multi_input: bool) -> Any:
    """A per-sample shape as a tuple of ints (a tuple of such tuples for a multi-input
    layer; a single shape given to one becomes a tuple of one shape)."""
    def one(shape: Any) -> Shape:
        return tuple(int(d) for d in shape)

    if not multi_input:
        return one(input_shape)
    if all(isinstance(d, int | np.integer) for d in input_shape):
        return (one(input_shape),)
    return tuple(one(shape) for shape in input_shape)


def infer_output_shape(layer: Any, input_shape: Any) -> tuple[Any, Shape]:
    """``(input_shape, output_shape)`` of ``layer`` from its config alone, both checked.

    The output must be a tuple of whole numbers of at least 1: a plugin's arithmetic
    that yields 0 or less (a kernel larger than its input) is a :class:`ShapeError`
    rather than an empty array later; anything other than whole numbers is the
    plugin's bug, a :class:`PluginError`."""
    who = f"layer {getattr(layer, 'name', type(layer).__name__)!r}"
    input_shape = normalize_input_shape(input_shape, layer.traits.multi_input)
    out = layer.compute_output_shape(input_shape)
    if not (isinstance(out, tuple | list)
            and all(isinstance(d, int | np.integer) and not isinstance(d, bool) for d in out)):
        raise PluginError(f"{who}: compute_output_shape({input_shape}) returned {out!r}; "
                          "expected a tuple of ints, the output shape of one sample")
    out = tuple(int(d) for d in out)
    if any(d < 1 for d in out):
        raise ShapeError(f"its output would be {out} for an input of {input_shape}; every "
                         "dimension must be at least 1. Fix: a larger input or smaller "
                         "kernel, pool or stride settings")
    return input_shape, out


class Layer(ABC):
    """The base class of every layer plugin; see the module docstring for the contract.

    A plugin implements :meth:`compute_output_shape`, :meth:`forward`,
    :meth:`backward` and :meth:`examples`, and :meth:`param_specs` when it owns
    arrays. Inside ``forward`` and ``backward`` it reads ``self.input_shape``,
    ``self.dtype``, ``self.rng`` and its arrays through ``self.params()`` (or
    ``self._params``, ``self._grads``, ``self._state``).
    """

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = LayerConfig
    traits: ClassVar[LayerTraits] = LayerTraits()

    def __init__(self, config: BaseModel | dict[str, Any] | None = None, /, **kwargs: Any):
        self.config = make_config(self.Config, config, kwargs)
        self.dtype = np.dtype(np.float32)
        self.input_shape: Any = None
        self.output_shape: Shape | None = None
        self.rng: np.random.Generator | None = None
        self._params: dict[str, np.ndarray] = {}
        self._grads: dict[str, np.ndarray] = {}
        self._state: dict[str, np.ndarray] = {}
        self.cache: Any = None

    # -- what a plugin writes ---------------------------------------------------------
    @abstractmethod
    def compute_output_shape(self, input_shape: Any) -> Shape:
        """The per-sample output shape for ``input_shape``; raise ShapeError if it does
        not fit. Pure: it may read the config, never allocate or keep anything."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_output_shape()")

    def param_specs(self, input_shape: Any) -> dict[str, ParamSpec]:
        """The arrays this layer owns for ``input_shape``, by key (none by default)."""
        return {}

    @abstractmethod
    def forward(self, x: np.ndarray, *, training: bool) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    @abstractmethod
    def backward(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        raise NotImplementedError(f"{type(self).__name__} must implement backward()")

    @classmethod
    @abstractmethod
    def examples(cls) -> list[Example]:
        raise NotImplementedError(f"{cls.__name__} must list examples() for the conformance suite")

    # -- fused chains (only for the layers whose traits declare them) ------------------
    def max_pool_window(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """A ``max_selecting`` layer's ((ph, pw), (sh, sw)) when every output [..., p, q] is
        the first maximum, row-major, of the input window [..., p*sh : p*sh + ph, q*sw :
        q*sw + pw] (floor: partial windows dropped); ``None`` (the default) otherwise."""
        return None

    def fusable_max_pool(self, window: tuple[tuple[int, int], tuple[int, int]]) -> bool:
        """Whether a ``fuses_max_pool`` layer can end in the max pool of ``window``."""
        return False

    def forward_max_pool(self, x: np.ndarray, window: tuple[tuple[int, int], tuple[int, int]],
                         *, training: bool) -> np.ndarray:
        """``fuses_max_pool``: the max pool of ``window`` applied to ``forward(x)``, winners
        kept for :meth:`backward_max_pool`."""
        raise NotImplementedError(f"{type(self).__name__} declares fuses_max_pool and must "
                                  "implement forward_max_pool()")

    def backward_max_pool(self, dy: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """``fuses_max_pool``: ``backward`` of the most recent :meth:`forward_max_pool`, ``dy``
        the gradient of its pooled output."""
        raise NotImplementedError(f"{type(self).__name__} declares fuses_max_pool and must "
                                  "implement backward_max_pool()")

    # -- the template -----------------------------------------------------------------
    def build(self, input_shape: Any, rng: np.random.Generator, *, dtype: Any = np.float32
              ) -> Shape:
        """Check the shapes, create the arrays of :meth:`param_specs` in ``dtype`` (drawn
        from ``rng`` in the specs' order) and keep ``rng`` for a stochastic layer's
        draws; returns the per-sample output shape."""
        dtype = np.dtype(dtype)
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"layers compute in a floating dtype, received {dtype}")
        self.input_shape, self.output_shape = infer_output_shape(self, input_shape)
        self.dtype, self.rng, self.cache = dtype, rng, None
        self._params, self._grads, self._state = {}, {}, {}
        for key, spec in self.param_specs(self.input_shape).items():
            value = spec.create(rng, dtype)
            if spec.trainable:
                self._params[key] = value
                self._grads[key] = np.zeros_like(value)
            else:
                self._state[key] = value
        return self.output_shape

    # -- the arrays and the cache -----------------------------------------------------
    def params(self) -> dict[str, np.ndarray]:
        """The trainable arrays, live: optimizers and loaders write into them."""
        return self._params

    def grads(self) -> dict[str, np.ndarray]:
        """The gradients, live, under the keys of :meth:`params`; ``backward`` writes
        into these very arrays."""
        return self._grads

    def state(self) -> dict[str, np.ndarray]:
        """Non-trainable arrays (running statistics), live, saved with the params."""
        return self._state

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
