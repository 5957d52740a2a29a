"""The content-addressed object store: hashing, de-duplication and integrity, once, over any backend."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, NamedTuple

from loopml.errors import (
    CorruptObjectError,
    InvalidParameterError,
    ObjectNotFoundError,
)
from loopml.stores.artifacts.backends import ByteBackend, LocalBackend, copy_file
from loopml.stores.artifacts.hashing import (
    CHUNK_SIZE,
    digest_from_key,
    hash_bytes,
    hash_file,
    is_digest,
    new_hasher,
    object_key,
)
from loopml.stores.artifacts.packs import PACK_THRESHOLD, PackedObject, PackIndex, PackWriter

LinkMode = Literal["copy", "hardlink", "reflink", "auto"]
LINK_MODES: tuple[str, ...] = ("copy", "hardlink", "reflink", "auto")
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A stored object: its BLAKE3 hex digest and size in bytes."""

    digest: str
    size: int


class FileStamp(NamedTuple):
    """The part of a file's stat that tells whether it changed: named as in ``os.stat_result``."""

    st_ino: int
    st_size: int
    st_mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class ObjectRun:
    """Objects that one read fetches: lying (nearly) back to back in one pack, or one object of its own."""

    pack: str | None  # None: a single object that is not packed
    start: int  # offset of the run in its pack
    length: int
    objects: tuple[tuple[str, int, int], ...]  # (digest, offset within the run, length)


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """``os.preadv`` into ``view`` where the platform has it, else ``os.pread`` and a copy."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, len(view), offset)
    view[:len(data)] = data
    return len(data)


def _pack_run(pack: str, objs: Sequence[PackedObject]) -> ObjectRun:
    start = objs[0].offset
    return ObjectRun(pack, start, objs[-1].offset + objs[-1].length - start,
                     tuple((o.digest, o.offset - start, o.length) for o in objs))


@dataclass(frozen=True, slots=True)
class Ingested:
    """One file stored by ``ContentStore.ingest_files``: its object, whether it was new, its stat after reading."""

    ref: ObjectRef
    written: bool
    stat: FileStamp


@dataclass(frozen=True, slots=True)
class ObjectCheck:
    digest: str
    status: Literal["ok", "corrupt", "missing"]
    actual: str | None = None


def _check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidParameterError("digest", "the artifact store", "a 64-character BLAKE3 hex digest", digest)
    return digest


def try_reflink(src: Path, dest: Path) -> bool:
    """Copy-on-write clone where the filesystem supports it (btrfs, xfs); False otherwise."""
    try:
        import fcntl

        ficlone = 0x40049409
        with src.open("rb") as s, dest.open("wb") as d:
            fcntl.ioctl(d.fileno(), ficlone, s.fileno())
        return True
    except (OSError, ImportError):
        with contextlib.suppress(OSError):
            dest.unlink()
        return False


class ContentStore:
    """Objects named by the BLAKE3 hash of their bytes.

    Storing the same bytes twice stores them once. Every write lands under its
    final name atomically, so a killed writer leaves at most a temporary file.
    On a local store, bulk writes (``ingest_files``, ``pack_writer``) put objects
    under ``PACK_THRESHOLD`` bytes into pack files (see ``packs``); every reader
    here finds an object wherever it lives.
    """

    def __init__(self, backend: ByteBackend, staging_dir: Path | None = None) -> None:
        self.backend = backend
        self._staging_dir = staging_dir
        self.packs = PackIndex(backend.root, backend.tmp_dir) if isinstance(backend, LocalBackend) else None

    def close(self) -> None:
        """Release the pack index's connection (reopened on next use)."""
        if self.packs is not None:
            self.packs.close()

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def is_local(self) -> bool:
        return isinstance(self.backend, LocalBackend)

    def ensure(self) -> None:
        """Create the store's location if needed; raise ArtifactStoreError naming it if impossible."""
        ensure = getattr(self.backend, "ensure", None)
        if ensure is not None:
            ensure()

    # -- writing ---------------------------------------------------------------

    def put_bytes(self, data: bytes | memoryview, *, expect: str | None = None) -> ObjectRef:
        """Store bytes; with ``expect``, bytes that do not hash to it raise CorruptObjectError, unstored."""
        digest = hash_bytes(data)
        if expect is not None and digest != expect:
            raise CorruptObjectError(f"Received bytes for object {expect} hash to {digest}.",
                                     hint="The source copy is damaged; fetch it from another copy.")
        key = object_key(digest)
        if self.packs is not None and self.packs.lookup(digest) is not None:
            pass  # already packed
        elif isinstance(self.backend, LocalBackend):
            self.backend.put_new_bytes(key, data)
        elif not self.backend.exists(key):
            self.backend.put_chunks(key, [bytes(data)])
        return ObjectRef(digest, len(data))

    def put_file(self, path: str | os.PathLike[str], *, digest: str | None = None) -> ObjectRef:
        """Store a file; ``digest`` may be passed when already known (e.g. from a state cache).

        On a local store the bytes are hashed while they are copied, so the name
        always matches the bytes written even if the source changes meanwhile.
        """
        src = Path(path)
        try:
            size = src.stat().st_size
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(f"Cannot store {str(src)!r}: no such file.") from exc
        if digest is not None and self.has(digest):
            return ObjectRef(digest, size)
        if isinstance(self.backend, LocalBackend):
            return self._put_local(src, size)
        digest = digest or hash_file(src, size)
        key = object_key(digest)
        if not self.backend.exists(key):
            self.backend.put_file(key, src)
        return ObjectRef(digest, size)

    def _put_local(self, src: Path, size: int) -> ObjectRef:
        backend = self.backend
        assert isinstance(backend, LocalBackend)
        tmp = backend.tmp_path()
        hasher = new_hasher(size)
        written = 0
        try:
            with src.open("rb") as fin, tmp.open("wb") as fout:
                while chunk := fin.read(CHUNK_SIZE):
                    hasher.update(chunk)
                    fout.write(chunk)
                    written += len(chunk)
            digest = hasher.hexdigest()
            if self.has(digest):
                tmp.unlink()
            else:
                backend.commit_tmp(tmp, object_key(digest))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return ObjectRef(digest, written)

    def pack_writer(self) -> PackWriter:
        """A writer that appends small objects to pack files (local stores only); use it as a context manager."""
        if self.packs is None:
            raise TypeError("pack files need a local backend")
        self.ensure()
        return self.packs.writer()

    def ingest_files(
        self,
        items: Sequence[tuple[str, int]],
        *,
        advance: Progress | None = None,
        on_error: Callable[[str, OSError], Exception] | None = None,
        workers: int | None = None,
        processes: int | None = None,
        meanwhile: Callable[[], object] | None = None,
    ) -> list[Ingested]:
        """Hash and store many local files, reading each once; results in the order of ``items``.

        ``items`` are (path, size as scanned). A file below ``ingest.SMALL_OBJECT`` bytes is read
        into a buffer each worker reuses, hashed, and written only if its object is new:
        appended to a pack file below ``PACK_THRESHOLD``, else as an object file of its own.
        A bigger one is copied by the kernel while it is hashed from the page cache, and
        renamed into place after. Each result carries the file's stat taken after it was
        read, so the caller can refuse a file that changed meanwhile. Nothing becomes
        visible before the packs commit at the end (an error discards them). Needs a
        local backend.

        ``workers`` fixes the number of threads (and forbids worker processes);
        ``processes`` forces that many forked worker processes for the small files (0:
        none); by default they are used for many small files when nothing else runs
        threads here (see ``ingest``). ``meanwhile`` is called in this thread while the
        workers run (e.g. to open a database).
        """
        from loopml.stores.artifacts.ingest import Ingest, can_fork

        backend = self.backend
        if not isinstance(backend, LocalBackend) or self.packs is None:
            raise TypeError("ingest_files needs a local backend")
        backend.ensure()
        job = Ingest(self, items, advance, on_error)
        order = sorted(range(len(items)), key=lambda i: -items[i][1])  # big files first
        small = [i for i in order if items[i][1] < PACK_THRESHOLD]
        forks = 0 if workers is not None else can_fork(len(small), processes)
        if forks:
            def here() -> None:  # the big files, on threads here, while the processes store the small ones
                job.run_threads([i for i in order if items[i][1] >= PACK_THRESHOLD], 2)
                if meanwhile is not None:
                    meanwhile()

            job.run_forked(small, forks, here)
        else:
            n = workers or max(1, min(4, (os.cpu_count() or 2) * 2, len(items)))
            if meanwhile is None:
                job.run_threads(order, n)
            else:  # e.g. a big file: the kernel copies it and BLAKE3 hashes it, neither holding the GIL
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="loopml-ingest") as pool:
                    running = pool.submit(job.run_threads, order, n)
                    try:
                        meanwhile()
                    finally:
                        running.result()
        return job.outcome()

    def put_stream(self, chunks: Iterable[bytes]) -> ObjectRef:
        """Store a stream whose hash is not known in advance, never holding it whole in memory."""
        if isinstance(self.backend, LocalBackend):
            tmp = self.backend.tmp_path()
        else:
            fd, name = tempfile.mkstemp(prefix="loopml-", suffix=".part", dir=self._staging_dir)
            os.close(fd)
            tmp = Path(name)
        hasher = new_hasher()
        size = 0
        try:
            with tmp.open("wb") as fout:
                for chunk in chunks:
                    hasher.update(chunk)
                    fout.write(chunk)
                    size += len(chunk)
            digest = hasher.hexdigest()
            key = object_key(digest)
            if self.has(digest):
                tmp.unlink()
            elif isinstance(self.backend, LocalBackend):
                self.backend.commit_tmp(tmp, key)
            else:
                self.backend.put_file(key, tmp)
        finally:
            tmp.unlink(missing_ok=True)
        return ObjectRef(digest, size)

    # -- reading ---------------------------------------------------------------

    def has(self, digest: str) -> bool:
        key = object_key(_check_digest(digest))
        return self.backend.exists(key) or (self.packs is not None and self.packs.lookup(digest) is not None)

    def missing(self, digests: Sequence[str]) -> set[str]:
        """Which of ``digests`` are not stored (batched: one index query per 500, one check for the rest)."""
        for d in digests:
            _check_digest(d)
        packed = self.packs.present(digests) if self.packs is not None else set()
        keys = {object_key(d): d for d in digests if d not in packed}
        present = self.backend.exists_many(list(keys))
        return {d for k, d in keys.items() if k not in present}

    def open(self, digest: str) -> IO[bytes]:
        try:
            return self.backend.open_read(object_key(_check_digest(digest)))
        except ObjectNotFoundError:
            data = self.packs.read(digest) if self.packs is not None else None
            if data is None:
                raise
            return io.BytesIO(data)

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as fh:
            return fh.read()

    def size(self, digest: str) -> int:
        try:
            return self.backend.size(object_key(_check_digest(digest)))
        except ObjectNotFoundError:
            obj = self.packs.lookup(digest) if self.packs is not None else None
            if obj is None:
                raise
            return obj.length

    def sizes(self, digests: Sequence[str]) -> dict[str, int]:
        """The size of each object (packed ones from one index query per 500)."""
        out = {d: o.length for d, o in self.packs.locate(digests).items()} if self.packs is not None else {}
        for d in digests:
            if d not in out:
                out[d] = self.size(d)
        return out

    def runs(self, digests: Sequence[str], *, max_length: int, max_gap: int = 64 * 1024) -> list[ObjectRun]:
        """The objects grouped into runs that one read each fetches, in file order (not the order given).

        Packed objects that lie back to back in a pack (gaps of at most ``max_gap`` bytes, a run of
        at most ``max_length`` bytes) form one run; any other object is a run of its own.
        """
        located = self.packs.locate(digests) if self.packs is not None else {}
        out: list[ObjectRun] = []
        for d in digests:
            if d not in located:
                size = self.size(d)
                out.append(ObjectRun(None, 0, size, ((d, 0, size),)))
        by_pack: dict[str, list[PackedObject]] = {}
        for obj in located.values():
            by_pack.setdefault(obj.pack, []).append(obj)
        for pack, objs in by_pack.items():
            objs.sort(key=lambda o: o.offset)
            run: list[PackedObject] = []
            for obj in objs:
                if run and (obj.offset - (run[-1].offset + run[-1].length) > max_gap
                            or obj.offset + obj.length - run[0].offset > max_length):
                    out.append(_pack_run(pack, run))
                    run = []
                run.append(obj)
            out.append(_pack_run(pack, run))
        return out

    def read_run(self, run: ObjectRun, into: memoryview) -> None:
        """Fill ``into`` (``run.length`` bytes) with the run's objects at their offsets, with one read for a
        packed run; the bytes between objects are unspecified. Survives a concurrent compaction."""
        if run.pack is not None:
            assert self.packs is not None
            try:
                fd = os.open(self.packs.pack_path(run.pack), os.O_RDONLY)
            except FileNotFoundError:  # compacted meanwhile: one at a time, through the index again
                fd = -1
            if fd >= 0:
                try:
                    got = 0
                    while got < run.length:
                        n = _pread_into(fd, into[got:run.length], run.start + got)
                        if n == 0:
                            break  # a truncated pack: each object below reports what it lacks
                        got += n
                finally:
                    os.close(fd)
                if got == run.length:
                    return
        for d, offset, length in run.objects:
            data = self.read_bytes(d)
            if len(data) != length:
                raise CorruptObjectError(f"Object {d} is damaged in the local store ({len(data)} of {length} bytes).",
                                         hint="Run `loopml doctor --verify`.")
            into[offset:offset + length] = data

    def local_path(self, digest: str) -> Path | None:
        """The object's own file on a local store; None for a packed object or a remote store."""
        path = self.backend.local_path(object_key(_check_digest(digest)))
        if path is not None and self.packs is not None and not path.exists() and self.packs.lookup(digest):
            return None
        return path

    def export(self, digest: str, dest: str | os.PathLike[str], *, link: LinkMode = "copy") -> str:
        """Write an object to ``dest``; returns the link mode actually used.

        ``auto`` tries reflink, then copy: a hardlink would let an edit of the
        checked-out file corrupt the store, so it is used only when asked for.
        """
        if link not in LINK_MODES:
            raise InvalidParameterError("link", "export", f"one of {LINK_MODES}", link)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = self.local_path(digest)
        if src is None and self.packs is not None:  # packed: always a copy of its bytes
            data = self.packs.read(digest)
            if data is None:
                raise ObjectNotFoundError(f"Object {digest} is missing from the artifact store {self.url!r}.")
            tmp = dest.with_name(f".{dest.name}.loopml.part")
            try:
                tmp.write_bytes(data)
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
            return "copy"
        if src is not None and not src.exists():
            raise ObjectNotFoundError(
                f"Object {digest} is missing from the artifact store {self.url!r}.",
                hint="Pull it from a remote or run `loopml doctor --verify`.",
            )
        tmp = dest.with_name(f".{dest.name}.loopml.part")
        tmp.unlink(missing_ok=True)
        try:
            if src is not None and link in ("reflink", "auto") and try_reflink(src, tmp):
                os.replace(tmp, dest)
                return "reflink"
            if src is not None and link == "hardlink":
                try:
                    os.link(src, tmp)
                    os.replace(tmp, dest)
                    return "hardlink"
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
            if src is not None:
                copy_file(src, tmp)
                os.replace(tmp, dest)
            else:
                self.backend.get_file(object_key(digest), dest)
        finally:
            tmp.unlink(missing_ok=True)
        return "copy"

    # -- integrity and maintenance ---------------------------------------------

    def iter_objects(self) -> Iterator[ObjectRef]:
        """Every stored object once (an object both packed and in a file of its own is listed as the file)."""
        seen: set[str] = set()
        for key, size in self.backend.iter_keys():
            digest = digest_from_key(key)
            if digest is not None:
                seen.add(digest)
                yield ObjectRef(digest, size)
        if self.packs is not None:
            for obj in self.packs.iter_objects():
                if obj.digest not in seen:
                    yield ObjectRef(obj.digest, obj.length)

    def added_at(self, digest: str) -> float | None:
        """When a local object was stored (its file's mtime, or when its pack was indexed); None if unknown."""
        path = self.local_path(digest)
        if path is not None:
            try:
                return path.stat().st_mtime
            except OSError:
                pass
        obj = self.packs.lookup(digest) if self.packs is not None else None
        return obj.added_at if obj is not None else None

    def verify(self, digest: str) -> ObjectCheck:
        """Rehash one object, streaming; reports ok, corrupt (with the actual hash) or missing."""
        _check_digest(digest)
        path = self.local_path(digest)
        try:
            if path is not None:
                actual = hash_file(path)
            else:
                hasher = new_hasher()
                with self.open(digest) as fh:
                    while chunk := fh.read(CHUNK_SIZE):
                        hasher.update(chunk)
                actual = hasher.hexdigest()
        except (FileNotFoundError, ObjectNotFoundError):
            return ObjectCheck(digest, "missing")
        return ObjectCheck(digest, "ok" if actual == digest else "corrupt", actual)

    def verify_or_raise(self, digest: str) -> None:
        check = self.verify(digest)
        if check.status == "missing":
            raise ObjectNotFoundError(f"Object {digest} is missing from the artifact store {self.url!r}.")
        if check.status == "corrupt":
            raise CorruptObjectError(
                f"Object {digest} in {self.url!r} is corrupt: its bytes hash to {check.actual}.",
                hint="Restore it from a remote (loopml data pull) or delete it and re-add the data.",
            )

    def delete(self, digest: str) -> None:
        """Remove an object; a packed one's bytes are reclaimed by ``compact``."""
        self.backend.delete(object_key(_check_digest(digest)))
        if self.packs is not None:
            self.packs.remove(digest)

    def compact(self, *, grace_seconds: float = 3600.0) -> int:
        """Reclaim the bytes of deleted packed objects and of abandoned packs; returns bytes freed."""
        return self.packs.compact(grace_seconds=grace_seconds) if self.packs is not None else 0


def open_content_store(url: str, storage_options: dict[str, object] | None = None) -> ContentStore:
    from loopml.stores.artifacts.backends import open_backend

    return ContentStore(open_backend(url, dict(storage_options or {})))
