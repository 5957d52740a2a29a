"""Storing many local files at once: read each once, hash it, pack the small ones (see ``ContentStore.ingest_files``).

Small files cost mostly per-file interpreter work (open, read, hash, bookkeeping), which threads
share under one interpreter lock. With many of them, the work is split over forked worker
processes, each writing packs of its own and sending back what it stored; a process that has
other threads running (an interactive session, a server) never forks and uses threads only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import selectors
import struct
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from loopml.errors import ArtifactStoreError, ConflictError
from loopml.parallel import fork_is_safe, usable_cpus
from loopml.stores.artifacts.backends import LocalBackend, copy_file
from loopml.stores.artifacts.cas import FileStamp, Ingested, ObjectRef
from loopml.stores.artifacts.hashing import hash_bytes, hash_file, object_key
from loopml.stores.artifacts.packs import PACK_THRESHOLD, PackIndex, PackWriter

if TYPE_CHECKING:
    from loopml.stores.artifacts.cas import ContentStore

# Below this a file is read into memory whole, hashed and written; above it the kernel copies it.
SMALL_OBJECT = 8 * 1024 * 1024
GROUP = 16  # small files a worker reads and hashes before asking the index which are new
FORK_MIN_FILES = 2000  # fewer small files than this are not worth forking for
_FRAME = struct.Struct("<Q")


class _Unreadable(Exception):
    """In a worker process: a file could not be read (the parent names it, as ``on_error`` says)."""

    def __init__(self, path: str, exc: OSError) -> None:
        super().__init__(path)
        self.path, self.exc = path, exc


class Ingest:
    """One ``ingest_files`` call: its inputs, its results, and the workers that fill them."""

    def __init__(self, store: ContentStore, items: Sequence[tuple[str, int]],
                 advance: Callable[[int], None] | None,
                 on_error: Callable[[str, OSError], Exception] | None) -> None:
        backend, packs = store.backend, store.packs
        assert isinstance(backend, LocalBackend) and packs is not None
        self.backend, self.packs = backend, packs
        self.items, self.advance, self.on_error = items, advance, on_error
        self.results: list[Ingested | None] = [None] * len(items)
        self.duplicates: Counter[str] = Counter()  # per object: how many of this call's writers had it cut
        self._taken: set[str] = set()  # objects this call stores (the first worker to take one writes it)
        self._taken_lock = threading.Lock()
        self._root = str(backend.root)
        # Fan-out directories holding object files: a small object whose directory is absent has no file
        # of its own, and the common case (a store of packs) skips a stat per file.
        self._fans = {e.name for e in os.scandir(self._root) if len(e.name) == 2}

    # -- one worker ------------------------------------------------------------

    def first_taker(self, digests: Iterable[str]) -> list[bool]:
        with self._taken_lock:
            out = [d not in self._taken for d in digests]
            self._taken.update(digests)
        return out

    def read(self, path: str, size: int, buf: bytearray) -> tuple[int, os.stat_result]:
        """Read a file's scanned size into ``buf``; a file that grew or shrank meanwhile shows in the stat after."""
        if len(buf) < size:
            buf.extend(bytes(size - len(buf)))
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                return _read_into(fd, memoryview(buf)[:size]), os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            if self.on_error is not None:
                raise self.on_error(path, exc) from exc
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, path) from exc
            raise

    def work(self, ids: Iterator[int], writer: PackWriter,
             done: Callable[[list[int]], None] | None = None) -> None:
        """Store the files ``ids`` yields (shared iterators are fine: next() on them is atomic)."""
        items, results, packs, root, fans = self.items, self.results, self.packs, self._root, self._fans
        bufs = [bytearray(64 * 1024) for _ in range(GROUP)]
        while batch := list(itertools.islice(ids, GROUP)):
            # Small files are read and hashed a group at a time so that whether their objects are
            # already stored is one index query per group, not one per file.
            group: list[tuple[int, int, os.stat_result, str]] = []
            for i in batch:
                path, size = items[i]
                if size >= PACK_THRESHOLD:
                    results[i] = self.store_unpacked(path, size, bufs[0])
                    continue
                buf = bufs[len(group)]
                n, st = self.read(path, size, buf)
                group.append((i, n, st, hash_bytes(memoryview(buf)[:n])))
            if group:
                digests = [g[3] for g in group]
                firsts = self.first_taker(digests)
                stored = packs.present(digests)
                for slot, ((i, n, st, digest), first) in enumerate(zip(group, firsts, strict=True)):
                    new = first and digest not in stored and not (
                        digest[:2] in fans and os.path.exists(f"{root}/{object_key(digest)}"))
                    if new:
                        writer.add(digest, memoryview(bufs[slot])[:n])
                    results[i] = Ingested(ObjectRef(digest, n), new, FileStamp.of(st))
            if done is not None:
                done(batch)
            elif self.advance is not None:
                self.advance(sum(items[i][1] for i in batch))

    def store_unpacked(self, path: str, size: int, buf: bytearray) -> Ingested:
        """One file too big to pack, stored as an object file of its own."""
        if size >= SMALL_OBJECT:
            return self.store_big(path, size)
        n, st = self.read(path, size, buf)
        with memoryview(buf)[:n] as data:
            digest = hash_bytes(data)
            written = self.first_taker([digest])[0] and self.backend.put_new_bytes(object_key(digest), data)
        return Ingested(ObjectRef(digest, n), written, FileStamp.of(st))

    def store_big(self, path: str, size: int) -> Ingested:
        """Copied by the kernel while BLAKE3 hashes the page cache; refused, never named, if it changed meanwhile."""
        backend = self.backend
        before = os.stat(path)
        tmp = backend.tmp_path()
        try:
            with ThreadPoolExecutor(max_workers=1) as copier:
                copied = copier.submit(copy_file, path, tmp)  # the bytes stay in the kernel
                digest = hash_file(path, size)  # meanwhile, BLAKE3 over the page cache, multi-threaded
                copied.result()
            after = os.stat(path)
            if (before.st_ino, before.st_size, before.st_mtime_ns) != (after.st_ino, after.st_size, after.st_mtime_ns):
                # The copy and the hash may have seen different bytes: never name an object wrongly.
                raise ConflictError(f"The file {path!r} changed while it was being stored.",
                                    hint="Run the add again when nothing is writing to it.")
            key = object_key(digest)
            written = not backend.exists(key)
            if written:
                backend.commit_tmp(tmp, key)
        finally:
            tmp.unlink(missing_ok=True)
        return Ingested(ObjectRef(digest, after.st_size), written, FileStamp.of(after))

    def outcome(self) -> list[Ingested]:
        """The results, each object counted as new to this call at most once.

        Worker processes do not share which objects they took, so two of them may write the same one:
        each writer whose copy was cut at commit counts once in ``duplicates``. An object stays new if
        fewer of its writers were cut than wrote it (one of this call's copies was kept). Two threads
        storing equal big files wrote one object (the rename made them one).
        """
        cuts = self.duplicates.copy()
        out: list[Ingested] = []
        first: set[str] = set()
        for r in self.results:
            assert r is not None
            digest = r.ref.digest
            if r.written and (digest in first or cuts[digest] > 0):
                if digest not in first:
                    cuts[digest] -= 1
                r = Ingested(r.ref, False, r.stat)
            if r.written:
                first.add(digest)
            out.append(r)
        return out

    # -- running ---------------------------------------------------------------

    def run_threads(self, ids: Sequence[int], n: int) -> None:
        cursor = iter(ids)
        pack_writers = PackWritersOf(self.packs, n)
        with pack_writers as writers:
            if n == 1:
                self.work(cursor, writers[0])
            else:
                with ThreadPoolExecutor(max_workers=n) as pool:
                    for f in [pool.submit(self.work, cursor, w) for w in writers]:
                        f.result()
        self.duplicates.update(pack_writers.duplicates)

    def run_forked(self, ids: Sequence[int], processes: int, meanwhile: Callable[[], None] | None) -> None:
        """Split ``ids`` (small files only) over forked processes; ``meanwhile`` runs here while they work."""
        shares = [list(ids[k::processes]) for k in range(processes)]
        children: list[tuple[int, int]] = []  # (pid, read end)
        try:
            for share in shares:
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:  # the child: never returns
                    os.close(r)
                    self._child(share, w)
                os.close(w)
                children.append((pid, r))
            failure: list[BaseException] = []
            reader = threading.Thread(target=self._collect, args=([r for _, r in children], failure),
                                      name="loopml-ingest-collect", daemon=True)
            reader.start()
            if meanwhile is not None:
                meanwhile()
            reader.join()
        finally:
            statuses = [os.waitpid(pid, 0)[1] for pid, _ in children]
        if failure:
            raise failure[0]
        if any(statuses):
            raise ArtifactStoreError("A worker process storing files ended abnormally; nothing was recorded.",
                                     hint="Run the command again; `loopml doctor` checks the store.")

    def _child(self, share: list[int], w: int) -> None:
        code = 0
        out = None
        try:
            _die_with_parent()
            out = os.fdopen(w, "wb", buffering=1024 * 1024)
            self.on_error = _Unreadable  # reported to the parent, which names the file as its caller asked

            def done(batch: list[int]) -> None:
                # Plain tuples: pickling 10,000 dataclasses cost the parent ~0.1 s of CPU to unpickle.
                rows = []
                for i in batch:
                    r = self.results[i]
                    assert r is not None
                    rows.append((i, r.ref.digest, r.ref.size, r.written, *r.stat))
                _send(out, ("done", rows))

            pack_writers = PackWritersOf(self.packs, 1)
            with pack_writers as writers:
                self.work(iter(share), writers[0], done)
            _send(out, ("duplicates", pack_writers.duplicates))
            out.close()
        except _Unreadable as exc:
            code = 1
            with contextlib.suppress(Exception):
                _send(out, ("unreadable", (exc.path, exc.exc.errno, exc.exc.strerror)))
                out.close()  # type: ignore[union-attr]
        except BaseException:
            code = 2
            with contextlib.suppress(Exception):
                _send(out, ("error", traceback.format_exc()))
                out.close()  # type: ignore[union-attr]
        finally:
            os._exit(code)

    def _collect(self, fds: list[int], failure: list[BaseException]) -> None:
        """Read every child's messages until each closes its pipe (a thread, so that no child blocks)."""
        buffers = {fd: bytearray() for fd in fds}
        with selectors.DefaultSelector() as sel:
            for fd in fds:
                sel.register(fd, selectors.EVENT_READ)
            open_fds = set(fds)
            while open_fds:
                for key, _ in sel.select():
                    fd = int(key.fd)
                    chunk = os.read(fd, 1024 * 1024)
                    if not chunk:
                        sel.unregister(fd)
                        os.close(fd)
                        open_fds.discard(fd)
                        continue
                    buf = buffers[fd]
                    buf += chunk
                    while len(buf) >= _FRAME.size:
                        (length,) = _FRAME.unpack_from(buf)
                        if len(buf) < _FRAME.size + length:
                            break
                        kind, value = pickle.loads(bytes(buf[_FRAME.size:_FRAME.size + length]))
                        del buf[:_FRAME.size + length]
                        try:
                            self._take(kind, value)
                        except BaseException as exc:
                            if not failure:
                                failure.append(exc)

    def _take(self, kind: str, value: object) -> None:
        if kind == "done":
            assert isinstance(value, list)
            results = self.results
            for i, digest, size, written, *stamp in value:
                results[i] = Ingested(ObjectRef(digest, size), written, FileStamp(*stamp))
            if self.advance is not None:
                self.advance(sum(self.items[v[0]][1] for v in value))
        elif kind == "duplicates":
            assert isinstance(value, Counter)
            self.duplicates.update(value)
        elif kind == "unreadable":
            assert isinstance(value, tuple)
            path, code, message = value
            exc = OSError(code, message, path)
            raise (self.on_error(path, exc) if self.on_error is not None else exc)
        else:
            raise ArtifactStoreError(f"A worker process storing files failed:\n{value}")


