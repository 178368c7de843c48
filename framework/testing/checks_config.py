"""Checks of a plugin's pydantic ``Config``, shared by layers, losses and optimizers.

Invalid values are found generically from the model's JSON schema, the same
document ``lamina`` shows users: for every field, a value of the wrong type (an
arbitrary object) and a number on the wrong side of each declared bound
(``minimum``, ``exclusiveMaximum``, ...) must each be rejected. A numeric field must
declare at least one bound, because otherwise nothing stops a negative size or rate
from reaching ``build``. A string field must be a closed set of choices (``Literal``,
an enum) or a ``pattern``, and a misspelt choice must be rejected: a free ``str``
would accept ``"smae"`` and the plugin would silently do something else. A setting
that really takes any text says so with :data:`lamina.FreeText`. Cross-field rules
(a model validator) cannot be found this way and are left to the plugin's own tests.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from lamina.config.strict import validate_settings

from .base import ConformanceError, check, fail

_UNKNOWN_KEY = "lamina_conformance_unknown_key"
_NOT_A_CHOICE = "lamina-conformance-not-a-choice"
_NUMERIC = ("integer", "number")


class _WrongType:
    """A value no field of a well-typed config accepts."""

    def __repr__(self) -> str:
        return "<object of an unrelated type>"


def _validate(plugin: type, config: dict[str, Any]) -> BaseModel:
    return plugin.Config(**config)


def _branches(schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of a property: its ``anyOf`` branches, or itself; refs resolved."""
    if "$ref" in schema:
        schema = {**defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), **schema}
    if "anyOf" in schema:
        return [b for branch in schema["anyOf"] for b in _branches(branch, defs)]
    return [schema]


def _bound_violations(branch: dict[str, Any]) -> list[tuple[str, Any]]:
    # One step past each bound; a step of 1 is outside for integers and floats alike.
    out = []
    if "minimum" in branch:
        out.append((f"minimum {branch['minimum']}", branch["minimum"] - 1))
    if "exclusiveMinimum" in branch:
        out.append((f"exclusiveMinimum {branch['exclusiveMinimum']}", branch["exclusiveMinimum"]))
    if "maximum" in branch:
        out.append((f"maximum {branch['maximum']}", branch["maximum"] + 1))
    if "exclusiveMaximum" in branch:
        out.append((f"exclusiveMaximum {branch['exclusiveMaximum']}", branch["exclusiveMaximum"]))
    return out


def invalid_values(config_model: type[BaseModel]) -> dict[str, list[tuple[str, Any]]]:
    """For each field (by alias): (why it is invalid, a value the model must reject)."""
    schema = config_model.model_json_schema()
    defs = schema.get("$defs", {})
    found: dict[str, list[tuple[str, Any]]] = {}
    for key, prop in schema.get("properties", {}).items():
        candidates: list[tuple[str, Any]] = [("a value of the wrong type", _WrongType())]
        branches = _branches(prop, defs)
        numeric = [b for b in branches if b.get("type") in _NUMERIC]
        # A bound of one numeric branch says nothing when another numeric branch may
        # accept the same number (int | float), so only a lone numeric branch counts.
        if len(numeric) == 1:
            candidates += _bound_violations(numeric[0])
        found[key] = candidates
    return found


def unbounded_numeric_fields(config_model: type[BaseModel]) -> list[str]:
    schema = config_model.model_json_schema()
    defs = schema.get("$defs", {})
    unbounded = []
    for key, prop in schema.get("properties", {}).items():
        for branch in _branches(prop, defs):
            if branch.get("type") in _NUMERIC and not _bound_violations(branch):
                unbounded.append(key)
                break
    return unbounded


@check
def check_config_forbids_unknown_keys(plugin: type, example: Any) -> None:
    config = {**example.config, _UNKNOWN_KEY: 1}
    try:
        _validate(plugin, config)
    except ValidationError:
        return
    fail(
        f"{plugin.__name__}.Config to reject the unknown key {_UNKNOWN_KEY!r}",
        "a config that accepted it (a typo in a user's config would be silently ignored)",
        "Subclass lamina.LayerConfig, or set model_config = ConfigDict(extra='forbid')",
    )


