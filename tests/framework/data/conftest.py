"""Synthetic IDX files and a sandboxed environment for the data tests.

IDX bytes are assembled here with ``struct`` rather than by any lamina code, so a
bug in the reader cannot hide behind the same bug in a writer.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lamina.data import lookup
from lamina.data.specs import DatasetSpec

BIG_ENDIAN = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=BIG_ENDIAN[type_code]).tobytes()


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# Helpers are handed out as fixtures: importing from a conftest module breaks as soon
# as another test folder has a conftest.py of its own.
@pytest.fixture
def idx_bytes():
    """``idx_bytes(array, type_code=0x08)``: the bytes of a raw IDX file."""
    return _idx_bytes


@pytest.fixture
def gz():
    """``gz(data)``: gzip-compress deterministically (mtime 0)."""
    return _gz


@pytest.fixture
def md5():
    """``md5(data)``: hex MD5 digest."""
    return _md5


@dataclass
class Toy:
    """A tiny four-file dataset named ``toy`` published at ``source`` (a file:// mirror)."""

    spec: DatasetSpec
    source: Path
    blobs: dict[str, bytes]  # file name -> the exact .gz bytes
    arrays: dict[str, np.ndarray]  # role -> uint8 array

    def install(self, directory: Path, names: list[str] | None = None) -> Path:
        """Copy (some of) the files into ``directory`` (created) and return it."""
        directory.mkdir(parents=True, exist_ok=True)
        for name in names if names is not None else list(self.blobs):
            (directory / name).write_bytes(self.blobs[name])
        return directory


@pytest.fixture
def toy(tmp_path: Path) -> Toy:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 3, size=20, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 3, size=6, dtype=np.uint8),
    }
    arrays["train_images"][0, 0, 0], arrays["train_images"][0, 0, 1] = 0, 255
    blobs = {FILES[role]: _gz(_idx_bytes(array)) for role, array in arrays.items()}
    source = tmp_path / "mirror"
    source.mkdir()
    for name, blob in blobs.items():
        (source / name).write_bytes(blob)
    spec = DatasetSpec(
        name="toy",
        files=dict(FILES),
        md5={name: _md5(blob) for name, blob in blobs.items()},
        mirrors=(source.as_uri(),),
        class_names=("a", "b", "c"),
    )
    return Toy(spec=spec, source=source, blobs=blobs, arrays=arrays)


@pytest.fixture(autouse=True)
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake HOME and system root, no LAMINA_DATA, and no network but file://."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("LAMINA_DATA", raising=False)
    monkeypatch.setattr(lookup, "SYSTEM_ROOT", tmp_path / "system")
    real_urlopen = urllib.request.urlopen

    def offline_urlopen(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        assert url.startswith("file:"), f"a test tried to reach the network: {url}"
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", offline_urlopen)
    return home
