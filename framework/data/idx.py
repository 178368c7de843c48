"""Reader for the IDX format that MNIST and Fashion-MNIST ship in.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then
the values in C order, big-endian::

    byte 0, 1   0x00 0x00
    byte 2      type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte 3      number of dimensions d
    4 * d       the dimensions (N, rows, cols for images; N for labels)
    rest        prod(dims) * itemsize bytes of data

So MNIST images have magic 0x00000803 (2051) and labels 0x00000801 (2049).
Files may be gzip-compressed; that is recognised by the gzip magic bytes
(1f 8b), never by the file name, because people rename and unpack these files.

The file is read as a stream, header first: the header's dimensions are checked
(against the shape the caller expects, and against :data:`MAX_IDX_BYTES`) before
the payload is read, and no more than the payload the header promises is ever
decompressed, so a small file that inflates to gigabytes is refused after a few
bytes. Every defect (bad magic, short header, a shape other than expected,
truncated or overlong payload, corrupt gzip stream) is a :class:`DataError`
naming the file and what to do. :func:`read_idx_verified` also returns the
SHA-256 of the decompressed content, which identifies a dataset file whatever its
compression.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import DataError

#: the largest IDX payload read (MNIST's training images are 47 MB)
MAX_IDX_BYTES = 1 << 31

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
GZIP_MAGIC = b"\x1f\x8b"

_REMEDY = "delete it so lamina downloads it again, or copy an intact file over it"


def describe_magic(magic: int) -> str:
    """Spell out a magic number, e.g. ``2051 (0x00000803: uint8, 3 dimensions)``."""
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    dtype = IDX_TYPES.get(type_code)
    kind = dtype.name if dtype is not None else f"unknown type 0x{type_code:02X}"
    return f"{magic} (0x{magic:08X}: {kind}, {ndim} dimension{'s' if ndim != 1 else ''})"


def read_idx(path: str | os.PathLike[str], *, magic: int | None = None,
             shape: tuple[int, ...] | None = None, remedy: str = _REMEDY) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian, writable array.

    ``magic``, if given, is the magic number the file must have
    (:data:`IMAGES_MAGIC`, :data:`LABELS_MAGIC`); ``shape`` the shape it must hold.
    """
    return read_idx_verified(path, magic=magic, shape=shape, remedy=remedy)[0]


def read_idx_verified(path: str | os.PathLike[str], *, magic: int | None = None,
                      shape: tuple[int, ...] | None = None, remedy: str = _REMEDY,
                      ) -> tuple[np.ndarray, str]:
    """:func:`read_idx`, and the SHA-256 of the decompressed IDX content."""
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"{path} is not a regular file; an IDX file is read only from a "
                            f"file: {remedy}")
        with open(path, "rb") as handle:
            return _decode(handle, str(path), magic, shape, remedy)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc


def decode_idx(data: bytes, *, source: str, magic: int | None = None,
               shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Decode the bytes of an IDX file (raw or gzip); ``source`` names it in errors."""
    return _decode(io.BytesIO(data), source, magic, shape, _REMEDY)[0]


def _decode(handle: BinaryIO, source: str, magic: int | None, shape: tuple[int, ...] | None,
            remedy: str) -> tuple[np.ndarray, str]:
    compressed = handle.read(2) == GZIP_MAGIC
    handle.seek(0)
    stream: BinaryIO = gzip.GzipFile(fileobj=handle, mode="rb") if compressed else handle
    after = " after decompression" if compressed else ""
    digest = hashlib.sha256()
    try:
        head = stream.read(4)
        header_magic, ndim = _parse_magic(head, source, remedy)
        dims = stream.read(4 * ndim)
        if len(dims) < 4 * ndim:
            raise DataError(
                f"{source}: IDX header truncated: {ndim} dimensions need {4 + 4 * ndim} header "
                f"bytes, received {4 + len(dims)} bytes; {remedy}"
            )
        found = tuple(int(n) for n in struct.unpack(f">{ndim}I", dims))
        dtype = IDX_TYPES[(header_magic >> 8) & 0xFF]
        if magic is not None and header_magic != magic:
            raise DataError(
                f"{source}: expected an IDX file with magic {describe_magic(magic)}, "
                f"received magic {describe_magic(header_magic)}; the file is not the one its "
                f"name says (images and labels swapped?): {remedy}"
            )
        if shape is not None and found != tuple(shape):
            raise DataError(
                f"{source}: expected an IDX array of shape {tuple(shape)}, the header declares "
                f"{found}; the file belongs to another dataset or part (train and test "
                f"swapped?): {remedy}"
            )
        expected = int(np.prod(found, dtype=object)) * dtype.itemsize
        if expected > MAX_IDX_BYTES:
            raise DataError(
                f"{source}: the IDX header declares shape {found} of {dtype.name}, "
                f"{expected:,} bytes; lamina reads at most {MAX_IDX_BYTES:,}: {remedy}"
            )
        payload = stream.read(expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{source}: corrupt gzip stream ({exc}); the file was probably cut short or "
            f"damaged in transfer: {remedy}"
        ) from exc
    if len(payload) != expected:
        problem = "truncated" if len(payload) < expected else "has trailing bytes"
        if len(payload) <= expected:
            received = f"{len(payload)} bytes"
        elif compressed:  # not inflated further: the rest could be gigabytes
            received = "more"
        else:
            received = f"{handle.seek(0, io.SEEK_END) - 4 - 4 * ndim} bytes"
        raise DataError(
            f"{source}: IDX payload {problem}: the header promises shape {found} of "
            f"{dtype.name} = {expected} bytes, received {received}{after}; {remedy}"
        )
    for part in (head, dims, payload):
        digest.update(part)
    values = np.frombuffer(payload, dtype=dtype)
    # astype copies, which makes the result writable and native-endian in one step.
    return values.reshape(found).astype(dtype.newbyteorder("=")), digest.hexdigest()


def _parse_magic(data: bytes, source: str, remedy: str) -> tuple[int, int]:
    if len(data) < 4:
        raise DataError(
            f"{source}: expected an IDX header of at least 4 bytes, received {len(data)} "
            f"bytes; {remedy}"
        )
    (magic,) = struct.unpack(">I", data[:4])
    zeros, type_code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zeros != 0 or type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_TYPES)
        raise DataError(
            f"{source}: not an IDX file: expected a magic number 0x0000TTDD with type code "
            f"TT in {known}, received 0x{magic:08X}; {remedy}"
        )
    if ndim == 0:
        raise DataError(f"{source}: IDX magic 0x{magic:08X} declares 0 dimensions; {remedy}")
    return magic, ndim
