"""Pydantic's validation errors as config issues: a dotted path, what was received, and a
did-you-mean for a misspelt key."""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ValidationError

from ..errors import ConfigIssue


def pydantic_issues(
    exc: ValidationError, prefix: str, model: type[BaseModel] | None = None
) -> list[ConfigIssue]:
    """Turn pydantic's errors into issues with dotted paths and what was received."""
    issues = []
    for err in exc.errors(include_url=False):
        path = prefix
        for part in err["loc"]:
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
        issues.append(ConfigIssue(path, message))
    return issues


def _shown(value: object, limit: int = 80) -> str:
    """A received value for a message, cut to ``limit`` characters (a config value may be
    a huge table or string)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def similar(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.6
