"""Copying files in the kernel, and storing a big file while the caller does other work."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from loopml.stores.artifacts import backends
from loopml.stores.artifacts.backends import LocalBackend, copy_file
from loopml.stores.artifacts.cas import ContentStore
from loopml.stores.artifacts.hashing import hash_bytes


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 1024 * 1024 + 7])
def test_copy_file_copies_every_byte_in_one_range_or_two(tmp_path: Path, size: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_PARALLEL_COPY_MIN", 1024 * 1024)  # the 3 MB file goes as two ranges
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(os.urandom(size))
    dst.write_bytes(b"x" * (size + 100))  # an older, longer file is replaced whole
    copy_file(src, dst)
    assert dst.read_bytes() == src.read_bytes()


def test_copy_file_falls_back_to_sendfile_where_copy_file_range_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def refused(*args: object) -> int:
        calls.append(1)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refused)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(os.urandom(100_000))
    copy_file(src, dst)
    assert calls and dst.read_bytes() == src.read_bytes()


def test_a_big_file_is_stored_while_meanwhile_runs_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_PARALLEL_COPY_MIN", 1024 * 1024)
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    big = tmp_path / "big.bin"
    data = os.urandom(9 * 1024 * 1024)  # above ingest.SMALL_OBJECT: copied by the kernel while hashed
    big.write_bytes(data)
    seen: list[str] = []
    [got] = store.ingest_files([(str(big), len(data))], meanwhile=lambda: seen.append(threading.current_thread().name))
    assert seen == [threading.main_thread().name]
    assert got.written and got.ref.digest == hash_bytes(data)
    assert store.read_bytes(got.ref.digest) == data


def test_a_failing_big_file_still_fails_when_meanwhile_runs(tmp_path: Path) -> None:
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    with pytest.raises(OSError):
        store.ingest_files([(str(tmp_path / "gone.bin"), 9 * 1024 * 1024)], meanwhile=lambda: None)
    assert not [p for p in (tmp_path / "objects").rglob("*") if p.is_file() and p.suffix == ".part"]
