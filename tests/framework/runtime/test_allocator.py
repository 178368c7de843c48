"""The allocator tuning the lamina command applies at start-up."""

from __future__ import annotations

import platform

import pytest

from lamina.runtime.allocator import tune_allocator


def test_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("LAMINA_MALLOC_TUNING", "0")
    assert tune_allocator() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt settings are glibc's")
def test_applies_on_glibc(monkeypatch):
    monkeypatch.delenv("LAMINA_MALLOC_TUNING", raising=False)
    assert tune_allocator() is True
