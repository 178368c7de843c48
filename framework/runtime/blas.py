"""How many threads NumPy's BLAS (OpenBLAS) uses, read and changed at run time.

The sharded training step (:mod:`lamina.runtime.parallel`) runs one shard of the batch on
each core. Each shard's matrix products must then stay on their own core: OpenBLAS
would otherwise start its own thread per core for every product, two shards would
ask for four threads on two cores, and the step gets slower than running the batch
whole (measured in a first prototype, forward and backward without the optimizer:
44 ms against 34 ms whole and 24 ms with one BLAS thread per shard,
docs/performance.md). OpenBLAS exports ``openblas_set_num_threads``, which takes
effect at once for every later call, from any thread.

NumPy's wheels load their own copy of OpenBLAS with renamed symbols
(``scipy_openblas_set_num_threads64_``), privately, and a distribution's NumPy may
link a system OpenBLAS under a generic name (``libblas.so.3``); SciPy's wheels map a
second copy beside NumPy's. So the search looks at every shared object the process
has mapped (``/proc/self/maps``) for the OpenBLAS controls, and :class:`Blas` limits
all the copies it found (NumPy's, the one under NumPy's own folders, listed first).
Where none is found (another BLAS, another operating system), :func:`find_blas`
returns ``None`` and callers run their shards one after the other instead: the
same results, without the parallel speed-up.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Symbol prefixes of OpenBLAS builds: plain, 64-bit-integer, and NumPy's/SciPy's
# vendored copy (scipy-openblas), each with and without the trailing underscore.
_PREFIXES = ("openblas", "scipy_openblas")
_SUFFIXES = ("", "64_", "_64", "64")


@dataclass(frozen=True)
class Library:
    """The thread-count controls of one loaded OpenBLAS library."""

    path: str
    get: ctypes._CFuncPtr
    set: ctypes._CFuncPtr


@dataclass(frozen=True)
class Blas:
    """Every OpenBLAS mapped into the process; the first is the one NumPy uses."""

    libraries: tuple[Library, ...]

    @property
    def path(self) -> str:
        return self.libraries[0].path

    def get_threads(self) -> tuple[int, ...]:
        """Each library's thread count."""
        return tuple(int(lib.get()) for lib in self.libraries)

    def set_threads(self, counts: int | tuple[int, ...]) -> None:
        """One count for every library, or one per library (as get_threads returns)."""
        if isinstance(counts, int):
            counts = (counts,) * len(self.libraries)
        for lib, count in zip(self.libraries, counts, strict=True):
            lib.set(int(count))


def _mapped_libraries(maps: Path = Path("/proc/self/maps")) -> list[str]:
    """Paths of the shared objects (``*.so``, ``*.so.N``) mapped into this process."""
    try:
        text = maps.read_text()
    except OSError:  # not Linux
        return []
    paths = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)  # address, perms, offset, device, inode, path
        path = fields[5] if len(fields) == 6 else ""
        name = Path(path).name
        if (name.endswith(".so") or ".so." in name) and path not in paths:
            paths.append(path)
    return paths


def _controls(path: str) -> Library | None:
    try:
        lib = ctypes.CDLL(path)  # already mapped: this only takes a handle to it
    except OSError:
        return None
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if getter is not None and setter is not None:
                getter.restype, getter.argtypes = ctypes.c_int, ()
                setter.restype, setter.argtypes = None, (ctypes.c_int,)
                return Library(path, getter, setter)
    return None


def _numpy_first(paths: list[str], numpy_dir: Path) -> list[str]:
    """``paths`` with those inside NumPy's package or its wheel's ``numpy.libs`` first,
    and in each group the BLAS libraries themselves before modules that link them."""
    own = (str(numpy_dir) + "/", str(numpy_dir.parent / "numpy.libs") + "/")

    def order(path: str) -> tuple[bool, bool]:
        name = Path(path).name.lower()
        return (not path.startswith(own), not ("openblas" in name or name.startswith("libblas")))

    return sorted(paths, key=order)


@functools.cache
def find_blas() -> Blas | None:
    """The thread controls of the OpenBLAS libraries in use, or ``None`` (searched once)."""
    import numpy  # loads NumPy's BLAS library, so that it is mapped

    paths = _numpy_first(_mapped_libraries(), Path(numpy.__file__).resolve().parent)
    libraries: dict[int | None, Library] = {}
    for found in filter(None, map(_controls, paths)):
        # A library that links OpenBLAS (NumPy's own extension modules) resolves the
        # same function through its dependencies: keep each function once.
        libraries.setdefault(ctypes.cast(found.set, ctypes.c_void_p).value, found)
    return Blas(tuple(libraries.values())) if libraries else None


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
    if all(threads == count for threads in before):
        yield True
        return
    blas.set_threads(count)
    try:
        yield True
    finally:
        blas.set_threads(before)
