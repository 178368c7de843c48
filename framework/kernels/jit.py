"""Loading the compiled loops: Numba is imported the first time a kernel runs, not before.

``lamina layers``, ``validate`` and ``summary`` never run a kernel, so they never pay
Numba's import (~0.2 s). The first call of a loop for a new argument type compiles it
(about a second) or loads it from Numba's cache on disk (milliseconds); either way a
missing or broken Numba, or a loop that fails to compile, is a :class:`KernelError`
saying what to do, never a Numba traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lamina.errors import KernelError

_loops: ModuleType | None = None


def loops() -> ModuleType:
    """The module of compiled loops (lamina.kernels._loops), imported on first use."""
    global _loops
    if _loops is None:
        try:
            module = importlib.import_module("lamina.kernels._loops")
        except ImportError as error:
            raise KernelError(
                f"lamina's compiled kernels need Numba, which could not be imported ({error}). "
                "Fix: pip install 'numba>=0.61' in this environment (it is one of lamina's "
                "dependencies: reinstalling lamina installs it)"
            ) from error
        except RuntimeError as error:  # e.g. no writable place for Numba's cache
            raise KernelError(
                f"Numba could not set up lamina's compiled kernels: {error}. Fix: set "
                "NUMBA_CACHE_DIR to a writable directory"
            ) from error
        except OSError as error:  # LLVM's shared library could not be mapped or found
            limit = _address_space_limit()
            fix = (f"the process's address space is limited to {limit >> 20:,} MiB (ulimit "
                   "-v) and too little of it was left to map the library: raise the limit, or "
                   "give the command less data at once (lamina needs about 620 MiB besides "
                   "its data: docs/limits-and-guarantees.md)"
                   if limit is not None else "reinstall llvmlite and numba (pip install "
                   "--force-reinstall numba)")
            raise KernelError(f"Numba's LLVM library could not be loaded "
                              f"({_first_line(error)}). Fix: {fix}") from error
        _loops = module
    return _loops


def run(name: str, *args):
    """Call the compiled loop ``name`` with ``args`` (compiling it for their types if needed)."""
    module = loops()
    try:
        return getattr(module, name)(*args)
    except module.NumbaError as error:
        types = ", ".join(str(getattr(a, "dtype", type(a).__name__)) for a in args)
        raise KernelError(
            f"Numba failed to compile lamina's kernel {name} for ({types}): "
            f"{_first_line(error)}. Fix: "
            "pass float32 or float64 arrays; if they are, reinstall a Numba release that "
            "supports this NumPy (pip install -U numba) and report the error"
        ) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _address_space_limit() -> int | None:
    """The process's address-space limit in bytes (RLIMIT_AS), None when unlimited."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft
