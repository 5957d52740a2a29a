"""The CLI's malloc setting for big transfers: taken on glibc, a no-op elsewhere."""

from __future__ import annotations

import ctypes
import platform

import pytest

from loopml.cli._memory import keep_freed_memory


def test_keep_freed_memory_takes_on_glibc() -> None:
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")


def test_without_glibc_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_glibc(*args: object, **kwargs: object) -> object:
        raise OSError("libc.so.6: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_glibc)
    assert keep_freed_memory() is False
