"""Pack files of the local object store: small objects stored together, found by every reader, reclaimed by gc."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from tests.helpers import random_files

from loopml.stores.artifacts.backends import LocalBackend
from loopml.stores.artifacts.cas import ContentStore
from loopml.stores.artifacts.hashing import hash_bytes
from loopml.stores.artifacts.packs import PACK_THRESHOLD
from loopml.workspace import Workspace


def _files(root: Path, sizes: list[int]) -> list[tuple[str, int]]:
    return random_files(root, sizes, "f{i:04}.bin")


def _pack_files(store_root: Path) -> list[Path]:
    return sorted((store_root / "packs").glob("*.pack"))


def test_small_files_go_into_packs_and_every_reader_finds_them(tmp_path: Path) -> None:
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    items = _files(tmp_path / "src", [0, 1, 500, 50_000, PACK_THRESHOLD - 1, PACK_THRESHOLD, 3 * 1024 * 1024])
    got = store.ingest_files(items)
    assert all(g.written for g in got)
    packed = [g.ref.digest for g in got if g.ref.size < PACK_THRESHOLD]
    own_file = [g.ref.digest for g in got if g.ref.size >= PACK_THRESHOLD]
    assert len(_pack_files(tmp_path / "objects")) == 1
    assert not [p for p in (tmp_path / "objects").rglob("*") if p.is_file() and p.name.startswith(packed[1][2:])]
    for (path, size), g in zip(items, got, strict=True):
        data = Path(path).read_bytes()
        assert g.ref == type(g.ref)(hash_bytes(data), size)
        assert store.has(g.ref.digest) and store.size(g.ref.digest) == size
        assert store.read_bytes(g.ref.digest) == data
        with store.open(g.ref.digest) as fh:
            assert fh.read() == data
        assert store.verify(g.ref.digest).status == "ok"
    assert all(store.local_path(d) is None for d in packed)
    assert all(store.local_path(d) is not None for d in own_file)
    assert store.missing([g.ref.digest for g in got] + ["0" * 64]) == {"0" * 64}
    digests = [g.ref.digest for g in got]
    assert store.sizes(digests) == {g.ref.digest: g.ref.size for g in got}
    runs = store.runs(digests, max_length=1 << 30)
    assert len(runs) == len(own_file) + 1  # the packed objects lie back to back: one read
    for run in runs:
        buf = bytearray(run.length)
        store.read_run(run, memoryview(buf))
        for d, offset, length in run.objects:
            assert bytes(buf[offset:offset + length]) == store.read_bytes(d)
    assert sorted(d for r in runs for d, _, _ in r.objects) == sorted(digests)
    assert len(store.runs(packed, max_length=3 * max(store.sizes(packed).values()))) >= len(packed) // 3
    listed = [o.digest for o in store.iter_objects()]
    assert sorted(listed) == sorted(g.ref.digest for g in got)  # each once
    # A packed object is always checked out as a copy, whatever link was asked for.
    for link in ("hardlink", "reflink", "auto", "copy"):
        dest = tmp_path / "out" / link
        assert store.export(packed[3], dest, link=link) == "copy"  # type: ignore[arg-type]
        assert dest.read_bytes() == store.read_bytes(packed[3])
    # Storing the same files again writes nothing new.
    assert not any(g.written for g in store.ingest_files(items))
    assert len(_pack_files(tmp_path / "objects")) == 1
    assert store.backend.count_temp_files() == 0  # type: ignore[attr-defined]


def test_equal_files_in_one_ingest_are_stored_once(tmp_path: Path) -> None:
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(20_000)
    items = []
    for i in range(50):
        (src / f"same{i}").write_bytes(payload)
        items.append((str(src / f"same{i}"), len(payload)))
    got = store.ingest_files(items, workers=4)
    assert sum(g.written for g in got) == 1
    assert sum(p.stat().st_size for p in _pack_files(tmp_path / "objects")) == len(payload)


def test_a_pack_committed_after_another_drops_the_objects_that_one_already_holds(tmp_path: Path) -> None:
    """Two writers racing on the same objects (two processes adding the same data): bytes are stored once."""
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    x, y, z = (os.urandom(n) for n in (1000, 2000, 3000))
    dx, dy, dz = (hash_bytes(b) for b in (x, y, z))
    first, second = store.pack_writer(), store.pack_writer()
    first.add(dx, x)
    first.add(dy, y)
    second.add(dy, y)
    second.add(dz, z)
    first.close()
    second.close()
    assert second.duplicates == {dy} and first.duplicates == set()
    assert sum(p.stat().st_size for p in _pack_files(tmp_path / "objects")) == len(x) + len(y) + len(z)
    assert [store.read_bytes(d) for d in (dx, dy, dz)] == [x, y, z]
    # A pack all of whose objects are already stored is not kept at all.
    third = store.pack_writer()
    third.add(dx, x)
    third.close()
    assert third.duplicates == {dx} and len(_pack_files(tmp_path / "objects")) == 2


def test_an_aborted_writer_leaves_nothing_visible_or_behind(tmp_path: Path) -> None:
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    data = os.urandom(5000)
    with pytest.raises(RuntimeError), store.pack_writer() as writer:
        writer.add(hash_bytes(data), data)
        raise RuntimeError("boom")
    assert not store.has(hash_bytes(data))
    assert _pack_files(tmp_path / "objects") == []
    assert store.backend.count_temp_files() == 0  # type: ignore[attr-defined]


def test_delete_then_compact_reclaims_packed_bytes(tmp_path: Path) -> None:
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    got = store.ingest_files(_files(tmp_path / "src", [10_000, 20_000, 30_000]))
    a, b, c = (g.ref.digest for g in got)
    keep = {a: store.read_bytes(a), c: store.read_bytes(c)}
    store.delete(b)
    assert not store.has(b) and store.missing([a, b, c]) == {b}
    assert store.compact() == 20_000
    [pack] = _pack_files(tmp_path / "objects")
    assert pack.stat().st_size == 40_000
    assert {d: store.read_bytes(d) for d in (a, c)} == keep
    assert all(store.verify(d).status == "ok" for d in (a, c))
    store.delete(a)
    store.delete(c)
    assert store.compact() == 40_000
    assert _pack_files(tmp_path / "objects") == [] and list(store.iter_objects()) == []


def test_runs_group_objects_lying_together_and_a_run_survives_its_pack_being_compacted(tmp_path: Path) -> None:
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    got = store.ingest_files(_files(tmp_path / "src", [10_000, 20_000, 30_000, 40_000]))
    a, b, c, d = (g.ref.digest for g in got)
    data = {x: store.read_bytes(x) for x in (a, b, c, d)}
    [run] = store.runs([a, c, d], max_length=1 << 20, max_gap=30_000)  # b's 20,000 bytes are a gap it spans
    assert run.length == 100_000 and {x for x, _, _ in run.objects} == {a, c, d}
    assert len(store.runs([a, c, d], max_length=1 << 20, max_gap=10_000)) == 2  # too wide a gap: two runs
    assert len(store.runs([a, b, c, d], max_length=50_000, max_gap=0)) == 3  # too long: cut
    store.delete(b)
    assert store.compact() == 20_000  # the pack is rewritten under a new name: the run's pack is gone
    buf = bytearray(run.length)
    store.read_run(run, memoryview(buf))
    assert {x: bytes(buf[off:off + n]) for x, off, n in run.objects} == {x: data[x] for x in (a, c, d)}


def test_an_unindexed_pack_is_removed_only_after_its_grace_period(tmp_path: Path) -> None:
    """A writer killed between moving its pack into place and indexing it leaves an invisible pack."""
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    store.ingest_files(_files(tmp_path / "src", [1000]))
    stray = tmp_path / "objects" / "packs" / "0123abcd.pack"
    stray.write_bytes(os.urandom(4096))
    assert store.compact(grace_seconds=3600) == 0 and stray.exists()
    assert store.compact(grace_seconds=0) == 4096 and not stray.exists()
    assert len(list(store.iter_objects())) == 1


def test_doctor_finds_a_corrupt_packed_object_and_a_lost_pack(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with Workspace.init(root) as ws:
        data = tmp_path / "d"
        data.mkdir()
        (data / "a.txt").write_bytes(b"alpha" * 100)
        (data / "b.txt").write_bytes(b"beta" * 100)
        ws.data.add(data, "docs")
        assert ws.doctor(verify=True).ok
        [pack] = _pack_files(root / ".loopml" / "objects")
        raw = bytearray(pack.read_bytes())
        raw[10] ^= 0xFF  # inside the first object
        pack.write_bytes(bytes(raw))
        report = ws.doctor(verify=True)
        assert not report.ok and len(report.corrupt) == 1
        pack.unlink()
        report = ws.doctor(verify=True)
        assert not report.ok and len(report.missing) == 2
        with pytest.raises(Exception, match="missing"):
            ws.data.checkout("docs", tmp_path / "out")


def test_gc_collects_unreferenced_packed_objects_after_grace_and_status_counts_them(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with Workspace.init(root) as ws:
        d = tmp_path / "d"
        _files(d, [3000, 4000, 5000])
        ws.data.add(d, "three")
        assert ws.status()["objects"] == 3 and ws.status()["object_bytes"] == 12_000
        # Objects no dataset references (as a crashed add leaves them): packed too.
        stray = ws.objects.ingest_files(_files(tmp_path / "stray", [6000, 7000]))
        assert ws.status()["objects"] == 5
        assert ws.data.gc(grace_seconds=3600) == (0, 0)  # too young
        assert ws.data.gc(dry_run=True, grace_seconds=0) == (2, 13_000)
        assert all(ws.objects.has(g.ref.digest) for g in stray)
        assert ws.data.gc(grace_seconds=0) == (2, 13_000)
        assert not any(ws.objects.has(g.ref.digest) for g in stray)
        assert sum(p.stat().st_size for p in _pack_files(root / ".loopml" / "objects")) == 12_000
        assert ws.status()["objects"] == 3
        assert ws.doctor(verify=True).ok
        out = ws.data.checkout("three", tmp_path / "out")
        assert sorted(p.read_bytes() for p in out.iterdir()) == sorted(p.read_bytes() for p in d.iterdir())


@pytest.mark.parametrize("direct_io", [True, False], ids=["direct-io", "page-cache"])
def test_many_workers_filling_many_packs_index_every_object_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   direct_io: bool) -> None:
    from loopml.stores.artifacts import packs

    monkeypatch.setattr(packs, "PACK_TARGET", 50_000)  # a pack is sealed every few objects
    if not direct_io:  # as on a platform or filesystem without O_DIRECT
        monkeypatch.delattr(os, "O_DIRECT")
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    items = _files(tmp_path / "src", [3000 + 17 * i for i in range(400)])
    got = store.ingest_files(items, workers=4)
    assert all(g.written for g in got)
    pack_files = _pack_files(tmp_path / "objects")
    assert len(pack_files) >= 20
    assert sum(p.stat().st_size for p in pack_files) == sum(size for _, size in items)
    for (path, _), g in zip(items, got, strict=True):
        assert store.read_bytes(g.ref.digest) == Path(path).read_bytes()
    assert store.backend.count_temp_files() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("fail", [False, True], ids=["committed", "aborted"])
def test_sealed_packs_become_visible_together_at_the_commit_or_not_at_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: bool) -> None:
    from loopml.stores.artifacts import packs

    monkeypatch.setattr(packs, "PACK_TARGET", 40_000)  # a pack is sealed every few objects …
    monkeypatch.setattr(packs, "COMMIT_TARGET", 200_000)  # … and about five are committed at a time
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    assert store.packs is not None
    blobs = [os.urandom(10_000 + i) for i in range(62)]
    digests = [hash_bytes(b) for b in blobs]
    with pytest.raises(RuntimeError) if fail else contextlib.nullcontext(), store.packs.writer() as writer:
        for i, (d, b) in enumerate(zip(digests, blobs, strict=True)):
            writer.add(d, b)
            if i == 2:  # the first pack is sealed, not yet committed: nothing is visible
                assert not store.packs.present(digests)
        visible_before_close = store.packs.present(digests)
        assert digests[0] in visible_before_close and len(visible_before_close) < len(digests)  # in batches
        if fail:
            raise RuntimeError("the caller failed")
    present = store.packs.present(digests)
    if fail:  # the batches committed before the failure stay; the rest is gone, files and all
        assert present == visible_before_close
    else:
        assert present == set(digests)
        assert [store.read_bytes(d) for d in digests] == blobs
    indexed = sum(o.length for o in store.packs.iter_objects())
    assert sum(p.stat().st_size for p in _pack_files(tmp_path / "objects")) == indexed
    assert store.backend.count_temp_files() == 0  # type: ignore[attr-defined]


def test_worker_processes_store_many_small_files_like_threads_do(tmp_path: Path) -> None:
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    sizes = [1000 + 13 * i for i in range(600)] + [2 * 1024 * 1024]  # the big one stays in this process
    items = _files(tmp_path / "src", sizes)
    items.append((items[5][0], items[5][1]))  # the same file twice: stored once
    seen: list[int] = []
    got = store.ingest_files(items, processes=2, advance=seen.append)
    assert sum(seen) == sum(size for _, size in items)  # progress arrives from the workers too
    assert sum(g.written for g in got) == len(sizes)
    assert len(_pack_files(tmp_path / "objects")) == 2  # one per worker process
    for (path, size), g in zip(items, got, strict=True):
        assert g.ref.size == size and store.read_bytes(g.ref.digest) == Path(path).read_bytes()
        assert g.stat.st_ino == os.stat(path).st_ino
    assert store.backend.count_temp_files() == 0  # type: ignore[attr-defined]
    again = store.ingest_files(items, processes=2)
    assert not any(g.written for g in again) and len(_pack_files(tmp_path / "objects")) == 2


def test_an_object_two_worker_processes_both_wrote_is_new_once_and_stored_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopml.stores.artifacts.packs import PackIndex

    # As when neither worker had committed when the other looked: both write the object, and the
    # second commit cuts its copy out. (CI once ran into this race; it made the object count as old.)
    monkeypatch.setattr(PackIndex, "present", lambda self, digests: set())
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    items = _files(tmp_path / "src", [1000 + 13 * i for i in range(300)])
    items.append(items[7])  # adjacent in size order, so the two copies go to different workers
    got = store.ingest_files(items, processes=2)
    assert sum(g.written for g in got) == 300
    assert sum(p.stat().st_size for p in _pack_files(tmp_path / "objects")) == sum(s for _, s in items[:300])
    again = store.ingest_files(items, processes=2)  # every copy is cut: all were stored by an earlier call
    assert not any(g.written for g in again)
    assert sum(p.stat().st_size for p in _pack_files(tmp_path / "objects")) == sum(s for _, s in items[:300])


def test_a_file_unreadable_in_a_worker_process_is_named_and_nothing_is_indexed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    items = _files(tmp_path / "src", [500] * 300)
    bad = items[150][0]
    real_open = os.open

    def deny(path: str, *args: object, **kwargs: object) -> int:
        if str(path) == bad:  # as root, chmod 0 would not stop the read
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny)

    class Unreadable(Exception):
        pass

    with pytest.raises(Unreadable, match="src/f0150.bin: Permission denied"):
        store.ingest_files(items, processes=2,
                           on_error=lambda path, exc: Unreadable(f"{path}: {exc.strerror}"))
    # The other worker's pack may be committed (unreferenced objects, as after any failed add); never a
    # temporary file, and every indexed object is whole.
    assert all(store.verify(o.digest).status == "ok" for o in store.iter_objects())
    assert store.backend.count_temp_files() == 0  # type: ignore[attr-defined]


def test_packs_commit_where_the_filesystem_refuses_flock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    def refuse(fd: int, op: int) -> None:
        raise OSError(37, "No locks available")  # ENOLCK, as on a FUSE mount without flock

    monkeypatch.setattr(fcntl, "flock", refuse)
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    items = _files(tmp_path / "src", [2000 + i for i in range(50)])
    got = store.ingest_files(items, workers=2)
    assert all(g.written for g in got)
    assert all(store.read_bytes(g.ref.digest) == Path(p).read_bytes() for (p, _), g in zip(items, got, strict=True))


def test_a_run_is_read_where_the_platform_lacks_preadv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ContentStore(LocalBackend(tmp_path / "objects"))
    got = store.ingest_files(_files(tmp_path / "src", [10_000, 20_000, 30_000]))
    digests = [g.ref.digest for g in got]
    monkeypatch.delattr(os, "preadv")
    [run] = store.runs(digests, max_length=1 << 20)
    buf = bytearray(run.length)
    store.read_run(run, memoryview(buf))
    assert {d: bytes(buf[off:off + n]) for d, off, n in run.objects} == {d: store.read_bytes(d) for d in digests}
