"""One-pass ingest of new files into the local content store, as `data add` uses it."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import random_files

from loopml.errors import ConflictError, DataInputError
from loopml.stores.artifacts import ingest
from loopml.stores.artifacts.backends import LocalBackend
from loopml.stores.artifacts.cas import ContentStore
from loopml.stores.artifacts.hashing import hash_file
from loopml.workspace import Workspace

_files = random_files


def test_ingest_stores_each_object_once_named_by_its_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "SMALL_OBJECT", 64 * 1024)  # exercise the big-file path with small data
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    items = _files(tmp_path / "src", [0, 1, 1000, 70_000, 300_000])
    dup = tmp_path / "src" / "dup.bin"
    dup.write_bytes(Path(items[3][0]).read_bytes())
    items.append((str(dup), dup.stat().st_size))
    got = store.ingest_files(items)
    assert [g.ref.digest for g in got] == [hash_file(p) for p, _ in items]
    assert [g.ref.size for g in got] == [s for _, s in items]
    assert [g.written for g in got].count(True) == 5  # the duplicate is stored once
    assert all(store.verify(g.ref.digest).status == "ok" for g in got)
    assert sum(1 for _ in store.iter_objects()) == 5
    assert store.backend.count_temp_files() == 0  # type: ignore[attr-defined]
    again = store.ingest_files(items)
    assert not any(g.written for g in again)


def test_concurrent_ingests_of_the_same_files_both_succeed(tmp_path: Path) -> None:
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    items = _files(tmp_path / "src", [5000] * 200)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(len(store.ingest_files(items)))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200, 200, 200]
    assert sum(1 for _ in store.iter_objects()) == 200
    assert all(c.status == "ok" for c in (store.verify(o.digest) for o in store.iter_objects()))


def test_a_big_file_changed_while_stored_is_refused_and_not_named(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "SMALL_OBJECT", 1024)
    monkeypatch.setattr(ingest, "PACK_THRESHOLD", 1024)
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    (path, size), = _files(tmp_path / "src", [200_000])
    real_hash = ingest.hash_file

    def hash_then_touch(p: str | os.PathLike[str], s: int | None = None) -> str:
        digest = real_hash(p, s)
        with open(p, "ab") as fh:
            fh.write(b"more")
        return digest

    monkeypatch.setattr(ingest, "hash_file", hash_then_touch)
    with pytest.raises(ConflictError, match="changed while"):
        store.ingest_files([(path, size)])
    assert sum(1 for _ in store.iter_objects()) == 0 and store.backend.count_temp_files() == 0  # type: ignore[attr-defined]


def test_add_reads_new_files_once_and_later_adds_reuse_the_state_cache(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    d = tmp_path / "d"
    _files(d, [10, 20_000, 9 * 1024 * 1024])
    first = ws.data.add_detailed(d, "d")
    assert first.hashed_files == 3 and first.stored_files == 3 and not first.unchanged
    assert all(ws.objects.verify(f.digest).status == "ok" for f in ws.data.files("d@v1"))
    (d / "f0.bin").write_bytes(b"changed")
    second = ws.data.add_detailed(d, "d")
    assert second.hashed_files == 1 and second.stored_files == 1 and second.version.version == 2
    out = ws.data.checkout("d@v2", tmp_path / "out")
    assert (out / "f0.bin").read_bytes() == b"changed"
    assert (out / "f2.bin").read_bytes() == (d / "f2.bin").read_bytes()
    ws.close()


def test_an_add_of_many_files_leaves_the_hash_state_knowing_each_of_them(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    d = tmp_path / "d"
    _files(d, [100 + i for i in range(1200)], "f{i:04}.bin")
    first = ws.data.add_detailed(d, "d")
    assert first.hashed_files == 1200 and not first.unchanged
    status = ws.data.status(d, "d")
    assert status.hashed_files == 0 and not (status.added or status.removed or status.modified)
    (d / "f0007.bin").write_bytes(b"changed")
    second = ws.data.add_detailed(d, "d")
    assert second.hashed_files == 1 and second.version.version == 2
    assert ws.data.add_detailed(d, "d").hashed_files == 0  # and the tree fingerprint was recorded too
    ws.close()


def test_a_damaged_hash_state_cache_is_rebuilt_and_costs_only_rehashing(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    d = tmp_path / "d"
    _files(d, [10, 20_000])
    ws.data.add(d, "d")
    ws.close()
    state = tmp_path / "ws" / ".loopml" / "hash-state.db"
    state.write_bytes(b"this is not a database" * 100)  # as an OS crash could leave an unsynced file
    ws = Workspace.open(tmp_path / "ws")
    again = ws.data.add_detailed(d, "d")
    assert again.unchanged and again.hashed_files == 2  # rehashed, same version
    third = ws.data.add_detailed(d, "d")
    assert third.unchanged and third.hashed_files == 0  # the cache works again
    ws.close()


def test_add_of_an_unreadable_file_names_it_and_records_nothing(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.init(tmp_path / "ws")
    d = tmp_path / "d"
    _files(d, [10, 20])
    real_open = os.open

    def deny_f1(path: str, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("f1.bin"):  # as root, chmod 0 would not stop the read
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny_f1)
    with pytest.raises(DataInputError, match="f1.bin.*Permission denied"):
        ws.data.add_detailed(d, "d")
    assert ws.data.list_versions() == []
    monkeypatch.undo()
    assert ws.data.add_detailed(d, "d").version.version == 1
    ws.close()
