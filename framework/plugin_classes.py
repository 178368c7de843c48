"""What a plugin class must be to be registered: checked once, when its plugin loads.

:func:`validate_class` holds every class a ``lamina_register_*`` hook returns to the
contract of its kind (a name, a ``Config`` that forbids unknown keys, the protocol's
methods), and :func:`validate_declarations` its declarations to where lamina reads them
(``traits``; an optimizer's ``inert_settings``). A class that fails is a
:class:`~lamina.errors.PluginError` naming it and the fix; the registry decides whether
that skips its plugin or stops the command (:mod:`lamina.registry`).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from pydantic import BaseModel

from .errors import PluginError

REQUIRED_METHODS = {
    "layer": ("compute_output_shape", "param_specs", "build", "forward", "backward", "params",
              "grads", "state", "examples"),
    "loss": ("forward", "backward", "predict_proba", "examples"),
    "optimizer": ("step", "state_dict", "load_state_dict", "examples"),
    "block": ("layers", "examples"),
}
#: keys of a layer table that the graph runner reads itself, never the layer's Config
RESERVED_LAYER_KEYS = ("type", "name", "inputs")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def validate_class(kind: str, cls: Any) -> None:
    """Raise PluginError unless ``cls`` is a well-formed ``kind`` plugin class."""
    if not isinstance(cls, type):
        raise PluginError(f"expected a {kind} class, received {cls!r}")
    who = f"{kind} class {cls.__module__}.{cls.__qualname__}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginError(
            f"{who} has name {name!r}; set a class attribute `name` that is lowercase "
            "letters, digits and underscores, starting with a letter (e.g. 'leaky_relu')"
        )
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and issubclass(config, BaseModel)):
        raise PluginError(f"{who} ({name!r}) needs a pydantic model `Config`, received {config!r}")
    if config.model_config.get("extra") != "forbid":
        raise PluginError(
            f"{who} ({name!r}): its Config must forbid unknown keys so that typos are "
            "reported; set model_config = ConfigDict(extra='forbid') "
            "(or subclass lamina.LayerConfig)"
        )
    if kind in ("layer", "block"):
        clash = [k for k in RESERVED_LAYER_KEYS if k in config.model_fields]
        if clash:
            raise PluginError(
                f"{who} ({name!r}): its Config may not define {clash[0]!r}, which the graph "
                "runner reserves for itself; rename the field"
            )
    abstract = getattr(cls, "__abstractmethods__", frozenset())  # base-class placeholders
    missing = [m for m in REQUIRED_METHODS[kind]
               if not callable(getattr(cls, m, None)) or m in abstract]
    if missing:
        raise PluginError(f"{who} ({name!r}) lacks the method(s) {', '.join(missing)}")
    validate_declarations(kind, cls, f"{who} ({name!r})")


def validate_declarations(kind: str, cls: Any, who: str) -> None:
    """The optional declarations are read from ``traits`` only: a flag set anywhere else
    (``stochastic = True`` on the class, as older plugins did) would be silently ignored,
    so it is an error that says where it goes."""
    from .layer import TRAIT_NAMES, LayerTraits
    from .loss import LossTraits

    if kind == "optimizer":
        inert = getattr(cls, "inert_settings", {})
        fields = getattr(getattr(cls, "Config", None), "model_fields", {})
        if not isinstance(inert, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v.strip()
                for k, v in inert.items()):
            raise PluginError(f"{who}: inert_settings must map a setting's name to the reason "
                              f"it changes nothing on the suite's problem, received {inert!r}")
        unknown = sorted(set(inert) - set(fields))
        if unknown:
            raise PluginError(f"{who}: inert_settings names {', '.join(unknown)}, which its "
                              f"Config does not have (settings: {', '.join(fields)})")
        return
    expected = {"layer": LayerTraits, "loss": LossTraits}.get(kind)
    if expected is None:
        return
    traits = getattr(cls, "traits", None)
    if not isinstance(traits, expected):
        raise PluginError(f"{who}: `traits` must be a lamina.{expected.__name__}, received "
                          f"{traits!r}; subclass lamina.{kind.capitalize()}, which provides it")
    names = TRAIT_NAMES if kind == "layer" else ("softmax_cross_entropy",)
    stray = [flag for flag in names if hasattr(cls, flag)]
    if stray:
        raise PluginError(
            f"{who} sets {', '.join(stray)} as a class attribute, where lamina does not read "
            f"it; declare it as traits = {expected.__name__}("
            + ", ".join(f"{flag}={getattr(cls, flag)!r}" for flag in stray) + ")"
        )
    if kind == "layer" and traits.fuses_max_pool:
        from .layer import Layer

        missing = [name for name in ("fusable_max_pool", "forward_max_pool",
                                     "backward_max_pool")
                   if getattr(cls, name, None) in (None, getattr(Layer, name))]
        if missing:
            raise PluginError(f"{who} declares fuses_max_pool but does not implement "
                              f"{', '.join(missing)}; implement them (docs/writing-a-plugin.md, "
                              "\"Fused chains\") or leave fuses_max_pool False")
    if kind == "layer":
        try:
            parameters = inspect.signature(cls.backward).parameters
        except (TypeError, ValueError):  # a builtin or C callable: nothing to inspect
            return
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        if "input_grad" not in parameters and not takes_any:
            raise PluginError(
                f"{who}: backward() takes no `input_grad` keyword; the runner calls "
                "backward(dy, input_grad=...) and input_grad=False means dx is not needed. "
                "Write `def backward(self, dy, *, input_grad=True)`"
            )
