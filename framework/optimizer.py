"""The optimizer contract: what an optimizer plugin writes, what it declares, what lamina
relies on.

An optimizer plugin subclasses :class:`Optimizer` and writes ``name``, ``Config``
(frozen, unknown keys forbidden, with at least ``lr``) and

- ``update(params, grads)``: one step. Updates every array of ``params`` in place
  from the array of ``grads`` under the same dotted name (``conv2d_1.W``), reading
  the learning rate from ``self.lr`` (a schedule sets it between steps) and its
  per-parameter state from :meth:`Optimizer.slot`;
- ``state_slots()``, when it keeps per-parameter state: the names of those arrays
  for its configuration (Adam: ``("m", "v")``; SGD: ``("momentum",)`` only with
  momentum). ``state_counters`` names scalar counters it keeps besides the step
  count ``self.steps``, which lamina keeps for every optimizer;
- ``examples()``: configs the conformance suite exercises.

:meth:`Optimizer.step` is the template callers use: it checks that ``params`` and
``grads`` match and that loaded state covers exactly these parameters, so a
mismatch is an error before anything changes, then calls ``update`` and counts
the step. :meth:`Optimizer.state_dict` and :meth:`Optimizer.load_state_dict`
save and restore everything (slots, counters, ``lr``) as arrays, so a checkpoint
stores it in an ``.npz`` file and a resumed run continues bit for bit; a state
with a missing or foreign entry is rejected as a whole.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .errors import PluginError, StateError
from .layer import make_config

#: the counter every optimizer keeps: steps taken
STEPS = "steps"


class OptimizerConfig(BaseModel):
    """Base of optimizer configs: a positive learning rate, unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="learning rate")


@dataclass(frozen=True)
class OptimizerReference:
    """Values worked out by hand for an optimizer: starting from ``params`` (arrays by
    dotted name, as a network passes them), one ``step`` per entry of ``grads`` (each a
    dict of gradients by the same names) must end at ``expected``, within ``tolerance``
    (``check_optimizer_reference_values``): the formula a plugin documents, which a
    self-consistent implementation of another formula would pass every other check of."""

    params: dict[str, Any]
    grads: list[dict[str, Any]]
    expected: dict[str, Any]
    tolerance: float = 1e-9


@dataclass(frozen=True)
class OptimizerExample:
    """One configuration the conformance suite runs an optimizer with; ``reference``
    holds values worked out by hand for it (:class:`OptimizerReference`)."""

    config: dict[str, Any]
    id: str = ""
    reference: OptimizerReference | None = None


