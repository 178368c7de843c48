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
Every defect (bad magic, short header, truncated or overlong payload, corrupt
gzip stream) is a :class:`DataError` naming the file and what to do.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

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


def read_idx(path: str | os.PathLike[str], *, magic: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian, writable array.

    ``magic``, if given, is the magic number the file must have
    (:data:`IMAGES_MAGIC`, :data:`LABELS_MAGIC`).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return decode_idx(data, source=str(path), magic=magic)


def decode_idx(data: bytes, *, source: str, magic: int | None = None) -> np.ndarray:
    """Decode the bytes of an IDX file (raw or gzip); ``source`` names it in errors."""
    compressed = data[:2] == GZIP_MAGIC
    if compressed:
        data = _gunzip(data, source)
    header_magic, shape, dtype = _parse_header(data, source)
    if magic is not None and header_magic != magic:
        raise DataError(
            f"{source}: expected an IDX file with magic {describe_magic(magic)}, "
            f"received magic {describe_magic(header_magic)}; the file is not the one its "
            f"name says (images and labels swapped?): {_REMEDY}"
        )
    offset = 4 + 4 * len(shape)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    received = len(data) - offset
    if received != expected:
        problem = "truncated" if received < expected else "has trailing bytes"
        after = " after decompression" if compressed else ""
        raise DataError(
            f"{source}: IDX payload {problem}: the header promises shape {shape} of "
            f"{dtype.name} = {expected} bytes, received {received} bytes{after}; {_REMEDY}"
        )
    values = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=offset)
    # astype copies, which makes the result writable and native-endian in one step.
    return values.reshape(shape).astype(dtype.newbyteorder("="))


def _gunzip(data: bytes, source: str) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{source}: corrupt gzip stream ({exc}); the file was probably cut short or "
            f"damaged in transfer: {_REMEDY}"
        ) from exc


def _parse_header(data: bytes, source: str) -> tuple[int, tuple[int, ...], np.dtype]:
    if len(data) < 4:
        raise DataError(
            f"{source}: expected an IDX header of at least 4 bytes, received {len(data)} "
            f"bytes; {_REMEDY}"
        )
    (magic,) = struct.unpack(">I", data[:4])
    zeros, type_code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zeros != 0 or type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_TYPES)
        raise DataError(
            f"{source}: not an IDX file: expected a magic number 0x0000TTDD with type code "
            f"TT in {known}, received 0x{magic:08X}; {_REMEDY}"
        )
    if ndim == 0:
        raise DataError(f"{source}: IDX magic 0x{magic:08X} declares 0 dimensions; {_REMEDY}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"{source}: IDX header truncated: {ndim} dimensions need {header_size} header "
            f"bytes, received {len(data)} bytes; {_REMEDY}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    return magic, tuple(int(n) for n in shape), IDX_TYPES[type_code]
