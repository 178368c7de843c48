"""What a benchmark figure depends on besides lamina: the CPU, its vector extensions and
the kernel OpenBLAS chose for it.

OpenBLAS picks its kernels for the CPU it finds at start-up unless ``OPENBLAS_CORETYPE``
forces a choice (this project's development shells set it, which puts an AVX-512 CPU
on Haswell's AVX2 kernels: docs/performance.md). The kernel is the one OpenBLAS reports
itself (``openblas_get_corename``, what threadpoolctl shows as ``architecture``), so a
figure can say what it was measured with. ``lamina bench`` and benchmarks/compare.py
print these beside every figure.
"""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

from .blas import find_blas

#: the vector extensions that change which kernels run, widest first
_EXTENSIONS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"))


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """The CPU's model name and its feature flags (empty off Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.processor() or platform.machine(), set()
    name, flags = platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name == platform.machine():
            name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return name, flags


def vector_extensions(flags: set[str]) -> str:
    """The widest vector extension among ``flags`` ("AVX-512", "AVX2", ...), "unknown" without
    flags."""
    for flag, label in _EXTENSIONS:
        if flag in flags:
            return label
    return "unknown" if not flags else "none above SSE4.2"


def blas_kernel() -> str:
    """The kernel the OpenBLAS NumPy uses chose ("SkylakeX", "Haswell"...), or why it is
    unknown."""
    blas = find_blas()
    if blas is None:
        return "unknown (NumPy's BLAS is not OpenBLAS)"
    lib = ctypes.CDLL(blas.path)
    for name in ("openblas_get_corename", "scipy_openblas_get_corename64_",
                 "scipy_openblas_get_corename", "openblas_get_corename64_"):
        getter = getattr(lib, name, None)
        if getter is not None:
            getter.restype, getter.argtypes = ctypes.c_char_p, ()
            return getter().decode(errors="replace")
    return f"unknown ({Path(blas.path).name} does not report it)"


def machine() -> dict[str, str]:
    """The facts a benchmark figure is printed with."""
    name, flags = cpu_model()
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return {"cpu": name, "vector_extensions": vector_extensions(flags),
            "cores": str(os.cpu_count() or "unknown"), "blas_kernel": blas_kernel(),
            "blas_kernel_forced": forced or ""}


def describe(facts: dict[str, str]) -> str:
    """One line: "Intel Xeon, AVX-512, 2 cores, OpenBLAS SkylakeX"."""
    forced = (f" (forced by OPENBLAS_CORETYPE={facts['blas_kernel_forced']})"
              if facts.get("blas_kernel_forced") else "")
    return (f"{facts['cpu']}, {facts['vector_extensions']}, {facts['cores']} cores, "
            f"OpenBLAS {facts['blas_kernel']}{forced}")
