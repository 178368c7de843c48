"""Reading ``.npy`` and ``.npz`` files as untrusted input: headers first, arrays after.

A checkpoint archive (``.npz``) and an array given to ``lamina predict`` (``.npy``) are
read the same way. The ``.npy`` header is parsed and checked before a single value
is allocated: a known format version, a numeric dtype (never objects, so never a
pickle), dimensions that are whole numbers of at least 0, and a payload exactly as
large as the shape says. Only then are exactly that many bytes read. A header that
lies (a terabyte declared in a few bytes, a negative dimension), an archive given
where one array is expected, or the reverse, is a :class:`BadArrayFile` saying
which; each caller turns it into its own error with its own fix.

NumPy's own ``np.load`` is not used for these files: it maps or reads first and
leaves such headers to fail later (an ``OverflowError`` from ``mmap``, an
``NpzFile`` where an array was expected).
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .config.files import NotARegularFile, open_regular_file

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK"
#: the largest .npy header read (NumPy writes under 200 bytes for a plain array)
MAX_HEADER_BYTES = 10_000
#: dtype kinds lamina reads: booleans, signed and unsigned integers, floats
NUMERIC = "biuf"

_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


class BadArrayFile(ValueError):
    """A file (or archive member) that is not the array it claims to be; the message
    says what was found, to follow the file's name."""


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header declares, checked: its payload starts at ``offset``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize


def read_npy_header(stream: BinaryIO, size: int, *, kinds: str = NUMERIC) -> NpyHeader:
    """The checked header of the ``.npy`` data of ``size`` bytes that ``stream`` starts."""
    start = stream.read(len(NPY_MAGIC))
    if start.startswith(ZIP_MAGIC):
        raise BadArrayFile("is an .npz archive (a zip of several arrays), not one .npy array")
    if start != NPY_MAGIC:
        raise BadArrayFile("is not a .npy array (it does not start as numpy.save writes one)")
    version = tuple(stream.read(2))
    if len(version) < 2:
        raise BadArrayFile("ends inside its .npy header")
    reader = _HEADER_READERS.get(version)
    if reader is None:
        raise BadArrayFile(f"has .npy format version {'.'.join(map(str, version))}, which "
                           "lamina does not read (it reads 1.0 and 2.0)")
    try:
        with warnings.catch_warnings():
            # a header written by Python 2 (3L) parses with advice to save it again:
            # lamina checks what it declares below, and the advice is not the user's to act on
            warnings.simplefilter("ignore", UserWarning)
            shape, fortran, dtype = reader(stream, max_header_size=MAX_HEADER_BYTES)
    except Exception:  # NumPy's parser raises half a dozen types (tokenize's too)
        raise BadArrayFile("has a damaged .npy header (not the dictionary of descr, "
                           "fortran_order and shape that numpy.save writes)") from None
    if dtype.hasobject or dtype.kind not in kinds or dtype.fields is not None:
        raise BadArrayFile(f"holds {dtype} values, not numbers")
    if any(d < 0 for d in shape):
        raise BadArrayFile(f"declares a negative dimension, shape {shape}")
    header = NpyHeader(tuple(int(d) for d in shape), dtype, bool(fortran), stream.tell())
    if header.offset + header.nbytes != size:
        raise BadArrayFile(f"declares shape {header.shape} of {dtype} "
                           f"({header.offset + header.nbytes:,} bytes with its header) but "
                           f"holds {size:,} bytes")
    return header


def read_payload(stream: BinaryIO, header: NpyHeader) -> np.ndarray:
    """The array of a checked ``header``, read from ``stream`` right after it."""
    values = np.empty(int(np.prod(header.shape, dtype=object)), dtype=header.dtype)
    view, filled = memoryview(values).cast("B"), 0
    while filled < header.nbytes:  # read straight into the array: no second copy
        got = stream.readinto(view[filled:])
        if not got:
            raise BadArrayFile(f"ends {header.nbytes - filled:,} bytes before its array does")
        filled += got
    return values.reshape(header.shape, order="F" if header.fortran else "C")


def read_into(stream: BinaryIO, header: NpyHeader, out: np.ndarray, *,
              check: Callable[[np.ndarray], None] | None = None, values: int = 1 << 20
              ) -> None:
    """Fill ``out`` (an array of ``header.shape``, of any dtype) with the array a checked
    ``header`` describes, read from ``stream`` a piece of about ``values`` values at a
    time; ``check`` sees each piece as stored, before it is converted. A large array
    converted this way (float64 to float32, say) never needs a copy of itself.

    The pieces are slabs of the order the file stores: rows of a C-order array, and of
    a Fortran-order one's transpose (its last axis), which is ``out.T`` in C order."""
    if out.shape != header.shape:
        raise ValueError(f"out has shape {out.shape}, the file's array {header.shape}")
    target = out.T if header.fortran else out
    if target.ndim == 0:
        target = target.reshape(1)
    row = int(np.prod(target.shape[1:], dtype=object))
    step = max(1, values // max(row, 1))
    for start in range(0, target.shape[0], step):
        rows = min(step, target.shape[0] - start)
        piece = read_payload(stream, NpyHeader((rows, *target.shape[1:]), header.dtype, False,
                                               header.offset))
        if check is not None:
            check(piece)
        target[start:start + rows] = piece


@contextmanager
def open_npy(path: Path) -> Iterator[tuple[BinaryIO, NpyHeader]]:
    """A regular ``.npy`` file open and positioned after its checked header; OSError
    when it cannot be opened, BadArrayFile when it is no such file."""
    try:
        handle = open_regular_file(path)
    except NotARegularFile as exc:
        raise BadArrayFile(str(exc)) from None
    with handle:
        yield handle, read_npy_header(handle, os.fstat(handle.fileno()).st_size)


def read_npz(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive as lamina writes them (uncompressed members of
    numeric arrays), each member's header checked before its array is allocated."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise BadArrayFile("is not an .npz archive (a zip of .npy arrays)")
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy") or \
                        info.compress_type != zipfile.ZIP_STORED:
                    raise BadArrayFile(f"member {info.filename!r} is not a stored .npy array")
                # A stored member is its bytes: sizes the zip directory states beyond the
                # archive are lies, refused before an array of that size is allocated.
                if info.file_size != info.compress_size:
                    raise BadArrayFile(f"member {info.filename!r} is stored as "
                                       f"{info.compress_size:,} bytes but declares "
                                       f"{info.file_size:,}; a stored member is its bytes")
                if info.file_size > len(data):
                    raise BadArrayFile(f"member {info.filename!r} declares {info.file_size:,} "
                                       f"bytes; the whole archive holds {len(data):,}")
                with archive.open(info) as member:
                    try:
                        header = read_npy_header(member, info.file_size)
                        arrays[info.filename[:-4]] = read_payload(member, header)
                    except BadArrayFile as exc:
                        raise BadArrayFile(f"member {info.filename!r} {exc}") from None
    except BadArrayFile:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
        raise BadArrayFile(f"is a damaged archive ({_first_line(exc)})") from exc
    return arrays


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
