"""Finding NumPy's OpenBLAS and limiting its threads for a block."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lamina.runtime import blas
from lamina.runtime.blas import Blas, blas_threads, find_blas


class FakeBlas:
    """Two libraries, like NumPy's OpenBLAS and SciPy's."""

    def __init__(self, *threads: int):
        self.threads, self.calls = tuple(threads), []

    def get_threads(self) -> tuple[int, ...]:
        return self.threads

    def set_threads(self, counts) -> None:
        counts = (counts,) * len(self.threads) if isinstance(counts, int) else tuple(counts)
        self.calls.append(counts)
        self.threads = counts


def test_blas_threads_sets_the_count_for_the_block_and_restores_each_library():
    fake = FakeBlas(4, 3)
    with blas_threads(1, fake) as limited:
        assert limited and fake.threads == (1, 1)
    assert fake.threads == (4, 3) and fake.calls == [(1, 1), (4, 3)]


def test_blas_threads_restores_the_count_after_an_error():
    fake = FakeBlas(2, 2)
    with pytest.raises(RuntimeError), blas_threads(1, fake):
        raise RuntimeError("boom")
    assert fake.threads == (2, 2)


def test_blas_threads_leaves_equal_counts_alone():
    fake = FakeBlas(1, 1)
    with blas_threads(1, fake) as limited:
        assert limited
    assert fake.calls == []


def test_without_a_blas_the_block_runs_unlimited(monkeypatch):
    monkeypatch.setattr(blas, "find_blas", lambda: None)
    with blas_threads(1) as limited:
        assert limited is False


def test_mapped_libraries_lists_each_shared_object_once(tmp_path: Path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r--p 00000000 08:01 12 /usr/lib/libc.so.6\n"
        "7f01-7f02 r-xp 00001000 08:01 34 /site/numpy.libs/libscipy_openblas64_-ab.so\n"
        "7f02-7f03 r--p 00002000 08:01 34 /site/numpy.libs/libscipy_openblas64_-ab.so\n"
        "7f03-7f04 rw-p 00000000 00:00 0\n"
        "7f04-7f05 r--p 00000000 08:01 56 /opt/with space/libblas.so.3\n"
        "7f05-7f06 r--p 00000000 08:01 78 /usr/lib/locale/locale-archive\n"
    )
    assert blas._mapped_libraries(maps) == [
        "/usr/lib/libc.so.6", "/site/numpy.libs/libscipy_openblas64_-ab.so",
        "/opt/with space/libblas.so.3"]
    assert blas._mapped_libraries(tmp_path / "missing") == []


def test_numpys_own_blas_comes_before_scipys_and_before_modules_linking_it():
    paths = ["/site/scipy.libs/libscipy_openblas-1.so",
             "/site/numpy/linalg/_umath_linalg.so",
             "/site/numpy.libs/libscipy_openblas64_-2.so",
             "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"]
    assert blas._numpy_first(paths, Path("/site/numpy")) == [
        "/site/numpy.libs/libscipy_openblas64_-2.so",
        "/site/numpy/linalg/_umath_linalg.so",
        "/site/scipy.libs/libscipy_openblas-1.so",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"]


def test_a_library_without_the_controls_is_not_taken():
    assert blas._controls("libm.so.6") is None
    assert blas._controls(str(Path("/nonexistent/libopenblas.so"))) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_numpys_openblas_is_found_once_and_its_threads_change(monkeypatch):
    import numpy as np

    if "openblas" not in str(np.show_config(mode="dicts")).lower():
        pytest.skip("this NumPy is not built with OpenBLAS")
    found = find_blas()
    assert isinstance(found, Blas) and "blas" in Path(found.path).name.lower()
    before = found.get_threads()
    with blas_threads(1, found):
        assert set(found.get_threads()) == {1}
    assert found.get_threads() == before
    # The same library seen twice (and through a module linking it) is controlled once.
    paths = [found.path, found.path, np._core._multiarray_umath.__file__]
    monkeypatch.setattr(blas, "_mapped_libraries", lambda: paths)
    find_blas.cache_clear()
    try:
        again = find_blas()
    finally:
        find_blas.cache_clear()  # the next caller searches the real process again
    assert [lib.path for lib in again.libraries] == [found.path]
