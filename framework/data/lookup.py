"""Find a dataset's files on disk, or download them with checksum verification.

Lookup order for every file (first hit wins; see docs/data.md)::

    1. <data_dir>/<name>/           the data_dir argument (--data-dir)
    2. $LAMINA_DATA/<name>/          if the environment variable is set
    3. ~/.cache/lamina/<name>/       home directory resolved at call time
    4. /usr/share/datasets/<name>/   Debian's shared datasets

In each directory the canonical ``.gz`` name is tried first, then the same name
without ``.gz`` (an unpacked copy); only regular files count. What a file holds is
checked when it is read, by the checksum of its decompressed content
(:mod:`lamina.data.datasets`), so a recompressed or unpacked copy of the right
content is as good as the canonical file.

Missing files are downloaded into the first of ``<data_dir>/<name>``,
``$LAMINA_DATA/<name>`` and ``~/.cache/lamina/<name>``: to a hidden temp file in
that directory, fsynced, checked against the published MD5 of the file and only
then renamed into place, so the canonical name never holds a partial or wrong file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..errors import DataError
from .specs import ROLES, DatasetSpec, get_spec

ENV_VAR = "LAMINA_DATA"
SYSTEM_ROOT = Path("/usr/share/datasets")
TIMEOUT_SECONDS = 60.0
_CHUNK = 1 << 16


class Place(NamedTuple):
    """A directory that may hold a dataset's files, and why it is searched."""

    directory: Path
    origin: str


def search_dirs(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Place]:
    """The directories searched for dataset ``name``, in lookup order."""
    places = []
    if data_dir is not None:
        places.append(Place(Path(data_dir).expanduser() / name, "data_dir (--data-dir)"))
    env = os.environ.get(ENV_VAR)
    if env:
        places.append(Place(Path(env).expanduser() / name, f"${ENV_VAR}"))
    places.append(Place(Path.home() / ".cache" / "lamina" / name, "user cache"))
    places.append(Place(SYSTEM_ROOT / name, "system datasets"))
    return places


def download_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where missing files of dataset ``name`` are downloaded to."""
    return search_dirs(name, data_dir)[0].directory


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def fetch(
    dataset: str | DatasetSpec,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    report: Callable[[str], None] | None = None,
    roles: tuple[str, ...] = ROLES,
) -> dict[str, Path]:
    """Return the path of each of the dataset's files by role (those in ``roles``),
    downloading missing ones.

    ``report``, if given, is called with a one-line message before each download (the
    CLI passes a printer). Raises :class:`DataError` when a file can be neither found
    nor downloaded, or a download does not match its published checksum.
    """
    spec = get_spec(dataset)
    places = search_dirs(spec.name, data_dir)
    found = {role: _locate(spec.files[role], places) for role in roles}
    missing = [role for role in roles if found[role] is None]
    if missing and not download:
        raise DataError(_not_found_message(spec, missing, places, {}, download=False))
    for i, role in enumerate(missing):
        filename = spec.files[role]
        path, failures = _download(spec, filename, places[0].directory, report)
        if path is None:
            still_missing = missing[i:]
            raise DataError(
                _not_found_message(spec, still_missing, places, {filename: failures}, download=True)
            )
        found[role] = path
    return {role: path for role, path in found.items() if path is not None}


def _candidates(filename: str) -> tuple[str, ...]:
    unpacked = filename.removesuffix(".gz")
    return (filename, unpacked) if unpacked != filename else (filename,)


def _locate(filename: str, places: list[Place]) -> Path | None:
    for place in places:
        for candidate in _candidates(filename):
            path = place.directory / candidate
            if path.is_file():
                return path
    return None


def remedy(path: Path, name: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """What to do about a bad dataset file at ``path``: replace it where the user may,
    and for the system's copy, put an intact one where lamina looks first."""
    places = search_dirs(name, data_dir)
    system = next((p for p in places if p.origin == "system datasets"), None)
    if system is not None and system.directory in Path(path).parents:
        first = places[0].directory
        return (f"this is the system's copy, which lamina reads last: put an intact copy in "
                f"{first} (searched first), or pass --data-dir with a folder holding one")
    return "delete it so lamina downloads it again, or copy an intact file over it"


