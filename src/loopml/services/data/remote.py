"""Data remotes: push and pull objects to any fsspec URL, packing small objects into pack files.

Remote layout under the URL:
    packs/<id>.pack   small objects concatenated
    packs/<id>.idx    JSON {digest: [offset, length]}; written after its pack, so an index is the commit mark
    objects/<aa>/<rest>   big objects, one file each
Existence on the remote is answered by listing ``packs/`` and ``objects/`` once and reading the indexes
concurrently, never by one request per object.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from loopml.errors import CorruptObjectError, RemoteUnavailableError
from loopml.progress import NullProgress, Progress
from loopml.stores.artifacts.cas import ContentStore, ObjectRun
from loopml.stores.artifacts.hashing import digest_from_key, hash_bytes, object_key
from loopml.stores.artifacts.packs import PACK_THRESHOLD

# Bytes per pack: big enough that 10,000 small files take a few dozen requests, small enough that the
# HTTP stack's copies of a body fit glibc's reusable heap (see cli/_memory.py) and a pull's batch stays small.
PACK_TARGET = 16 * 1024 * 1024
PACKS_IN_FLIGHT = 4  # packs pulled into memory at once
UPLOADS_IN_FLIGHT = 3  # packs uploading at once (one more is read meanwhile)


@dataclass(frozen=True, slots=True)
class TransferResult:
    objects: int
    bytes: int
    transfers: int
    skipped: int


@dataclass
class RemoteIndex:
    packs: dict[str, dict[str, tuple[int, int]]]  # pack id -> digest -> (offset, length)
    loose: dict[str, int]  # digest -> size, for objects stored one file each

    def digests(self) -> set[str]:
        out = set(self.loose)
        for idx in self.packs.values():
            out.update(idx)
        return out


class DataRemote:
    """One remote location; every failure to reach it raises RemoteUnavailableError naming the URL."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        except (ValueError, ImportError) as exc:
            raise RemoteUnavailableError(f"Cannot use the remote {url!r}: {exc}.",
                                         hint="Use an fsspec URL such as s3://bucket/prefix or a directory.") from exc
        protocol = self.fs.protocol
        protocols = {protocol} if isinstance(protocol, str) else set(protocol)
        self._atomic = bool(protocols & {"s3", "s3a", "gs", "gcs", "az", "abfs", "memory"})

    def _fail(self, exc: Exception, what: str) -> RemoteUnavailableError:
        return RemoteUnavailableError(f"The remote {self.url!r} failed to {what}: {exc}.",
                                      hint="Check the URL, the endpoint (--endpoint-url) and the credentials.")

    def _p(self, key: str) -> str:
        return f"{self.root}/{key}"

    def index(self) -> RemoteIndex:
        try:
            self.fs.invalidate_cache()
            try:
                listing: dict[str, Any] = self.fs.find(self.root, detail=True)
            except FileNotFoundError:
                listing = {}
            prefix = self.root.rstrip("/") + "/"
            sizes = {(p[len(prefix):] if p.startswith(prefix) else p): int(info.get("size") or 0)
                     for p, info in listing.items()}
            idx_keys = [k for k in sizes if k.startswith("packs/") and k.endswith(".idx")]
            loose = {d: size for k, size in sizes.items() if k.startswith("objects/")
                     for d in [digest_from_key(k[len("objects/"):])] if d}
            packs: dict[str, dict[str, tuple[int, int]]] = {}
            if idx_keys:
                blobs = self.fs.cat([self._p(k) for k in idx_keys])
                for k in idx_keys:
                    raw = blobs[self._p(k)]
                    pack_id = k[len("packs/"):-len(".idx")]
                    packs[pack_id] = {d: (int(v[0]), int(v[1])) for d, v in json.loads(raw).items()}
            return RemoteIndex(packs, loose)
        except RemoteUnavailableError:
            raise
        except Exception as exc:
            raise self._fail(exc, "list its contents") from exc

    def _write_whole(self, key: str, write: Callable[[str], object]) -> None:
        """On a filesystem whose writes are not atomic: ``write`` a temporary name, then move it into place."""
        final = self._p(key)
        tmp = f"{final}.{uuid.uuid4().hex[:8]}.part"
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        write(tmp)
        self.fs.mv(tmp, final)

    def _upload(self, items: list[tuple[str, str]]) -> None:
        """(local file, remote key) pairs, concurrently; each lands under its final name whole."""
        if not items:
            return
        try:
            if self._atomic:
                self.fs.put([s for s, _ in items], [self._p(k) for _, k in items])
            else:
                for src, key in items:
                    self._write_whole(key, partial(self.fs.put_file, src))
        except Exception as exc:
            raise self._fail(exc, "store files") from exc

    def _upload_bytes(self, blobs: Mapping[str, bytes | bytearray]) -> None:
        """(remote key -> bytes), concurrently; each lands under its final name whole."""
        if not blobs:
            return
        try:
            if self._atomic:
                self.fs.pipe({self._p(k): v for k, v in blobs.items()})
            else:
                for key, data in blobs.items():
                    self._write_whole(key, partial(self.fs.pipe_file, value=data))
        except Exception as exc:
            raise self._fail(exc, "store files") from exc

    def push(self, store: ContentStore, digests: Iterable[str], progress: Progress | None = None) -> TransferResult:
        progress = progress or NullProgress()
        wanted = sorted(set(digests))
        have = self.index().digests()
        need = [d for d in wanted if d not in have]
        if not need:
            return TransferResult(0, 0, 0, len(wanted))
        # A pushed pack holds PACK_TARGET bytes or a little more, up to `cap`; one read fetches a stretch of
        # up to `cap` bytes of a local pack (a 64 MiB local pack goes out as four pushed packs).
        cap = PACK_TARGET + PACK_TARGET // 32
        runs = store.runs(need, max_length=cap)
        small: list[ObjectRun] = []
        big: list[ObjectRun] = []  # objects stored one file each: sent as they are
        for r in runs:
            (big if r.pack is None and r.length >= PACK_THRESHOLD else small).append(r)
        total = sum(r.length for r in big) + sum(n for r in small for _, _, n in r.objects)
        with progress.task("Pushing", total, unit="bytes") as advance:
            indexes: dict[str, bytes] = {}
            transfers = self._send_packs(store, small, cap, indexes, advance)
            with tempfile.TemporaryDirectory(prefix="loopml-push-") as tmp:
                uploads: list[tuple[str, str]] = []
                for r in big:
                    d = r.objects[0][0]
                    local = store.local_path(d)
                    if local is None:
                        local = Path(tmp) / d
                        store.export(d, local)
                    uploads.append((str(local), f"objects/{object_key(d)}"))
                self._upload(uploads)
            advance(sum(r.length for r in big))
            self._upload_bytes(indexes)  # indexes last: a pack without an index is invisible
            transfers += len(uploads) + len(indexes)
        return TransferResult(len(need), total, transfers, len(wanted) - len(need))

    def _send_packs(self, store: ContentStore, runs: list[ObjectRun], cap: int, indexes: dict[str, bytes],
                    advance: Callable[[int], None]) -> int:
        """Upload ``runs`` as packs of PACK_TARGET to ``cap`` bytes, UPLOADS_IN_FLIGHT at a time; their indexes go
        into ``indexes``. Returns the number of packs.

        Each pack is read straight into a buffer (one read per run: a run is usually a stretch of a
        local pack as long as the pushed pack) while the packs before it upload; the buffers are reused, since fresh memory costs a
        page fault per 4 KB, which on a VM can take longer than the read.
        """
        packs: list[list[ObjectRun]] = []
        size = 0
        for r in runs:  # each at most `cap` long
            if not packs or size + r.length > cap or size >= PACK_TARGET:
                packs.append([])
                size = 0
            packs[-1].append(r)
            size += r.length
        free: list[bytearray] = []
        sending: dict[Future[None], tuple[bytearray, int]] = {}

        def settle() -> None:
            """Wait for an upload to finish; its buffer is free again."""
            done, _ = wait(sending, return_when=FIRST_COMPLETED)
            for f in done:
                buf, n = sending.pop(f)
                f.result()
                free.append(buf)
                advance(n)

        with ThreadPoolExecutor(max_workers=UPLOADS_IN_FLIGHT) as pool:
            try:
                for pack in packs:
                    while len(sending) >= UPLOADS_IN_FLIGHT:
                        settle()
                    length = sum(r.length for r in pack)
                    buf = free.pop() if free else bytearray()
                    if len(buf) >= length:
                        del buf[length:]
                    else:
                        buf = bytearray(length)
                    index: dict[str, list[int]] = {}
                    offset = 0
                    with memoryview(buf) as view:
                        for r in pack:
                            store.read_run(r, view[offset:offset + r.length])
                            index.update((d, [offset + off, n]) for d, off, n in r.objects)
                            offset += r.length
                    pack_id = uuid.uuid4().hex
                    indexes[f"packs/{pack_id}.idx"] = json.dumps(index).encode()
                    sent = sum(n for _, n in index.values())
                    sending[pool.submit(self._upload_bytes, {f"packs/{pack_id}.pack": buf})] = (buf, sent)
                while sending:
                    settle()
            finally:
                for f in sending:
                    f.cancel()
        return len(packs)

    def pull(self, store: ContentStore, digests: Iterable[str], progress: Progress | None = None) -> TransferResult:
        progress = progress or NullProgress()
        wanted = sorted(set(digests))
        need = store.missing(wanted) if wanted else set()
        if not need:
            return TransferResult(0, 0, 0, len(wanted))
        store.ensure()
        remote = self.index()
        by_pack: dict[str, list[str]] = {}
        loose: list[str] = []
        located: set[str] = set()
        for pack_id, idx in remote.packs.items():
            for d in need:
                if d in idx and d not in located:
                    by_pack.setdefault(pack_id, []).append(d)
                    located.add(d)
        for d in need:
            if d not in located and d in remote.loose:
                loose.append(d)
                located.add(d)
        absent = sorted(need - located)
        if absent:
            raise RemoteUnavailableError(
                f"The remote {self.url!r} lacks {len(absent)} objects (e.g. {absent[0]}).",
                hint="Push them from a workspace that has them.")
        got = 0
        pack_ids = list(by_pack)
        total = sum(remote.packs[p][d][1] for p, ds in by_pack.items() for d in ds) + sum(remote.loose[d] for d in loose)
        with progress.task("Pulling", total, unit="bytes") as advance:
            def unpack(pack_id: str, data: bytes) -> int:
                # A local store takes the pack's objects into a pack of its own (a killed pull loses at most
                # the packs not yet committed: nothing of them is visible); another store, one write each.
                n = 0
                view = memoryview(data)
                with store.pack_writer() if store.packs is not None else contextlib.nullcontext() as writer:
                    for d in by_pack[pack_id]:
                        off, length = remote.packs[pack_id][d]
                        obj = view[off:off + length]
                        if hash_bytes(obj) != d:  # hashed once, verified before anything is stored
                            raise CorruptObjectError(f"Object {d} in pack {pack_id} of {self.url!r} is corrupt.",
                                                     hint="Push it again from a workspace that has it.")
                        if writer is not None and length < PACK_THRESHOLD:
                            writer.add(d, obj)
                        else:
                            store.put_bytes(obj, expect=d)
                        n += length
                advance(n)
                return n

            def fetch(batch: list[str]) -> list[bytes]:
                try:
                    blobs = self.fs.cat([self._p(f"packs/{p}.pack") for p in batch])
                except Exception as exc:
                    raise self._fail(exc, "send files") from exc
                return [blobs.pop(self._p(f"packs/{p}.pack")) for p in batch]

            batches = [pack_ids[i:i + PACKS_IN_FLIGHT] for i in range(0, len(pack_ids), PACKS_IN_FLIGHT)]
            with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool, \
                    ThreadPoolExecutor(max_workers=1) as fetcher:
                # Packs come into memory a batch at a time (no temporary files, bounded memory); the next
                # batch downloads while this one is verified and stored.
                pending = fetcher.submit(fetch, batches[0]) if batches else None
                for k, batch in enumerate(batches):
                    assert pending is not None
                    datas = pending.result()
                    pending = fetcher.submit(fetch, batches[k + 1]) if k + 1 < len(batches) else None
                    got += sum(pool.map(unpack, batch, datas))
                    del datas
                if loose:
                    with tempfile.TemporaryDirectory(prefix="loopml-pull-") as tmp:
                        try:
                            self.fs.get([self._p(f"objects/{object_key(d)}") for d in loose],
                                        [os.path.join(tmp, d) for d in loose])
                        except Exception as exc:
                            raise self._fail(exc, "send files") from exc

                        def take_loose(d: str) -> int:
                            ref = store.put_file(os.path.join(tmp, d))
                            if ref.digest != d:
                                store.delete(ref.digest) if ref.digest not in wanted else None
                                raise CorruptObjectError(
                                    f"Object {d} on {self.url!r} is corrupt (hashes to {ref.digest}).")
                            advance(ref.size)
                            return ref.size

                        got += sum(pool.map(take_loose, loose))
        return TransferResult(len(need), got, len(pack_ids) + len(loose), len(wanted) - len(need))
