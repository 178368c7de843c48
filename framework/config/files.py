"""Reading config files: TOML or JSON, a path or the name of a shipped config.

A config file is untrusted input, so reading it is bounded before anything is
parsed: it must be a regular file (a FIFO would block and ``/dev/zero`` never
ends), at most :data:`MAX_CONFIG_BYTES`, UTF-8; the parsed document may nest at
most :data:`MAX_DEPTH` levels and hold no integer longer than Python converts
(4,300 digits). Each of these is a :class:`ConfigError` saying which file and why.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ConfigError, ConfigIssue

SHIPPED_CONFIGS = "configs"
#: the largest config file read; the shipped ones are under 2 KiB
MAX_CONFIG_BYTES = 1 << 20
#: the deepest nesting of tables and arrays accepted; a config needs 4
MAX_DEPTH = 32


def shipped_configs() -> list[str]:
    """Names of the configs that ship inside the package (``mnist_cnn``, ...)."""
    folder = resources.files("lamina") / SHIPPED_CONFIGS
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir()
                  if p.name.endswith((".toml", ".json")))


def _error(message: str, where: str | None = None) -> ConfigError:
    return ConfigError([ConfigIssue("", message)], source=where)


def read_config(source: str | Path) -> tuple[dict[str, Any], str]:
    """Parse a config file, or a shipped config by name; returns (raw dict, where from)."""
    path = Path(source)
    if isinstance(source, str) and "/" not in source and not _exists(path):
        folder = resources.files("lamina") / SHIPPED_CONFIGS
        for suffix in (".toml", ".json"):
            candidate = folder / f"{source}{suffix}"
            if _exists(candidate):  # a name too long to be a file is not a shipped config
                return _parse(candidate.read_text(encoding="utf-8"), suffix, source)
    text = read_text(path, "config", MAX_CONFIG_BYTES, hint=(
        f"give a path to a .toml or .json file, or one of: {', '.join(shipped_configs())}"))
    return _parse(text, path.suffix.lower(), str(path))


def _exists(path: Any) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        return False


class NotARegularFile(ValueError):
    """A path that names a directory, device, pipe or socket, or an oversized file."""


def open_regular_file(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (the caller closes it).

    Opened without blocking and checked before anything is read: opening a FIFO would
    wait for a writer, and a device such as /dev/zero never ends. Raises ``OSError``
    (missing, unreadable, a name too long) or :class:`NotARegularFile`."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotARegularFile("is a directory" if stat.S_ISDIR(mode) else
                              "is not a regular file (a device, pipe or socket)")
    return os.fdopen(fd, "rb")


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes; raises
    as :func:`open_regular_file` does, or NotARegularFile when it is larger."""
    with open_regular_file(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise NotARegularFile(f"is {size:,} bytes, over the {limit:,} allowed")
        # read(n) reserves n bytes before it reads: ask for the size the file has (one
        # byte more, to notice growth), never for the bound, or a 2 KiB file needs 8 GiB
        # of address space.
        data = handle.read(size + 1)
    if len(data) > size:
        raise NotARegularFile("grew while it was read (another program is writing it); "
                              "try again when it is finished")
    return data


def shown(path: Path | str) -> str:
    """A path for a message, printable whatever bytes its name holds."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode()


def read_text(path: Path, what: str, limit: int, *, hint: str = "") -> str:
    """The UTF-8 text of ``path``, read only if it is a regular file of at most ``limit``
    bytes; every other case is a :class:`ConfigError` naming the file and the fix."""
    name = shown(path)
    try:
        data = read_regular_file(path, limit)
    except FileNotFoundError:
        raise _error(f"no {what} file {name!r}" + (f"; {hint}" if hint else "")) from None
    except NotARegularFile as exc:
        raise _error(f"{name} {exc}; lamina reads a {what} from a regular .toml or .json "
                     "file") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _error(f"cannot read {what} file {name!r}: {reason}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(f"{name} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it "
                     "as UTF-8") from exc


def _parse(text: str, suffix: str, where: str) -> tuple[dict[str, Any], str]:
    try:
        if suffix == ".json":
            raw = json.loads(text)
        elif suffix == ".toml":
            raw = tomllib.loads(text)
        else:
            raise ConfigError([ConfigIssue("", (
                f"unsupported config format {suffix or '(no suffix)'!r}; use .toml or .json"
            ))], source=where)
    except json.JSONDecodeError as exc:
        raise ConfigError([ConfigIssue(f"line {exc.lineno}, column {exc.colno}",
                                       f"invalid JSON: {exc.msg}")], source=where) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigIssue("", f"invalid TOML: {exc}")], source=where) from exc
    except RecursionError:
        raise _error(f"the document nests too deeply to read; a config nests at most "
                     f"{MAX_DEPTH} levels", where) from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise _error(f"a value cannot be read: {exc}", where) from None
    if not isinstance(raw, dict):
        raise ConfigError([ConfigIssue("", "the top level must be a table/object")], source=where)
    check_depth(raw, where)
    return raw, where


def check_depth(document: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """Refuse a document nesting deeper than ``limit`` levels (iteratively: no recursion)."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            raise _error(f"the document nests more than {limit} levels of tables or arrays; a "
                         "config needs a few", where)
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
