"""Finding NumPy's OpenBLAS and limiting its threads for a block."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from framework import blas
from framework.blas import Blas, blas_threads, find_blas


class FakeBlas:
    def __init__(self, threads: int):
        self.threads, self.calls = threads, []

    def get_threads(self) -> int:
        return self.threads

    def set_threads(self, count: int) -> None:
        self.calls.append(count)
        self.threads = count


def test_blas_threads_sets_the_count_for_the_block_and_restores_it():
    fake = FakeBlas(4)
    with blas_threads(1, fake) as limited:
        assert limited and fake.threads == 1
    assert fake.threads == 4 and fake.calls == [1, 4]


def test_blas_threads_restores_the_count_after_an_error():
    fake = FakeBlas(2)
    with pytest.raises(RuntimeError), blas_threads(1, fake):
        raise RuntimeError("boom")
    assert fake.threads == 2


def test_blas_threads_leaves_an_equal_count_alone():
    fake = FakeBlas(1)
    with blas_threads(1, fake) as limited:
        assert limited
    assert fake.calls == []


def test_without_a_blas_the_block_runs_unlimited(monkeypatch):
    monkeypatch.setattr(blas, "find_blas", lambda: None)
    with blas_threads(1) as limited:
        assert limited is False


def test_mapped_libraries_reads_openblas_paths_from_a_maps_file(tmp_path: Path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r--p 00000000 08:01 12 /usr/lib/libc.so.6\n"
        "7f01-7f02 r-xp 00001000 08:01 34 /site/numpy.libs/libscipy_openblas64_-ab.so\n"
        "7f02-7f03 r--p 00002000 08:01 34 /site/numpy.libs/libscipy_openblas64_-ab.so\n"
        "7f03-7f04 rw-p 00000000 00:00 0\n"
        "7f04-7f05 r--p 00000000 08:01 56 /opt/with space/libopenblas.so.0\n"
    )
    assert blas._mapped_libraries(maps) == [
        "/site/numpy.libs/libscipy_openblas64_-ab.so", "/opt/with space/libopenblas.so.0"]
    assert blas._mapped_libraries(tmp_path / "missing") == []


def test_a_library_without_the_controls_is_not_taken():
    assert blas._controls("libm.so.6") is None
    assert blas._controls(str(Path("/nonexistent/libopenblas.so"))) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_numpys_openblas_is_found_and_its_threads_change():
    import numpy as np

    if "openblas" not in str(np.show_config(mode="dicts")).lower():
        pytest.skip("this NumPy is not built with OpenBLAS")
    found = find_blas()
    assert isinstance(found, Blas)
    before = found.get_threads()
    with blas_threads(1, found):
        assert found.get_threads() == 1
    assert found.get_threads() == before
