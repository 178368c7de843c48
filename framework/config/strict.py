"""One coercion rule for every setting: a config is a JSON document, validated strictly.

Wherever a setting comes from (a TOML or JSON file, a dict, a command-line option or
a Python argument such as ``lamina.Model(seed=...)`` or ``fit(batch_size=...)``), it
reaches its model (a plugin's ``Config``, the ``[training]`` section) through
:func:`validate_settings`, which validates it as JSON in pydantic's strict mode: a
string is never a number (``batch_size = "32"`` is refused, as ``fit(batch_size="32")``
is), a number never a bool, a float never an integer; an integer fills a float, and
an array fills a tuple (TOML and JSON have no tuples). Every plugin, built in or
third-party, gets this rule without declaring it field by field.

A value that is not JSON at all (a TOML date, a NumPy scalar in a dict) is refused
with its key, saying what to write instead.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import ConfigIssue
from .issues import pydantic_issues

M = TypeVar("M", bound=BaseModel)


def validate_settings(model: type[M], settings: dict[str, Any], label: str
                      ) -> tuple[M | None, list[ConfigIssue]]:
    """``settings`` as an instance of ``model``, or None with every issue (their paths
    under ``label``)."""
    foreign = [key for key, value in settings.items() if not _is_json(value)]
    issues = [_not_json(key, settings[key], label) for key in foreign]
    document = json.dumps({k: v for k, v in settings.items() if k not in foreign})
    try:
        config = model.model_validate_json(document, strict=True)
    except ValidationError as exc:
        # the other keys are checked too (every mistake at once); a foreign one is not
        # also reported missing
        named = {f"{label}.{key}" if label else str(key) for key in foreign}
        return None, issues + [i for i in pydantic_issues(exc, label, model)
                               if i.path not in named]
    return (None, issues) if issues else (config, [])


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True


def _not_json(key: str, value: Any, label: str) -> ConfigIssue:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else f"{shown[:80]}..."
    return ConfigIssue(f"{label}.{key}" if label else key, (
        f"a setting is a number, string, bool, array or table, received {shown} "
        f"({type(value).__module__}.{type(value).__name__}): write the plain value "
        "(a NumPy number: int(...) or float(...); a date: a string)"))
