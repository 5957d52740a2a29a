"""The working-copy scan: one fingerprint however it is computed, and errors that name the path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopml.errors import DataInputError
from loopml.services.data import scan
from loopml.services.data.scan import fingerprint_path, scan_path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for i in range(40):
        d = root / f"d{i % 5}" / ("deep" if i % 2 else "")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.bin").write_bytes(bytes([i]) * (i + 1))
    (root / "top.txt").write_text("top")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.txt").write_text("x")
    (root / "link").symlink_to(tmp_path / "elsewhere")
    return root


def count_forks(monkeypatch: pytest.MonkeyPatch, *, allow: bool = True) -> list[int]:
    """The pids this process forks from now on. ``allow``: fork even though earlier tests left threads
    running in this process (the child only lists, stats and writes to a pipe)."""
    forks: list[int] = []
    real = os.fork
    if allow:
        monkeypatch.setattr(scan, "_may_fork", lambda: True)

    def fork() -> int:
        pid = real()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return forks


def test_the_fingerprint_is_the_same_from_the_full_scan_the_quick_one_and_the_forked_one(
        tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forks = count_forks(monkeypatch)
    kind, entries, fingerprint = scan_path(tree)
    assert kind == "directory"
    assert [e.rel for e in entries] == sorted(e.rel for e in entries)
    assert len(entries) == 42 and "link/x.txt" in {e.rel for e in entries}
    assert fingerprint_path(tree) == ("directory", fingerprint)
    assert not forks
    assert fingerprint_path(tree, fork=True) == ("directory", fingerprint)
    assert len(forks) == 1  # the child walked half of the subdirectories


def test_a_change_in_either_half_changes_the_forked_fingerprint(tree: Path) -> None:
    before = fingerprint_path(tree, fork=True)
    last = tree / "link" / "x.txt"  # "link" sorts last: the child's half
    last.write_text("changed, longer")
    after_child_half = fingerprint_path(tree, fork=True)
    assert after_child_half != before
    assert after_child_half == fingerprint_path(tree) == ("directory", scan_path(tree)[2])
    (tree / "d0" / "f0.bin").rename(tree / "d0" / "g0.bin")  # the parent's half
    assert fingerprint_path(tree, fork=True) not in (before, after_child_half)


def test_an_error_in_the_childs_half_is_raised_by_the_parent_naming_the_path(
        tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forks = count_forks(monkeypatch)
    (tree / "link").unlink()
    (tree / "zloop").mkdir()
    (tree / "zloop" / "back").symlink_to(tree)
    with pytest.raises(DataInputError, match="zloop/back.*symlink loop"):
        fingerprint_path(tree, fork=True)
    assert len(forks) == 1
    with pytest.raises(DataInputError, match="zloop/back.*symlink loop"):
        scan_path(tree)


def test_a_file_and_a_missing_path(tree: Path) -> None:
    kind, entries, fingerprint = scan_path(tree / "top.txt")
    assert (kind, [e.rel for e in entries]) == ("file", ["top.txt"])
    assert fingerprint_path(tree / "top.txt", fork=True) == ("file", fingerprint)
    with pytest.raises(DataInputError, match="does not exist"):
        fingerprint_path(tree / "nope", fork=True)


def test_a_threaded_process_does_not_fork(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    forks = count_forks(monkeypatch, allow=False)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, args=(10,))
    t.start()
    try:
        assert not scan._may_fork()
        fingerprint_path(tree, fork=True)
    finally:
        stop.set()
        t.join()
    assert not forks
