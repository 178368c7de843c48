"""Pydantic's validation errors as config issues: a dotted path, what was received, and a
did-you-mean for a misspelt key."""

from __future__ import annotations

import difflib
import types
import typing

from pydantic import BaseModel, ValidationError

from ..errors import ConfigIssue


def pydantic_issues(
    exc: ValidationError, prefix: str, model: type[BaseModel] | None = None
) -> list[ConfigIssue]:
    """Turn pydantic's errors into issues with dotted paths and what was received."""
    issues: list[ConfigIssue] = []
    for err in exc.errors(include_url=False):
        path = prefix
        for part in _without_union_tags(err["loc"], model):
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(err["loc"][-1])
            known = list(model.model_fields) if model is not None else []
            close = [k for k in known if similar(k, key)]
            hint = f"did you mean {close[0]!r}? " if close else ""
            allowed = f"known keys: {', '.join(known)}" if known else "remove it"
            message = f"unknown key {key!r}; {hint}{allowed}"
        elif kind == "missing":
            message = "required key is missing"
        elif kind == "value_error" and "received" in err["msg"]:
            message = err["msg"].removeprefix("Value error, ")  # the plugin's own words
        else:
            message = f"{err['msg']} (received {_shown(err['input'])})"
        same = next((i for i, issue in enumerate(issues) if issue.path == path), None)
        if same is not None and kind != "extra_forbidden":  # one union, several forms
            issues[same] = ConfigIssue(path, f"{issues[same].message}; or, as another form "
                                             f"it takes: {message}")
        else:
            issues.append(ConfigIssue(path, message))
    return issues


def _without_union_tags(loc: tuple, model: type[BaseModel] | None) -> tuple:
    """``loc`` without the name pydantic gives the member of a union a value was tried
    against (``kernel_size.constrained-int``): the user wrote ``kernel_size``."""
    if model is None or len(loc) < 2 or not isinstance(loc[1], str):
        return loc
    field = model.model_fields.get(loc[0]) if isinstance(loc[0], str) else None
    if field is None or typing.get_origin(field.annotation) not in (typing.Union,
                                                                    types.UnionType):
        return loc
    return (loc[0], *loc[2:])


def _shown(value: object, limit: int = 80) -> str:
    """A received value for a message, cut to ``limit`` characters (a config value may be
    a huge table or string)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def similar(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.6
