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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from loopml.errors import CorruptObjectError, RemoteUnavailableError
from loopml.progress import NullProgress, Progress
from loopml.stores.artifacts.cas import ContentStore
from loopml.stores.artifacts.hashing import digest_from_key, hash_bytes, object_key
from loopml.stores.artifacts.packs import PACK_THRESHOLD

PACK_TARGET = 64 * 1024 * 1024  # bytes per pack
PACKS_IN_FLIGHT = 4  # packs held in memory and transferred at once


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

    def _upload_bytes(self, blobs: dict[str, bytes]) -> None:
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
        sizes = store.sizes(need)
        small = [d for d in need if sizes[d] < PACK_THRESHOLD]
        big = [d for d in need if sizes[d] >= PACK_THRESHOLD]
        total = sum(sizes.values())
        transfers = 0
        with progress.task("Pushing", total, unit="bytes") as advance:
            indexes: dict[str, bytes] = {}

            def packs_of(objects: Iterator[tuple[str, bytes]]) -> Iterator[dict[str, bytes]]:
                """Batches of PACKS_IN_FLIGHT packs, built in memory from the local objects as they are read."""
                batch: dict[str, bytes] = {}
                parts: list[bytes] = []
                index: dict[str, list[int]] = {}
                offset = 0

                def close_pack() -> None:
                    pack_id = uuid.uuid4().hex
                    batch[f"packs/{pack_id}.pack"] = b"".join(parts)
                    indexes[f"packs/{pack_id}.idx"] = json.dumps(index).encode()

                for d, data in objects:
                    parts.append(data)
                    index[d] = [offset, len(data)]
                    offset += len(data)
                    if offset >= PACK_TARGET:
                        close_pack()
                        parts, index, offset = [], {}, 0
                        if len(batch) == PACKS_IN_FLIGHT:
                            yield batch
                            batch = {}
                if parts:
                    close_pack()
                if batch:
                    yield batch

            def send(batch: dict[str, bytes]) -> int:
                self._upload_bytes(batch)
                advance(sum(len(b) for b in batch.values()))
                return len(batch)

            # One batch uploads while the next is read from the local store (at most two in memory).
            with ThreadPoolExecutor(max_workers=1) as uploader:
                sending = None
                for batch in packs_of(store.read_many(small)):
                    if sending is not None:
                        transfers += sending.result()
                    sending = uploader.submit(send, batch)
                if sending is not None:
                    transfers += sending.result()
            with tempfile.TemporaryDirectory(prefix="loopml-push-") as tmp:
                uploads: list[tuple[str, str]] = []
                for d in big:
                    local = store.local_path(d)
                    if local is None:
                        local = Path(tmp) / d
                        store.export(d, local)
                    uploads.append((str(local), f"objects/{object_key(d)}"))
                self._upload(uploads)
            advance(sum(sizes[d] for d in big))
            self._upload_bytes(indexes)  # indexes last: a pack without an index is invisible
            transfers += len(uploads) + len(indexes)
        return TransferResult(len(need), total, transfers, len(wanted) - len(need))

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
