"""The hash state cache: (path, inode, size, mtime) -> BLAKE3 digest, in a small SQLite file.

An unchanged file is never hashed twice. The file lives in ``.loopml/`` and is
safe to share between processes (SQLite WAL, busy timeout); losing it only
costs rehashing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loopml.services.data.quick import TREE_SCHEMA
from loopml.services.data.scan import StatEntry
from loopml.stores.artifacts.hashing import hash_file

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS state (path TEXT PRIMARY KEY, inode INTEGER, size INTEGER, "
    "mtime_ns INTEGER, digest TEXT)"
)

__all__ = ["HashStateCache", "StatEntry"]


class HashStateCache:
    """Digests of files by stat identity; a miss is hashed (in parallel) and remembered.

    One connection serves the object's lifetime: SQLite checkpoints its WAL (and syncs the file)
    whenever the last connection closes, which per call cost more than the lookups themselves.
    """

    def __init__(self, db_path: Path | None) -> None:
        self.db_path = db_path
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def _connect(self) -> sqlite3.Connection | None:
        if self.db_path is None:
            return None
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        conn = None
        for attempt in range(2):
            try:
                conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                # Never synced: a killed process loses nothing (WAL), and what an OS crash could damage is
                # only a cache, rebuilt below; syncing it cost ~0.1 s per add of 10,000 files here.
                conn.execute("PRAGMA synchronous=OFF")
                conn.execute(_SCHEMA)
                conn.execute(TREE_SCHEMA)
                break
            except sqlite3.DatabaseError as exc:
                if conn is not None:
                    conn.close()
                    conn = None
                if attempt or ("malformed" not in str(exc) and "not a database" not in str(exc)):
                    return None  # a broken cache only costs rehashing
                for suffix in ("", "-wal", "-shm"):  # damaged: start again empty
                    with contextlib.suppress(OSError):
                        os.unlink(f"{self.db_path}{suffix}")
        if conn is None:
            return None
        self._conn, self._pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def lookup(self, entries: Sequence[StatEntry]) -> tuple[dict[str, str], list[StatEntry]]:
        """Digests known for unchanged entries (by abspath), and the entries that need hashing."""
        conn = self._connect()
        known: dict[str, tuple[int, int, int, str]] = {}
        if conn is not None:
            try:
                paths = [e.abspath for e in entries]
                for i in range(0, len(paths), 900):
                    chunk = paths[i:i + 900]
                    marks = ",".join("?" * len(chunk))
                    for row in conn.execute(
                        f"SELECT path, inode, size, mtime_ns, digest FROM state WHERE path IN ({marks})", chunk
                    ):
                        known[row[0]] = (row[1], row[2], row[3], row[4])
            except sqlite3.Error:
                known = {}
        out: dict[str, str] = {}
        todo: list[StatEntry] = []
        for e in entries:
            hit = known.get(e.abspath)
            if hit is not None and hit[:3] == (e.inode, e.size, e.mtime_ns):
                out[e.abspath] = hit[3]
            else:
                todo.append(e)
        return out, todo

    def remember(self, hashed: Sequence[tuple[StatEntry, str]]) -> None:
        """Record digests of files just hashed, under the stat identity they had when scanned."""
        if not hashed:
            return
        conn = self._connect()
        if conn is None:
            return
        try:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR REPLACE INTO state (path, inode, size, mtime_ns, digest) VALUES (?,?,?,?,?)",
                [(e.abspath, e.inode, e.size, e.mtime_ns, d) for e, d in hashed],
            )
            conn.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def digests(
        self,
        entries: Sequence[StatEntry],
        *,
        on_hashed: Callable[[int], None] | None = None,
        on_error: Callable[[StatEntry, OSError], Exception] | None = None,
    ) -> tuple[dict[str, str], int]:
        """Digest of every entry (by abspath) and how many files had to be hashed."""
        out, todo = self.lookup(entries)
        if todo:
            results: list[str] = [""] * len(todo)
            cursor = iter(range(len(todo)))  # shared by the workers; next() on it is atomic

            def work() -> None:
                # Big files parallelize inside blake3; small files across these few threads.
                for i in cursor:
                    e = todo[i]
                    try:
                        results[i] = hash_file(e.abspath, e.size)
                    except OSError as exc:
                        if on_error is not None:
                            raise on_error(e, exc) from exc
                        raise
                    if on_hashed is not None:
                        on_hashed(e.size)

            workers = max(1, min(4, (os.cpu_count() or 2) * 2, len(todo)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for f in [pool.submit(work) for _ in range(workers)]:
                    f.result()
            out.update((e.abspath, d) for e, d in zip(todo, results, strict=True))
            self.remember(list(zip(todo, results, strict=True)))
        return out, len(todo)

    def tree_content(self, root: str, fingerprint: str) -> str | None:
        """The content digest recorded for the working copy at ``root`` when its fingerprint was this."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            row = conn.execute("SELECT fingerprint, content_digest FROM tree_state WHERE root = ?",
                               (root,)).fetchone()
        except sqlite3.Error:
            row = None
        return row[1] if row is not None and row[0] == fingerprint else None

    def remember_tree(self, root: str, fingerprint: str, content_digest: str) -> None:
        """Record that the files at ``root`` with this fingerprint make this manifest (for quick status)."""
        conn = self._connect()
        if conn is None:
            return
        try:
            conn.execute("INSERT OR REPLACE INTO tree_state (root, fingerprint, content_digest) VALUES (?,?,?)",
                         (root, fingerprint, content_digest))
        except sqlite3.Error:
            pass