@check
def check_config_rejects_invalid_values(plugin: type, example: Any) -> None:
    _validate(plugin, dict(example.config))  # the example itself must be valid
    unbounded = unbounded_numeric_fields(plugin.Config)
    if unbounded:
        fail(
            "every numeric config field to declare a bound (Field(ge=..., le=...))",
            f"no bound on {', '.join(unbounded)}",
            "Add the bounds that make sense (a size >= 1, a rate in [0, 1))",
        )
    accepted = []
    for key, candidates in invalid_values(plugin.Config).items():
        for why, value in candidates:
            try:
                _validate(plugin, {**example.config, key: value})
            except ValidationError:
                continue
            accepted.append(f"{key}={value!r} ({why})")
    if accepted:
        fail(
            "the config to reject values outside its declared types and bounds",
            f"it accepted {'; '.join(accepted)}",
            "Enforce the bounds with Field(ge=..., lt=...) rather than only documenting them, "
            "and type every field",
        )


def _misspelt(choice: str) -> str:
    """A near miss of ``choice``: its last two characters swapped, or a letter added."""
    return choice[:-2] + choice[-1] + choice[-2] if len(choice) >= 2 and \
        choice[-1] != choice[-2] else choice + "x"


def string_fields(config_model: type[BaseModel]) -> dict[str, list[dict[str, Any]]]:
    """For each field (by alias), the string branches of its schema."""
    schema = config_model.model_json_schema()
    defs = schema.get("$defs", {})
    found = {}
    for key, prop in schema.get("properties", {}).items():
        strings = [b for b in _branches(prop, defs)
                   if b.get("type") == "string" or isinstance(b.get("const"), str)
                   or any(isinstance(v, str) for v in b.get("enum", []))]
        if strings:
            found[key] = strings
    return found


@check
def check_config_strings_constrained(plugin: type, example: Any) -> None:
    _validate(plugin, dict(example.config))  # the example itself must be valid
    free, accepted = [], []
    for key, branches in string_fields(plugin.Config).items():
        choices = [v for b in branches for v in [*b.get("enum", []), b.get("const")]
                   if isinstance(v, str)]
        if any(b.get("free_form") for b in branches):
            continue  # declared free text (lamina.FreeText)
        open_ended = [b for b in branches if b.get("type") == "string" and "enum" not in b
                      and "const" not in b and "pattern" not in b]
        if open_ended:
            free.append(key)
            continue
        candidates = [_misspelt(choice) for choice in choices] + [_NOT_A_CHOICE]
        for value in dict.fromkeys(c for c in candidates if c not in choices):
            try:
                _validate(plugin, {**example.config, key: value})
            except ValidationError:
                continue
            accepted.append(f"{key}={value!r}")
    if free:
        fail("every string setting to be a closed set of choices (Literal[...]) or a pattern, "
             "or to be declared free text",
             f"a plain str on {', '.join(free)}, which accepts any misspelling",
             f"Type {free[0]} as Literal['choice_1', 'choice_2', ...] (or give it "
             "Field(pattern=...)); a setting that takes any text (a label, a path) is typed "
             "lamina.FreeText")
    if accepted:
        fail("every string setting to reject a misspelt choice",
             f"it accepted {'; '.join(accepted)}",
             "Validate the choices (Literal[...]), never fall back to a default on an "
             "unknown string")


@check
def check_config_json_roundtrip(plugin: type, example: Any) -> None:
    """The example's settings, and the config's own JSON, validate as a config file's do
    (lamina.config.strict: JSON, strictly), and come back equal."""
    config = _validate(plugin, dict(example.config))
    as_written, issues = validate_settings(plugin.Config, dict(example.config), "")
    if as_written is None:
        fail("the example's settings to validate as a config file's settings do (JSON, "
             "strictly: no string for a number, no number for a bool)",
             "; ".join(str(issue) for issue in issues),
             "Give the field the type its settings have in a config file, or write the "
             "example as a config file would")
    text = config.model_dump_json()
    again, issues = validate_settings(plugin.Config, json.loads(text), "")
    if again is None:
        raise ConformanceError(
            f"expected the config's own JSON {text} to validate again as a config file's "
            f"settings; received {'; '.join(str(issue) for issue in issues)}")
    if again != config:
        fail(f"{config!r} back from its JSON {text}", repr(again),
             "Make every field's type serialise to JSON and back (tuples, enums, numbers)")
    instance = plugin(example.config)
    if instance.config != config:
        fail(f"{plugin.__name__}(config).config == {config!r}", repr(instance.config))
