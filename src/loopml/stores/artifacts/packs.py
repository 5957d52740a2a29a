"""Pack files for small objects in a local store: one file per many objects, an SQLite index to find them.

Creating and renaming one file per object costs more than the bytes themselves once objects are small
(tens of KB); a data set of 10,000 such files spends most of its add and pull doing that. Small objects
are therefore appended to pack files:

    <store>/packs/<id>.pack      the objects' bytes, back to back
    <store>/packs/index.sqlite   digest -> (pack, offset, length, added_at); and the packs themselves

A pack is written under ``tmp/``, renamed into ``packs/`` and only then indexed, in one transaction: an
object is visible exactly when its row is committed, so a killed writer leaves at most an unindexed file
(unknown to the index; removed by ``compact`` once older than its grace period) and never a row pointing at missing bytes.
Objects already indexed when a pack commits are cut out of it first, so bytes are stored once even when
two processes add the same data at the same moment.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import mmap
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKS_DIRNAME = "packs"
INDEX_NAME = "index.sqlite"
PACK_THRESHOLD = 1024 * 1024  # objects smaller than this are packed
PACK_TARGET = 64 * 1024 * 1024  # a pack is sealed once it holds this many bytes
COMMIT_TARGET = 512 * 1024 * 1024  # sealed packs are indexed together once they hold this many bytes
_QUERY_CHUNK = 500  # digests per IN (...) query
_ALIGN = 4096  # direct I/O writes whole blocks from aligned memory at aligned offsets
_STAGE_SIZE = 8 * 1024 * 1024  # a writer's staging buffer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packed (
    digest TEXT PRIMARY KEY,
    pack TEXT NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    added_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS packed_by_pack ON packed (pack);
CREATE TABLE IF NOT EXISTS packs (
    pack TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class PackedObject:
    digest: str
    pack: str
    offset: int
    length: int
    added_at: float


class PackIndex:
    """The packs of one local store. Thread-safe; reopens its connection after a fork."""

    def __init__(self, store_root: Path, tmp_dir: Path) -> None:
        self.dir = store_root / PACKS_DIRNAME
        self.tmp_dir = tmp_dir
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._commit_lock = -1  # a descriptor of this process (a lock inherited over fork would be shared)
        self._commit_lock_pid = 0

    # -- the index -------------------------------------------------------------

    def _db(self, *, create: bool) -> sqlite3.Connection | None:
        """The index connection; None when the store has no packs yet and ``create`` is false."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        path = self.dir / INDEX_NAME
        if not create and not path.exists():
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
        for attempt in itertools.count():
            # Switching a new file to WAL needs it to itself and does not wait for the busy timeout:
            # two processes creating the index at once retry here.
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt >= 600:
                    conn.close()
                    raise
                time.sleep(0.05)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        self._conn, self._pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            if self._commit_lock >= 0 and self._commit_lock_pid == os.getpid():
                os.close(self._commit_lock)
            self._commit_lock = -1

    @contextlib.contextmanager
    def _committing(self) -> Iterator[None]:
        """Committers queue on a file lock: the kernel wakes the next one at once, where SQLite's busy
        handler polls with growing sleeps (four workers committing at the end of an add lost up to
        0.4 s in them)."""
        if self._commit_lock < 0 or self._commit_lock_pid != os.getpid():
            self._commit_lock = os.open(self.dir / "commit.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._commit_lock_pid = os.getpid()
        try:
            fcntl.flock(self._commit_lock, fcntl.LOCK_EX)
            locked = True
        except OSError:  # a filesystem without flock (some FUSE mounts): SQLite's lock alone orders commits
            locked = False
        try:
            yield
        finally:
            if locked:
                fcntl.flock(self._commit_lock, fcntl.LOCK_UN)

    def lookup(self, digest: str) -> PackedObject | None:
        with self._lock:
            db = self._db(create=False)
            if db is None:
                return None
            row = db.execute("SELECT pack, offset, length, added_at FROM packed WHERE digest = ?",
                             (digest,)).fetchone()
        return PackedObject(digest, *row) if row is not None else None

    def present(self, digests: Sequence[str]) -> set[str]:
        """Which of ``digests`` are packed (batched queries)."""
        with self._lock:
            db = self._db(create=False)
            return set() if db is None else {r[0] for r in _select_in(db, "digest", digests)}

    def locate(self, digests: Sequence[str]) -> dict[str, PackedObject]:
        """Where each of ``digests`` that is packed lives (batched queries)."""
        with self._lock:
            db = self._db(create=False)
            rows = [] if db is None else list(_select_in(db, "digest, pack, offset, length, added_at", digests))
        return {r[0]: PackedObject(*r) for r in rows}

    def iter_objects(self) -> Iterator[PackedObject]:
        with self._lock:
            db = self._db(create=False)
            rows = [] if db is None else db.execute(
                "SELECT digest, pack, offset, length, added_at FROM packed ORDER BY pack, offset").fetchall()
        for r in rows:
            yield PackedObject(*r)

    def remove(self, digest: str) -> bool:
        """Forget one object (its bytes stay in the pack until ``compact``); True if it was packed."""
        with self._lock:
            db = self._db(create=False)
            if db is None:
                return False
            return db.execute("DELETE FROM packed WHERE digest = ?", (digest,)).rowcount > 0

    # -- reading ---------------------------------------------------------------

    def pack_path(self, pack: str) -> Path:
        return self.dir / f"{pack}.pack"

    def read(self, digest: str) -> bytes | None:
        """The object's bytes, or None if it is not packed. Survives a concurrent compaction."""
        for _ in range(3):
            obj = self.lookup(digest)
            if obj is None:
                return None
            try:
                fd = os.open(self.pack_path(obj.pack), os.O_RDONLY)
            except FileNotFoundError:
                continue  # compacted meanwhile: its new place is in the index now
            try:
                return os.pread(fd, obj.length, obj.offset)  # short if truncated: the hash check reports it
            finally:
                os.close(fd)
        return None

    # -- writing ---------------------------------------------------------------

    def writer(self) -> PackWriter:
        return PackWriter(self)

    def _commit(self, sealed: Sequence[tuple[Path, dict[str, tuple[int, int]]]]) -> set[str]:
        """Move finished packs into place and index their objects, in one transaction; returns those
        already indexed (cut out).

        One transaction for several packs: objects arrive in random digest order, so each commit
        rewrites most of the index's pages, and committing every pack on its own wrote several times
        more index pages than there were rows.
        """
        with self._lock:
            db = self._db(create=True)
            assert db is not None
            with self._committing():
                db.execute("BEGIN IMMEDIATE")  # SQLite's own lock still guards against other writers
                try:
                    dupes = {r[0] for r in _select_in(db, "digest", [d for _, e in sealed for d in e])}
                    now = time.time()
                    for tmp, entries in sealed:
                        if dupes and not dupes.isdisjoint(entries):
                            entries = _cut(tmp, entries, dupes)
                        if not entries:
                            continue
                        pack_id = uuid.uuid4().hex
                        os.replace(tmp, self.pack_path(pack_id))
                        db.execute("INSERT INTO packs (pack, size, created_at) VALUES (?, ?, ?)",
                                   (pack_id, sum(length for _, length in entries.values()), now))
                        db.executemany("INSERT INTO packed (digest, pack, offset, length, added_at) "
                                       "VALUES (?,?,?,?,?)",
                                       [(d, pack_id, off, length, now) for d, (off, length) in entries.items()])
                    db.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                    raise
        return dupes

    # -- upkeep ----------------------------------------------------------------

    def totals(self) -> tuple[int, int]:
        """(objects, bytes) indexed."""
        with self._lock:
            db = self._db(create=False)
            if db is None:
                return 0, 0
            n, size = db.execute("SELECT count(*), coalesce(sum(length), 0) FROM packed").fetchone()
        return int(n), int(size)

    def compact(self, *, grace_seconds: float = 3600.0) -> int:
        """Rewrite packs holding forgotten objects and drop unindexed ones; returns bytes freed on disk.

        A pack file the index does not know, younger than ``grace_seconds``, may belong to a writer
        that is about to index it, so it is left alone.
        """
        if not self.dir.is_dir():
            return 0
        freed = 0
        now = time.time()
        with self._lock:
            db = self._db(create=True)
            assert db is not None
            known = {p for (p,) in db.execute("SELECT pack FROM packs")}
            live = {p: int(b) for p, b in db.execute("SELECT pack, sum(length) FROM packed GROUP BY pack")}
        for entry in os.scandir(self.dir):
            if not entry.name.endswith(".pack"):
                continue
            pack = entry.name[:-len(".pack")]
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            if pack not in known:
                if now - st.st_mtime >= grace_seconds:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        freed += st.st_size
                continue
            if live.get(pack, 0) < st.st_size:
                freed += self._rewrite(pack, st.st_size)
        return freed

    def _rewrite(self, pack: str, old_size: int) -> int:
        """Copy a pack's indexed objects into a new pack, repoint them, delete the old one."""
        tmp = self.tmp_dir / f"{uuid.uuid4().hex}.pack.part"
        new_id = uuid.uuid4().hex
        with self._lock:
            db = self._db(create=True)
            assert db is not None
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute("SELECT digest, offset, length FROM packed WHERE pack = ? ORDER BY offset",
                                  (pack,)).fetchall()
                moved: list[tuple[str, int, str]] = []
                new_size = 0
                db.execute("DELETE FROM packs WHERE pack = ?", (pack,))
                if rows:
                    with open(self.pack_path(pack), "rb") as src, open(tmp, "wb") as out:
                        for digest, off, length in rows:
                            src.seek(off)
                            out.write(src.read(length))
                            moved.append((new_id, new_size, digest))
                            new_size += length
                    os.replace(tmp, self.pack_path(new_id))
                    db.execute("INSERT INTO packs (pack, size, created_at) VALUES (?, ?, ?)",
                               (new_id, new_size, time.time()))
                    db.executemany("UPDATE packed SET pack = ?, offset = ? WHERE digest = ?", moved)
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.pack_path(pack))
        return old_size - new_size


