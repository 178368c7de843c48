"""How many threads NumPy's BLAS (OpenBLAS) uses, read and changed at run time.

The sharded training step (:mod:`framework.parallel`) runs one shard of the batch on
each core. Each shard's matrix products must then stay on their own core: OpenBLAS
would otherwise start its own thread per core for every product, two shards would
ask for four threads on two cores, and the step gets slower than running the batch
whole (measured: 44 ms against 34 ms whole and 24 ms with one BLAS thread per shard,
docs/performance.md). OpenBLAS exports ``openblas_set_num_threads``, which takes
effect at once for every later call, from any thread.

NumPy's wheels load their own copy of OpenBLAS with renamed symbols
(``scipy_openblas_set_num_threads64_``), privately, so the library is found among
the shared objects the process has mapped (``/proc/self/maps``) rather than by name.
Where it is not found (another BLAS, another operating system), :func:`find_blas`
returns ``None`` and callers run their shards one after the other instead: the
same results, without the parallel speed-up.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Symbol prefixes of OpenBLAS builds: plain, 64-bit-integer, and NumPy's/SciPy's
# vendored copy (scipy-openblas), each with and without the trailing underscore.
_PREFIXES = ("openblas", "scipy_openblas")
_SUFFIXES = ("", "64_", "_64", "64")


@dataclass(frozen=True)
class Blas:
    """The thread-count controls of one loaded OpenBLAS library."""

    path: str
    _get: ctypes._CFuncPtr
    _set: ctypes._CFuncPtr

    def get_threads(self) -> int:
        return int(self._get())

    def set_threads(self, count: int) -> None:
        self._set(int(count))


_lock = threading.Lock()
_found: list[Blas | None] = []  # cached result of the search (the list is empty until it ran)


def _mapped_libraries(maps: Path = Path("/proc/self/maps")) -> list[str]:
    """Paths of the shared objects mapped into this process whose name says OpenBLAS."""
    try:
        text = maps.read_text()
    except OSError:  # not Linux
        return []
    paths = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)  # address, perms, offset, device, inode, path
        path = fields[5] if len(fields) == 6 else ""
        if "openblas" in Path(path).name.lower() and path not in paths:
            paths.append(path)
    return paths


def _controls(path: str) -> Blas | None:
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if getter is not None and setter is not None:
                getter.restype, getter.argtypes = ctypes.c_int, ()
                setter.restype, setter.argtypes = None, (ctypes.c_int,)
                return Blas(path, getter, setter)
    return None


def find_blas() -> Blas | None:
    """The thread controls of the OpenBLAS that NumPy uses, or ``None`` (searched once)."""
    with _lock:
        if not _found:
            import numpy  # noqa: F401  (loads the BLAS library, so that it is mapped)

            controls = (_controls(path) for path in _mapped_libraries())
            _found.append(next((c for c in controls if c is not None), None))
        return _found[0]


@contextmanager
def blas_threads(count: int, blas: Blas | None = None) -> Iterator[bool]:
    """Run the block with BLAS limited to ``count`` threads, restoring the count after.

    Yields whether the limit is in force (``False`` when no OpenBLAS was found). The
    setting is process-wide: it also holds for other threads while the block runs.
    """
    blas = blas if blas is not None else find_blas()
    if blas is None:
        yield False
        return
    before = blas.get_threads()
    if before == count:
        yield True
        return
    blas.set_threads(count)
    try:
        yield True
    finally:
        blas.set_threads(before)