class Optimizer(ABC):
    """The base class of every optimizer plugin; see the module docstring."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = OptimizerConfig
    #: scalar counters kept besides ``steps`` and saved with the state; each starts at 0
    state_counters: ClassVar[tuple[str, ...]] = ()
    #: settings that change nothing on the conformance suite's problem although they
    #: matter elsewhere, each with the reason: ``{"setting": "why"}``
    #: (``check_optimizer_settings_matter`` reports any other that changes nothing)
    inert_settings: ClassVar[dict[str, str]] = {}

    def __init__(self, config: BaseModel | dict[str, Any] | None = None, /, **kwargs: Any):
        self.config = make_config(self.Config, config, kwargs)
        self.lr = float(self.config.lr)
        self.slots: dict[str, dict[str, np.ndarray]] = {s: {} for s in self.state_slots()}
        self.counters: dict[str, int] = {c: 0 for c in (STEPS, *self.state_counters)}
        self._scratch: dict[str, np.ndarray] = {}

    # -- what a plugin writes ---------------------------------------------------------
    def state_slots(self) -> tuple[str, ...]:
        """Names of the per-parameter arrays this configuration keeps (none by default)."""
        return ()

    @abstractmethod
    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement update()")

    @classmethod
    @abstractmethod
    def examples(cls) -> list[OptimizerExample]:
        raise NotImplementedError(f"{cls.__name__} must list examples() for the conformance suite")

    # -- the template -----------------------------------------------------------------
    @property
    def steps(self) -> int:
        """Steps taken so far (restored with the state)."""
        return self.counters[STEPS]

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Update ``params`` in place from ``grads`` (both by dotted name)."""
        self.check_state(params, grads)
        self.update(params, grads)
        self.counters[STEPS] += 1

    def check_state(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Raise StateError unless ``params`` and ``grads`` match and the state (fresh, or
        loaded) covers exactly these parameters with arrays of their shapes and dtypes."""
        who = f"optimizer {self.name!r}"
        if params.keys() != grads.keys():
            raise StateError(f"{who}: params and grads have different keys: only in params "
                             f"{sorted(params.keys() - grads.keys())}, only in grads "
                             f"{sorted(grads.keys() - params.keys())}")
        for key, p in params.items():
            g = grads[key]
            if g.shape != p.shape or g.dtype != p.dtype:
                raise StateError(f"{who}: the gradient of {key!r} has shape {g.shape} and dtype "
                                 f"{g.dtype}, its parameter {p.shape} and {p.dtype}; they must "
                                 "match")
        if not any(self.slots.values()):
            return  # fresh: the slots are created on first use
        for slot, arrays in self.slots.items():
            if arrays.keys() != params.keys():
                raise StateError(
                    f"{who}: the state after {self.steps} steps has slot {slot!r} for other "
                    f"parameters than these: missing {sorted(params.keys() - arrays.keys())}, "
                    f"unexpected {sorted(arrays.keys() - params.keys())}. Load optimizer state "
                    "saved with the same network"
                )
            for key, p in params.items():
                if arrays[key].shape != p.shape or arrays[key].dtype != p.dtype:
                    raise StateError(
                        f"{who}: slot {slot!r} of {key!r} has shape {arrays[key].shape} and "
                        f"dtype {arrays[key].dtype}, the parameter {p.shape} and {p.dtype}: a "
                        "state saved with another network, or a slot made outside self.slot() "
                        "(which makes zeros like the parameter)"
                    )

    # -- helpers for update() ---------------------------------------------------------
    def slot(self, slot: str, key: str, like: np.ndarray) -> np.ndarray:
        """The state array ``slot`` of parameter ``key``, zeros like ``like`` on first use."""
        if slot not in self.slots:
            raise PluginError(f"optimizer {self.name!r} uses the slot {slot!r} but does not "
                              f"declare it; return it from state_slots() (now "
                              f"{tuple(self.slots)})")
        arrays = self.slots[slot]
        if key not in arrays:
            arrays[key] = np.zeros_like(like)
        return arrays[key]

    def scratch(self, key: str, like: np.ndarray) -> np.ndarray:
        """A work array like ``like`` for ``key``, reused across steps (never saved)."""
        s = self._scratch.get(key)
        if s is None or s.shape != like.shape or s.dtype != like.dtype:
            s = self._scratch[key] = np.empty_like(like)
        return s

    # -- state ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every state array (``slot/param``), the counters (``#name``) and the
        learning rate (``#lr``), so later steps cannot change a saved state."""
        state = {f"{slot}/{key}": arr.copy() for slot, arrays in self.slots.items()
                 for key, arr in arrays.items()}
        state.update({f"#{name}": np.asarray(value) for name, value in self.counters.items()})
        state["#lr"] = np.asarray(self.lr)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict`. Every entry must be one this configuration keeps,
        and none may be missing; otherwise :class:`StateError` and nothing changes."""
        who = f"optimizer {self.name!r}"
        expected_counters = {f"#{name}" for name in self.counters} | {"#lr"}
        slots: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in self.slots}
        problems = [f"missing {name!r}" for name in sorted(expected_counters - state.keys())]
        for name, value in state.items():
            slot, _, key = name.partition("/")
            if name in expected_counters:
                continue
            if key and slot in slots:
                array = np.asarray(value)
                if not np.issubdtype(array.dtype, np.floating):
                    problems.append(f"{name!r} has dtype {array.dtype}, expected floats")
                slots[slot][key] = np.array(array)
            else:
                problems.append(f"unexpected {name!r}")
        counters, lr = {}, self.lr
        for name in sorted(expected_counters & state.keys()):
            value = np.asarray(state[name])
            number = float(value) if value.shape == () and value.dtype.kind in "iuf" else math.nan
            if name == "#lr":
                if not (math.isfinite(number) and number > 0):
                    problems.append(f"'#lr' is {value!r}, expected a positive number")
                lr = number
            elif not (math.isfinite(number) and number >= 0 and number == int(number)):
                problems.append(f"{name!r} is {value!r}, expected a whole number >= 0")
            else:
                counters[name[1:]] = int(number)
        keys = {slot: set(arrays) for slot, arrays in slots.items()}
        if len({frozenset(k) for k in keys.values()}) > 1:
            problems.append("the slots cover different parameters: " + "; ".join(
                f"{slot} {sorted(k)}" for slot, k in keys.items()))
        if not problems and counters.get(STEPS, 0) > 0 and any(not k for k in keys.values()):
            empty = [slot for slot, k in keys.items() if not k]
            problems.append(f"no {', '.join(map(repr, empty))} arrays after "
                            f"{counters[STEPS]} steps")
        if problems:
            raise StateError(
                f"{who}: the state does not fit this optimizer ({'; '.join(problems)}); it "
                f"keeps {', '.join(map(repr, sorted(self.slots))) or 'no slots'} per "
                f"parameter and the counters {', '.join(sorted(expected_counters))}. Load "
                f"state saved by the {self.name!r} optimizer with the same settings"
            )
        self.slots, self.counters, self.lr = slots, counters, lr