def _select_in(db: sqlite3.Connection, columns: str, digests: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Rows of ``packed`` for ``digests``, one IN (...) query per ``_QUERY_CHUNK``."""
    for i in range(0, len(digests), _QUERY_CHUNK):
        chunk = list(digests[i:i + _QUERY_CHUNK])
        marks = ",".join("?" * len(chunk))
        yield from db.execute(f"SELECT {columns} FROM packed WHERE digest IN ({marks})", chunk)


def _cut(tmp: Path, entries: dict[str, tuple[int, int]], drop: set[str]) -> dict[str, tuple[int, int]]:
    """Rewrite the pack at ``tmp`` without the objects in ``drop``; returns the new offsets."""
    keep = {d: v for d, v in entries.items() if d not in drop}
    if not keep:
        return {}
    out_path = tmp.with_name(tmp.name + ".cut")
    new: dict[str, tuple[int, int]] = {}
    with open(tmp, "rb") as src, open(out_path, "wb") as out:
        pos = 0
        for d, (off, length) in sorted(keep.items(), key=lambda kv: kv[1][0]):
            src.seek(off)
            out.write(src.read(length))
            new[d] = (pos, length)
            pos += length
    os.replace(out_path, tmp)
    return new


class PackWriter:
    """Appends objects to packs under ``tmp/``, sealing each at ``PACK_TARGET`` bytes; sealed packs are
    committed together every ``COMMIT_TARGET`` bytes and at close.

    Objects are gathered in a page-aligned staging buffer and written in large aligned blocks with
    O_DIRECT where the filesystem allows it: the bytes go to the disk instead of filling the page
    cache with new pages, which on a virtual machine whose memory is handed back to the host costs
    more, and less predictably, than the disk write. Not thread-safe: use one writer per thread.
    As a context manager, an exception discards the pack not yet committed; nothing of it becomes
    visible.
    """

    def __init__(self, index: PackIndex) -> None:
        self._index = index
        self._stage: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._fd = -1
        self._direct = False
        self._tmp: Path | None = None
        self._entries: dict[str, tuple[int, int]] = {}
        self._seen: set[str] = set()
        self._flushed = 0  # bytes of the current pack already written (a multiple of _ALIGN)
        self._pos = 0  # bytes waiting in the staging buffer
        self._sealed: list[tuple[Path, dict[str, tuple[int, int]]]] = []  # finished, not yet committed
        self._sealed_bytes = 0
        self.duplicates: set[str] = set()  # objects another writer indexed first (not stored by this one)

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add(self, digest: str, data: bytes | memoryview | bytearray) -> bool:
        """Append one object (its digest already checked by the caller); False if this writer already has it."""
        if digest in self._seen:
            return False
        with memoryview(data) as src:
            length = src.nbytes
            if length > _STAGE_SIZE - _ALIGN:
                raise ValueError(f"an object of {length} bytes is too big for a pack")
            if self._fd < 0:
                self._open()
            assert self._view is not None
            if self._pos + length > _STAGE_SIZE:
                self._write_staged(final=False)
            self._view[self._pos:self._pos + length] = src.cast("B")
        self._seen.add(digest)
        self._entries[digest] = (self._flushed + self._pos, length)
        self._pos += length
        if self._flushed + self._pos >= PACK_TARGET:
            self._seal()
            if self._sealed_bytes >= COMMIT_TARGET:
                self._commit_sealed()
        return True

    def _open(self) -> None:
        if self._stage is None:
            self._stage = mmap.mmap(-1, _STAGE_SIZE)  # page-aligned, as O_DIRECT needs
            self._view = memoryview(self._stage)
        self._index.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = self._index.tmp_dir / f"{os.getpid()}-{uuid.uuid4().hex}.pack.part"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        direct = getattr(os, "O_DIRECT", 0)
        try:
            self._fd = os.open(self._tmp, flags | direct, 0o644) if direct else -1
            self._direct = bool(direct)
        except OSError:  # a filesystem without direct I/O (tmpfs, some FUSE)
            self._fd = -1
        if self._fd < 0:
            self._fd = os.open(self._tmp, flags, 0o644)
            self._direct = False
        self._entries, self._flushed, self._pos = {}, 0, 0

    def _write_staged(self, *, final: bool) -> None:
        """Write the staged bytes: whole aligned blocks (the rest stays staged), or everything at the end."""
        view = self._view
        assert view is not None
        size = self._pos if final else self._pos - self._pos % _ALIGN
        if size == 0:
            return
        padded = -(-size // _ALIGN) * _ALIGN
        view[size:padded] = bytes(padded - size)  # direct I/O writes whole blocks; the file is cut back below
        done = 0
        while done < padded:
            try:
                done += os.pwrite(self._fd, view[done:padded], self._flushed + done)
            except OSError as exc:
                if not (self._direct and exc.errno == errno.EINVAL):
                    raise
                # This file refuses direct I/O after all: write through the page cache.
                fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~os.O_DIRECT)
                self._direct = False
        if final:
            os.ftruncate(self._fd, self._flushed + size)
            self._flushed += size
            self._pos = 0
        else:
            rest = self._pos - size
            view[:rest] = view[size:self._pos]
            self._flushed += size
            self._pos = rest

    def _seal(self) -> None:
        """Write what is staged and close the pack; it waits for the next commit."""
        self._write_staged(final=True)
        os.close(self._fd)
        self._fd = -1
        assert self._tmp is not None
        self._sealed.append((self._tmp, self._entries))
        self._sealed_bytes += self._flushed
        self._tmp, self._entries = None, {}

    def _commit_sealed(self) -> None:
        if not self._sealed:
            return
        try:
            self.duplicates |= self._index._commit(self._sealed)
        finally:
            for tmp, _ in self._sealed:  # renamed into place, cut to nothing, or left by an error
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            self._sealed, self._sealed_bytes = [], 0

    def _release(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._stage is not None:
            self._stage.close()
            self._stage = None

    def close(self) -> None:
        try:
            if self._fd >= 0:
                self._seal()
            self._commit_sealed()
        except BaseException:
            self.abort()
            raise
        finally:
            self._release()

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for tmp in [t for t, _ in self._sealed] + ([self._tmp] if self._tmp is not None else []):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._tmp, self._sealed, self._sealed_bytes = None, [], 0
        self._release()