class PackWritersOf:
    """``n`` pack writers (one per worker: a writer is not shared), closed together; their duplicates merged."""

    def __init__(self, packs: PackIndex, n: int) -> None:
        self._writers = [packs.writer() for _ in range(n)]
        self.duplicates: Counter[str] = Counter()  # an object counts once per writer that had it cut

    def __enter__(self) -> list[PackWriter]:
        return self._writers

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        error: BaseException | None = None
        for w in self._writers:
            try:
                w.__exit__(exc_type, exc, tb)
            except BaseException as e:
                error = error or e
            self.duplicates.update(w.duplicates)
        if error is not None:
            raise error


def can_fork(small_files: int, processes: int | None) -> int:
    """How many processes to fork for ``small_files`` (0: use threads here)."""
    if processes is not None:
        return processes if hasattr(os, "fork") else 0
    cpus = usable_cpus()
    if small_files < FORK_MIN_FILES or cpus < 2 or not fork_is_safe():
        return 0
    # Two per CPU: a worker waits on its reads and direct writes part of the time (10,000 x 50 KB on
    # 2 CPUs, median of 4: 2 workers 0.81 s, 3 workers 0.73 s, 4 workers 0.68 s).
    return min(2 * cpus, 4)


def _read_into(fd: int, view: memoryview) -> int:
    """Fill ``view`` from file descriptor ``fd`` until it is full or the file ends; returns the bytes read."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if not n:
            break
        got += n
    return got


def _send(out: object, message: tuple[str, object]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_FRAME.pack(len(data)) + data)  # type: ignore[attr-defined]


def _die_with_parent() -> None:
    """Linux: a worker is killed when the process that forked it dies (kill -9 included)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