def verify_md5(path: Path, expected: str) -> None:
    """Raise :class:`DataError` unless the file at ``path`` has MD5 ``expected``."""
    try:
        received = md5_of(path.read_bytes())
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if received != expected:
        raise DataError(
            f"{path}: MD5 checksum mismatch: expected {expected}, received {received}. "
            f"The file is corrupt, truncated or not the canonical one: delete it so lamina "
            f"downloads it again, or replace it with an intact copy."
        )


def _download(
    spec: DatasetSpec, filename: str, directory: Path, report: Callable[[str], None] | None
) -> tuple[Path | None, list[str]]:
    """Try each mirror in turn; return the verified file or the reason each failed."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return None, [f"cannot create the download directory {directory}: {exc.strerror or exc}"]
    failures = []
    for mirror in spec.mirrors:
        url = f"{mirror.rstrip('/')}/{filename}"
        if report is not None:
            report(f"downloading {url} -> {directory / filename}")
        try:
            return _download_one(url, directory / filename, spec.md5[filename]), failures
        except _DownloadFailed as exc:
            failures.append(f"{url}: {exc}")
    return None, failures


class _DownloadFailed(Exception):
    pass


def _download_one(url: str, dest: Path, expected_md5: str) -> Path:
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        request = urllib.request.Request(url, headers={"User-Agent": "lamina"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(
            request, timeout=TIMEOUT_SECONDS
        ) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        received = digest.hexdigest()
        if received != expected_md5:
            raise _DownloadFailed(
                f"MD5 checksum mismatch: expected {expected_md5}, received {received}"
            )
        os.replace(tmp, dest)
    except urllib.error.HTTPError as exc:
        raise _DownloadFailed(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _DownloadFailed(str(exc.reason)) from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise _DownloadFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        # On success tmp was renamed away; on any failure (Ctrl-C included) it goes.
        tmp.unlink(missing_ok=True)
    _fsync_dir(dest.parent)
    return dest


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _not_found_message(
    spec: DatasetSpec,
    missing_roles: list[str],
    places: list[Place],
    failures: dict[str, list[str]],
    *,
    download: bool,
) -> str:
    missing = [spec.files[role] for role in missing_roles]
    lines = [
        f"dataset {spec.name!r}: cannot find {', '.join(missing)}.",
        "Looked in (for each name with and without .gz):",
    ]
    for place in places:
        state = "" if place.directory.is_dir() else " (does not exist)"
        lines.append(f"  {place.directory}{state}  [{place.origin}]")
    lines.extend(_misplaced_hints(spec, places))
    if not download:
        lines.append("Downloading is turned off.")
    for filename, reasons in failures.items():
        lines.append(f"Could not download {filename}:")
        lines.extend(f"  {reason}" for reason in reasons)
    names = " ".join(spec.files[role] for role in ROLES)
    lines.append(
        f"To fix: copy the four files ({names}) into {places[0].directory}, or put them in "
        f"<DIR>/{spec.name}/ and pass --data-dir <DIR> or set {ENV_VAR}=<DIR>"
        + ("; or run again with a working internet connection." if download else ".")
    )
    return "\n".join(lines)


def _misplaced_hints(spec: DatasetSpec, places: list[Place]) -> list[str]:
    """Catch the common slip of pointing --data-dir at the dataset folder itself."""
    hints = []
    for place in places:
        root = place.directory.parent
        if any((root / f).is_file() for f in spec.files.values()):
            hints.append(
                f"Note: {root} holds the files directly, but datasets live one level down: "
                f"move them into {place.directory}, or pass the parent directory instead."
            )
    return hints
