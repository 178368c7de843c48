"""Configs written as TOML, as a person writes them: what :func:`dumps` writes,
``tomllib`` reads back to an equal document.

Python reads TOML (``tomllib``) but does not write it, and a config is a small subset:
tables of scalars, arrays of scalars, arrays of tables (``[[model.layers]]``) and the odd
nested table. This writer covers JSON-like documents (dicts with str keys, lists,
str, int, float, bool) and nothing else; a value TOML cannot hold (``None``, a tuple of
mixed tables and values) is a ValueError naming its path.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(document: dict[str, Any]) -> str:
    """``document`` as TOML text."""
    lines: list[str] = []
    _table(document, [], lines)
    return "\n".join(lines).strip() + "\n"


def _table(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    simple = {k: v for k, v in table.items() if not _is_table(v) and not _is_tables(v)}
    for key, value in simple.items():
        lines.append(f"{_key(key)} = {_value(value, [*path, key])}")
    for key, value in table.items():
        if _is_table(value):
            if lines:
                lines.append("")
            lines.append(f"[{_dotted([*path, key])}]")
            _table(value, [*path, key], lines)
        elif _is_tables(value):
            for item in value:
                lines.append("")
                lines.append(f"[[{_dotted([*path, key])}]]")
                _table(item, [*path, key], lines)


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _dotted(path: list[str]) -> str:
    return ".".join(_key(part) for part in path)


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise ValueError(f"a TOML key is a string, received {key!r}")
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any, path: list[str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if any("\ud800" <= c <= "\udfff" for c in value):
            raise ValueError(f"{'.'.join(path)}: a string holds a lone surrogate, which "
                             "TOML cannot hold")
        # JSON's escapes are TOML's, but for DEL, which TOML wants escaped and JSON not
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v, [*path, str(i)]) for i, v in enumerate(value)) + "]"
    if isinstance(value, dict):  # a table inside an array: inline
        return "{ " + ", ".join(f"{_key(k)} = {_value(v, [*path, k])}"
                                for k, v in value.items()) + " }"
    raise ValueError(f"{'.'.join(path)}: TOML cannot hold {value!r} "
                     f"({type(value).__name__}); use a number, string, bool, list or table")
