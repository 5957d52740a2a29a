"""The data service: content-addressed dataset versions, tags, status, checkout, tables, rules, lineage."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from loopml.domain.data import AddResult, DatasetUse, DatasetVersion, FileEntry, StatusReport
from loopml.errors import (
    ConflictError,
    DataInputError,
    InvalidParameterError,
    NotFoundError,
    ValidationFailedError,
)
from loopml.progress import NullProgress, Progress
from loopml.services.data.hashing_cache import HashStateCache
from loopml.services.data.quick import is_valid_name
from loopml.services.data.scan import StatEntry, scan_path
from loopml.services.data.tables import is_table_path, read_table, table_stats
from loopml.stores.artifacts.hashing import hash_bytes

if TYPE_CHECKING:
    from loopml.services.data.diff import DatasetDiff
    from loopml.services.data.validation import ValidationReport
    from loopml.settings import Settings
    from loopml.stores.artifacts.cas import ContentStore, LinkMode
    from loopml.stores.metadata.database import Database

def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise InvalidParameterError(
            "name", "data add", "a non-empty name of letters, digits, '-', '_', '.', '/' (no '@')", name)
    return name


def manifest_digest(files: Sequence[FileEntry]) -> str:
    """The content id of a manifest: BLAKE3 of its canonical text (sorted path, size, digest lines)."""
    text = "".join(f"{f.path}\t{f.size}\t{f.digest}\n" for f in sorted(files, key=lambda f: f.path))
    return hash_bytes(text.encode())


def version_id_for(name: str, content_digest: str) -> str:
    return hash_bytes(f"{name}\0{content_digest}".encode())[:32]


def parse_ref(ref: str) -> tuple[str, str | None]:
    name, _, sel = ref.partition("@")
    return name, (sel or None)


class _RemoteMixin:
    objects: ContentStore
    settings: Settings

    @property
    def db(self) -> Database:
        raise NotImplementedError

    def add_remote(self, name: str, url: str, *, endpoint_url: str | None = None,
                   options: dict[str, Any] | None = None) -> None:
        from loopml.stores.metadata.database import append_event
        from loopml.stores.metadata.schema.data import data_remotes

        opts = dict(options or {})
        if endpoint_url:
            opts.setdefault("client_kwargs", {})["endpoint_url"] = endpoint_url
        with self.db.write() as conn:
            conn.execute(data_remotes.delete().where(data_remotes.c.name == name))
            conn.execute(data_remotes.insert().values(name=name, url=url, options=opts))
            append_event(conn, actor=self.settings.actor, action="data.remote_set", object_type="data_remote",
                         object_id=name, details={"url": url})

    def list_remotes(self) -> list[tuple[str, str, dict[str, Any]]]:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.data import data_remotes

        with self.db.read() as conn:
            return [(r.name, r.url, dict(r.options or {})) for r in conn.execute(select(data_remotes)
                                                                               .order_by(data_remotes.c.name))]

    def _remote(self, remote: str | None) -> tuple[str, Any]:
        """(the remote's name, or its URL when given one, and the remote itself)."""
        from loopml.services.data.remote import DataRemote

        remotes = {n: (u, o) for n, u, o in self.list_remotes()}
        if remote is None:
            if len(remotes) != 1:
                raise InvalidParameterError("remote", "data push/pull",
                                            f"a remote name ({', '.join(remotes) or 'none defined'}) or URL", remote)
            remote = next(iter(remotes))
        if remote in remotes:
            url, stored = remotes[remote]
            return remote, DataRemote(url, stored)
        if "://" in remote or "/" in remote:
            opts: dict[str, Any] = {}
            if self.settings.s3_endpoint_url and remote.startswith("s3"):
                opts = {"client_kwargs": {"endpoint_url": self.settings.s3_endpoint_url}}
            return remote, DataRemote(remote, opts)
        raise NotFoundError(f"No data remote named {remote!r}.", hint="Add it: loopml data remote add NAME URL")

    def _digests_of(self, refs: Sequence[str] | None) -> list[str]:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.data import dataset_files

        with self.db.read() as conn:
            q = select(dataset_files.c.digest).distinct()
            if refs:
                ids = [self.resolve(r).id for r in refs]  # type: ignore[attr-defined]
                q = q.where(dataset_files.c.version_id.in_(ids))
            return [r[0] for r in conn.execute(q)]

    def push(self, refs: Sequence[str] | None = None, *, remote: str | None = None,
             progress: Progress | None = None) -> Any:
        """Upload the objects of ``refs`` (default: every version) that the remote lacks."""
        name, target = self._remote(remote)
        result = target.push(self.objects, self._digests_of(refs), progress)
        self._record_transfer("data.pushed", name, target.url, refs, result)
        return result

    def pull(self, refs: Sequence[str] | None = None, *, remote: str | None = None,
             progress: Progress | None = None) -> Any:
        """Download the objects of ``refs`` (default: every version) the local store lacks, verified."""
        name, source = self._remote(remote)
        result = source.pull(self.objects, self._digests_of(refs), progress)
        self._record_transfer("data.pulled", name, source.url, refs, result)
        return result

    def _record_transfer(self, action: str, remote: str, url: str, refs: Sequence[str] | None,
                         result: Any) -> None:
        """The audit event of a push or pull that moved something (a no-op transfer is not an action)."""
        if result.objects:
            self._audit(action, "data_remote", remote, {"url": url, "refs": list(refs or []),
                                                         "objects": result.objects, "bytes": result.bytes,
                                                         "transfers": result.transfers})

    def _audit(self, action: str, object_type: str, object_id: str, details: dict[str, Any]) -> None:
        """One audit event in a transaction of its own (for actions that write nothing else to the database)."""
        from loopml.stores.metadata.database import append_event

        with self.db.write() as conn:
            append_event(conn, actor=self.settings.actor, action=action, object_type=object_type,
                         object_id=object_id, details=details)


class DataService(_RemoteMixin):
    """Dataset versions over the metadata database and the content store."""

    def __init__(self, db: Database | Callable[[], Database], objects: ContentStore, settings: Settings) -> None:
        """``db`` may be a callable that opens it: then it is opened on first use, or while an add's
        worker processes store files (importing the database layer and checking the schema take a
        noticeable part of a command's time)."""
        self._db: Database | Callable[[], Database] = db
        self._db_lock = threading.Lock()
        self.objects = objects
        self.settings = settings

    @property
    def db(self) -> Database:
        if callable(self._db):
            with self._db_lock:
                if callable(self._db):
                    self._db = self._db()
        return self._db

    def _open_db_quietly(self) -> None:
        """Open the database and load the tables an add records into (while worker processes store files)."""
        with contextlib.suppress(Exception):  # a failure is raised again where the database is used
            self.db  # noqa: B018
            import loopml.stores.metadata.schema.data  # noqa: F401

    # -- helpers ----------------------------------------------------------------------

    @cached_property
    def _state_cache(self) -> HashStateCache:
        ws = self.settings.workspace_dir
        return HashStateCache(ws / "hash-state.db" if ws.is_dir() else None)

    def close(self) -> None:
        """Release the hash state cache's connection (reopened on next use)."""
        cache = self.__dict__.pop("_state_cache", None)
        if cache is not None:
            cache.close()

    @property
    def cache_dir(self) -> Path:
        return self.settings.workspace_dir / "data-cache"

    def _row_to_version(self, row: Any, tags: Iterable[str] = ()) -> DatasetVersion:
        m = row._mapping
        return DatasetVersion(
            id=m["id"], name=m["name"], version=int(m["version"]), created_at=float(m["created_at"]),
            num_files=int(m["num_files"]), size=int(m["size"]), kind=m["kind"],
            content_digest=m["content_digest"], message=m["message"], tags=tuple(sorted(tags)),
            status=m["status"], source=m["source"], stats=m["stats"], validation=m["validation"],
            created_by=m["created_by"],
        )

    def _tags_of(self, conn: Any, version_ids: Sequence[str]) -> dict[str, list[str]]:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.data import dataset_tags

        out: dict[str, list[str]] = {}
        if not version_ids:
            return out
        for i in range(0, len(version_ids), 500):
            rows = conn.execute(select(dataset_tags.c.version_id, dataset_tags.c.tag)
                                .where(dataset_tags.c.version_id.in_(version_ids[i:i + 500])))
            for vid, tag in rows:
                out.setdefault(vid, []).append(tag)
        return out

    # -- reading ----------------------------------------------------------------------

    def resolve(self, ref: str) -> DatasetVersion:
        """``name`` (latest), ``name@v3``, ``name@3``, ``name@<tag>`` or a version id."""
        from sqlalchemy import select

        from loopml.stores.metadata.schema.data import dataset_tags
        from loopml.stores.metadata.schema.data import dataset_versions as dv

        if not isinstance(ref, str) or not ref:
            raise InvalidParameterError("ref", "data resolve", "'name', 'name@v3', 'name@tag' or a version id", ref)
        name, sel = parse_ref(ref)
        with self.db.read() as conn:
            row = None
            if sel is None:
                row = conn.execute(select(dv).where(dv.c.name == name).order_by(dv.c.version.desc()).limit(1)).first()
                if row is None and len(ref) == 32:
                    row = conn.execute(select(dv).where(dv.c.id == ref)).first()
            else:
                num = sel[1:] if sel[:1] in ("v", "V") and sel[1:].isdigit() else sel
                if num.isdigit():
                    row = conn.execute(select(dv).where(dv.c.name == name, dv.c.version == int(num))).first()
                if row is None:
                    vid = conn.execute(select(dataset_tags.c.version_id).where(
                        dataset_tags.c.name == name, dataset_tags.c.tag == sel)).scalar()
                    if vid is not None:
                        row = conn.execute(select(dv).where(dv.c.id == vid)).first()
            if row is None:
                raise NotFoundError(f"No dataset version {ref!r}.",
                                    hint="List them with `loopml data ls` (versions: NAME@v1, NAME@TAG).")
            tags = self._tags_of(conn, [row.id]).get(row.id, [])
            return self._row_to_version(row, tags)

    def latest_version_id(self, name: str) -> str | None:
        try:
            return self.resolve(name).id
        except NotFoundError:
            return None

    def list_versions(self, name: str | None = None) -> list[DatasetVersion]:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.data import dataset_versions as dv

        with self.db.read() as conn:
            q = select(dv).order_by(dv.c.name, dv.c.version)
            if name:
                q = q.where(dv.c.name == name)
            rows = conn.execute(q).all()
            tags = self._tags_of(conn, [r.id for r in rows])
            return [self._row_to_version(r, tags.get(r.id, [])) for r in rows]

    def files(self, ref: str | DatasetVersion) -> list[FileEntry]:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.data import dataset_files as df

        v = ref if isinstance(ref, DatasetVersion) else self.resolve(ref)
        with self.db.read() as conn:
            rows = conn.execute(select(df.c.path, df.c.size, df.c.digest).where(df.c.version_id == v.id)
                                .order_by(df.c.path)).all()
        return [FileEntry(r[0], int(r[1]), r[2]) for r in rows]

    # -- adding -----------------------------------------------------------------------

    def add(self, path: str | os.PathLike[str], name: str, *, tags: Sequence[str] = (),
            message: str | None = None, progress: Progress | None = None) -> DatasetVersion:
        """Version a file or directory under ``name``; identical content returns the existing version."""
        return self.add_detailed(path, name, tags=tags, message=message, progress=progress).version

    def add_detailed(self, path: str | os.PathLike[str], name: str, *, tags: Sequence[str] = (),
                     message: str | None = None, progress: Progress | None = None,
                     kind: str | None = None, source: str | None = None) -> AddResult:
        check_name(name)
        progress = progress or NullProgress()
        src = Path(path)
        scanned_kind, entries, fingerprint = scan_path(src)
        if kind is None:
            kind = "table" if scanned_kind == "file" and is_table_path(src) else scanned_kind

        def unreadable(e: StatEntry, exc: OSError) -> Exception:
            return DataInputError(f"Cannot read {e.abspath!r}: {exc.strerror or exc}.",
                                  hint="Check its permissions; nothing was stored.")

        cache = self._state_cache
        tree_key = os.path.abspath(src)
        known = cache.tree_content(tree_key, fingerprint)
        existing = self._find_content(name, known) if known is not None else None
        if existing is not None:  # nothing touched since the last hash: no per-file lookups at all
            return self._unchanged(existing, tags, hashed=0)
        digests, todo = cache.lookup(entries)
        hashed, stored, stored_bytes = len(todo), 0, 0
        ingested: set[str] = set()
        if todo and self.objects.is_local and kind != "table":
            # One pass: each new file is read once, hashed and stored (tables are parsed before anything is stored).
            stored, stored_bytes = self._ingest(name, todo, digests, ingested, progress)
        elif todo:
            with progress.task(f"Hashing {name}", sum(e.size for e in todo), unit="bytes") as advance:
                fresh, _ = cache.digests(todo, on_hashed=advance, on_error=unreadable)
            digests.update(fresh)
        files = [FileEntry(e.rel, e.size, digests[e.abspath]) for e in entries]
        content = manifest_digest(files)
        if content != known:
            cache.remember_tree(tree_key, fingerprint, content)
        vid = version_id_for(name, content)
        existing = self._find_content(name, content)
        if existing is not None:
            return self._unchanged(existing, tags, hashed=hashed)

        stats = validation = None
        status = "ok"
        if kind == "table":
            # Parsed before anything is stored: a table that fails to parse leaves nothing behind.
            frame = read_table(entries[0].abspath, display_path=str(src))
            stats = table_stats(frame)
            rules = self.get_rules(name)
            if rules is not None:
                from loopml.services.data.validation import run_rules

                report = run_rules(frame, rules, name)
                validation = report.to_dict()
                status = "ok" if report.passed else "failing"
            del frame
        more, more_bytes = self._store_objects([e for e in entries if digests[e.abspath] not in ingested],
                                               digests, progress)
        stored, stored_bytes = stored + more, stored_bytes + more_bytes
        t0 = time.time()
        version = self._insert_version(vid, name, kind, content, files, message=message, tags=tags,
                                       source=source or str(src.resolve()), stats=stats,
                                       status=status, validation=validation)
        return AddResult(version, unchanged=version.created_at < t0,
                         hashed_files=hashed, stored_files=stored, stored_bytes=stored_bytes)

    def _ingest(self, name: str, todo: Sequence[StatEntry], digests: dict[str, str], ingested: set[str],
                progress: Progress) -> tuple[int, int]:
        """Hash and store files the state cache does not know, reading each once; returns (new objects, bytes)."""
        def unreadable(path: str, exc: OSError) -> Exception:
            return DataInputError(f"Cannot read {path!r}: {exc.strerror or exc}.",
                                  hint="Check its permissions; nothing was recorded.")

        with progress.task(f"Hashing and storing {name}", sum(e.size for e in todo), unit="bytes") as advance:
            # While worker processes hash and store, this one opens the database (when not open yet).
            got = self.objects.ingest_files([(e.abspath, e.size) for e in todo], advance=advance,
                                            on_error=unreadable, meanwhile=self._open_db_quietly)
        stored = stored_bytes = 0
        for e, g in zip(todo, got, strict=True):
            st = g.stat
            if (st.st_ino, st.st_size, st.st_mtime_ns) != (e.inode, e.size, e.mtime_ns):
                raise ConflictError(f"The file {e.abspath!r} changed while it was being added.",
                                    hint="Run the add again when nothing is writing to it.")
            digests[e.abspath] = g.ref.digest
            ingested.add(g.ref.digest)
            if g.written:
                stored += 1
                stored_bytes += g.ref.size
        self._state_cache.remember([(e, digests[e.abspath]) for e in todo])
        return stored, stored_bytes

    def _unchanged(self, existing: DatasetVersion, tags: Sequence[str], *, hashed: int) -> AddResult:
        if tags:
            for t in tags:
                self.tag(existing.label, t)
            existing = self.resolve(existing.id)
        return AddResult(existing, unchanged=True, hashed_files=hashed)

    def _find_content(self, name: str, content: str) -> DatasetVersion | None:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.data import dataset_versions as dv

        with self.db.read() as conn:
            row = conn.execute(select(dv).where(dv.c.name == name, dv.c.content_digest == content)
                               .order_by(dv.c.version).limit(1)).first()
            if row is None:
                return None
            return self._row_to_version(row, self._tags_of(conn, [row.id]).get(row.id, []))

    def _store_objects(self, entries: Sequence[StatEntry], digests: dict[str, str],
                       progress: Progress) -> tuple[int, int]:
        by_digest: dict[str, StatEntry] = {}
        for e in entries:
            by_digest.setdefault(digests[e.abspath], e)
        missing = self.objects.missing(list(by_digest))
        todo = [(d, by_digest[d]) for d in sorted(missing)]
        if not todo:
            return 0, 0
        total = sum(e.size for _, e in todo)
        with progress.task("Storing objects", total, unit="bytes") as advance:
            if self.objects.is_local:
                from loopml.stores.artifacts.hashing import object_key

                backend = self.objects.backend

                def put(item: tuple[str, StatEntry]) -> None:
                    # The digest is already known (hashed or from the state cache), so the bytes are
                    # copied by the kernel (copy_file_range) without a second hash; the file's stat
                    # identity is checked after the copy so a file changed meanwhile is refused.
                    d, e = item
                    try:
                        backend.put_file(object_key(d), Path(e.abspath))
                        st = os.stat(e.abspath)
                    except OSError as exc:
                        raise DataInputError(f"Cannot read {e.abspath!r}: {exc.strerror or exc}.") from exc
                    if (st.st_ino, st.st_size, st.st_mtime_ns) != (e.inode, e.size, e.mtime_ns):
                        self.objects.delete(d)
                        raise ConflictError(f"The file {e.abspath!r} changed while it was being added.",
                                            hint="Run the add again when nothing is writing to it.")
                    advance(e.size)

                workers = max(1, min(8, (os.cpu_count() or 2) * 2, len(todo)))
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(put, todo))
            else:
                from loopml.stores.artifacts.hashing import object_key

                self.objects.backend.put_files([(Path(e.abspath), object_key(d)) for d, e in todo])
                advance(total)
        return len(todo), total

    def _insert_version(self, vid: str, name: str, kind: str, content: str, files: Sequence[FileEntry], *,
                        message: str | None, tags: Sequence[str], source: str | None,
                        stats: dict[str, Any] | None, status: str = "ok",
                        validation: dict[str, Any] | None = None) -> DatasetVersion:
        from sqlalchemy import func, insert, select
        from sqlalchemy.exc import IntegrityError

        from loopml.stores.metadata.database import append_event, insert_rows
        from loopml.stores.metadata.schema.data import dataset_files, dataset_tags
        from loopml.stores.metadata.schema.data import dataset_versions as dv

        for attempt in range(20):
            existing = self._find_content(name, content)
            if existing is not None:
                return existing
            try:
                with self.db.write() as conn:
                    cur = conn.execute(select(func.max(dv.c.version)).where(dv.c.name == name)).scalar()
                    number = int(cur or 0) + 1
                    now = time.time()
                    conn.execute(insert(dv).values(
                        id=vid, name=name, version=number, created_at=now, created_by=self.settings.actor,
                        kind=kind, content_digest=content, num_files=len(files),
                        size=sum(f.size for f in files), message=message, source=source, status=status,
                        stats=stats, validation=validation))
                    if files:
                        insert_rows(conn, dataset_files, ("version_id", "path", "size", "digest"),
                                    [(vid, f.path, f.size, f.digest) for f in files])
                    for t in tags:
                        conn.execute(dataset_tags.delete().where(dataset_tags.c.name == name, dataset_tags.c.tag == t))
                        conn.execute(insert(dataset_tags).values(name=name, tag=t, version_id=vid, created_at=now))
                    append_event(conn, actor=self.settings.actor, action="dataset.version_created",
                                 object_type="dataset_version", object_id=vid,
                                 details={"name": name, "version": number, "files": len(files),
                                          "status": status})
                break
            except IntegrityError:
                time.sleep(0.05 * (attempt + 1))  # a concurrent add took the number or the same content
        else:
            raise ConflictError(f"Could not record a new version of {name!r}: too many concurrent writers.",
                                hint="Retry the add.")
        return self.resolve(vid)

    def save_table(self, table: Any, name: str, *, tags: Sequence[str] = (), message: str | None = None,
                   progress: Progress | None = None) -> DatasetVersion:
        """Store a pandas DataFrame or Arrow table as Parquet under ``name``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        check_name(name)
        if isinstance(table, pa.Table):
            arrow = table
        else:
            try:
                arrow = pa.Table.from_pandas(table, preserve_index=False)
            except Exception as exc:
                raise InvalidParameterError("table", "data.save", "a pandas DataFrame or a pyarrow Table",
                                            type(table).__name__) from exc
        tmp_root = self.settings.workspace_dir if self.settings.workspace_dir.is_dir() else None
        with tempfile.TemporaryDirectory(dir=tmp_root, prefix=".save-") as tmp:
            leaf = name.rsplit("/", 1)[-1]
            path = Path(tmp) / f"{leaf}.parquet"
            pq.write_table(arrow, path)
            return self.add_detailed(path, name, tags=tags, message=message, progress=progress,
                                     kind="table", source="python: data.save").version

    # -- tags -------------------------------------------------------------------------

    def tag(self, ref: str, tag: str) -> DatasetVersion:
        from sqlalchemy import insert

        from loopml.stores.metadata.database import append_event
        from loopml.stores.metadata.schema.data import dataset_tags

        if not tag or "@" in tag or tag.isdigit() or (tag[:1] == "v" and tag[1:].isdigit()):
            raise InvalidParameterError("tag", "data tag", "a name that is not a version number (like v3)", tag)
        v = self.resolve(ref)
        with self.db.write() as conn:
            conn.execute(dataset_tags.delete().where(dataset_tags.c.name == v.name, dataset_tags.c.tag == tag))
            conn.execute(insert(dataset_tags).values(name=v.name, tag=tag, version_id=v.id, created_at=time.time()))
            append_event(conn, actor=self.settings.actor, action="dataset.tagged", object_type="dataset_version",
                         object_id=v.id, details={"tag": tag})
        return self.resolve(v.id)

    # -- working copy -----------------------------------------------------------------

    def status(self, path: str | os.PathLike[str], name: str) -> StatusReport:
        """What changed at ``path`` since the latest version of ``name`` (only changed files are rehashed)."""
        try:
            base = self.resolve(name)
        except NotFoundError:
            base = None
        _, entries, fingerprint = scan_path(Path(path))
        cache = self._state_cache
        tree_key = os.path.abspath(path)
        known = cache.tree_content(tree_key, fingerprint)
        if base is not None and known == base.content_digest:
            return StatusReport(name=name, base=base.label, hashed_files=0)
        digests, hashed = cache.digests(entries)
        content = manifest_digest([FileEntry(e.rel, e.size, digests[e.abspath]) for e in entries])
        if content != known:
            cache.remember_tree(tree_key, fingerprint, content)
        if base is not None and content == base.content_digest:
            return StatusReport(name=name, base=base.label, hashed_files=hashed)
        now = {e.rel: digests[e.abspath] for e in entries}
        old = {f.path: f.digest for f in self.files(base)} if base else {}
        return StatusReport(
            name=name, base=base.label if base else None,
            added=sorted(set(now) - set(old)), removed=sorted(set(old) - set(now)),
            modified=sorted(p for p in set(now) & set(old) if now[p] != old[p]), hashed_files=hashed)

    def checkout(self, ref: str, dest: str | os.PathLike[str] | None = None, *, link: LinkMode = "copy",
                 progress: Progress | None = None) -> Path:
        """Write a version's files under ``dest`` (default ./NAME); paths may not escape it."""
        v = self.resolve(ref)
        files = self.files(v)
        root = Path(dest) if dest is not None else Path(v.name.rsplit("/", 1)[-1])
        root_abs = root.resolve()
        targets: list[tuple[FileEntry, Path]] = []
        for f in files:
            pure = PurePosixPath(f.path)
            target = (root_abs / pure).resolve()
            if pure.is_absolute() or ".." in pure.parts or not target.is_relative_to(root_abs):
                raise DataInputError(f"The path {f.path!r} of {v.label} would escape the target directory "
                                     f"{str(root_abs)!r}; nothing was written.")
            targets.append((f, target))
        missing = self.objects.missing(sorted({f.digest for f in files}))
        if missing:
            raise NotFoundError(f"{len(missing)} objects of {v.label} are not in the local store.",
                                hint="Pull them first: loopml data pull " + v.label)
        progress = progress or NullProgress()
        with progress.task(f"Checking out {v.label}", sum(f.size for f in files), unit="bytes") as advance:
            def one(item: tuple[FileEntry, Path]) -> None:
                f, target = item
                self.objects.export(f.digest, target, link=link)
                advance(f.size)

            with ThreadPoolExecutor(max_workers=max(1, min(8, len(targets)))) as pool:
                list(pool.map(one, targets))
        return root_abs

    def local_path(self, ref: str) -> Path:
        """A local path holding the version (the file itself for file/table versions), materialized once."""
        v = self.resolve(ref)
        final = self.cache_dir / v.id
        if not final.exists():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=".tmp-"))
            try:
                self.checkout(v.id, tmp, link="auto")
                try:
                    os.rename(tmp, final)
                except OSError:
                    if not final.exists():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        if v.kind in ("file", "table"):
            files = self.files(v)
            if len(files) == 1:
                return final / files[0].path
        return final

    def load_table(self, ref: str) -> Any:
        """The version as a pandas DataFrame (tables only)."""
        v = self.resolve(ref)
        if v.kind != "table":
            raise InvalidParameterError("ref", "data load_table", "a table version (CSV or Parquet)", ref)
        return read_table(self.local_path(v.id), display_path=v.label)

    # -- comparing --------------------------------------------------------------------

    def diff(self, a: str, b: str) -> DatasetDiff:
        from loopml.services.data.diff import DatasetDiff, diff_manifests, diff_stats

        va, vb = self.resolve(a), self.resolve(b)
        result = DatasetDiff(va.label, vb.label)
        result.added, result.removed, result.modified = diff_manifests(self.files(va), self.files(vb))
        diff_stats(result, va.stats, vb.stats)
        return result

    # -- validation -------------------------------------------------------------------

    def set_rules(self, name: str, rules: dict[str, Any]) -> None:
        from loopml.stores.metadata.database import append_event
        from loopml.stores.metadata.schema.data import dataset_rules

        check_name(name)
        with self.db.write() as conn:
            conn.execute(dataset_rules.delete().where(dataset_rules.c.name == name))
            conn.execute(dataset_rules.insert().values(name=name, rules=rules, updated_at=time.time()))
            append_event(conn, actor=self.settings.actor, action="dataset.rules_set", object_type="dataset",
                         object_id=name, details={"rules": rules})

    def get_rules(self, name: str) -> dict[str, Any] | None:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.data import dataset_rules

        with self.db.read() as conn:
            value = conn.execute(select(dataset_rules.c.rules).where(dataset_rules.c.name == name)).scalar()
        return dict(value) if value is not None else None

    def validate(self, ref: str, rules: dict[str, Any] | None = None) -> ValidationReport:
        """Run ``rules`` (or the rules attached to the dataset) on a table version."""
        from loopml.services.data.validation import run_rules

        v = self.resolve(ref)
        rules = rules if rules is not None else self.get_rules(v.name)
        if rules is None:
            raise ValidationFailedError(f"No rules for {v.name!r}.",
                                        hint="Pass --rules FILE or attach rules: loopml data rules set NAME FILE")
        return run_rules(self.load_table(v.id), rules, v.label)

    # -- lineage ----------------------------------------------------------------------

    def record_use(self, version_id: str, *, consumer_type: str, consumer_id: str, role: str = "input") -> None:
        """Record that a consumer (run, pipeline run, model …) read a dataset version; idempotent."""
        from sqlalchemy import insert, select

        from loopml.stores.metadata.database import append_event
        from loopml.stores.metadata.schema.data import dataset_uses as du
        from loopml.stores.metadata.schema.data import dataset_versions as dv

        with self.db.write() as conn:
            if conn.execute(select(dv.c.id).where(dv.c.id == version_id)).first() is None:
                raise NotFoundError(f"No dataset version with id {version_id!r}.")
            exists = conn.execute(select(du.c.ts).where(
                du.c.version_id == version_id, du.c.consumer_type == consumer_type,
                du.c.consumer_id == consumer_id, du.c.role == role)).first()
            if exists is not None:
                return
            conn.execute(insert(du).values(version_id=version_id, consumer_type=consumer_type,
                                           consumer_id=consumer_id, role=role, ts=time.time()))
            append_event(conn, actor=self.settings.actor, action="dataset.used", object_type="dataset_version",
                         object_id=version_id, details={"consumer_type": consumer_type,
                                                        "consumer_id": consumer_id, "role": role})

    def consumers_of(self, version_id: str) -> list[DatasetUse]:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.data import dataset_uses as du

        with self.db.read() as conn:
            rows = conn.execute(select(du).where(du.c.version_id == version_id).order_by(du.c.ts)).all()
        return [DatasetUse(r.version_id, r.consumer_type, r.consumer_id, r.role, float(r.ts)) for r in rows]

    def inputs_of(self, consumer_type: str, consumer_id: str) -> list[DatasetVersion]:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.data import dataset_uses as du

        with self.db.read() as conn:
            ids = [r[0] for r in conn.execute(select(du.c.version_id).where(
                du.c.consumer_type == consumer_type, du.c.consumer_id == consumer_id).order_by(du.c.ts))]
        return [self.resolve(i) for i in ids]

    # -- upkeep -----------------------------------------------------------------------

    def gc(self, *, dry_run: bool = False, grace_seconds: float = 3600.0) -> tuple[int, int]:
        """Delete objects referenced by nothing (older than the grace period); returns (count, bytes)."""
        referenced = self.db.referenced_digests()
        now = time.time()
        count = size = 0
        for obj in list(self.objects.iter_objects()):
            if obj.digest in referenced:
                continue
            added = self.objects.added_at(obj.digest)
            if added is not None and now - added < grace_seconds:
                continue
            count += 1
            size += obj.size
            if not dry_run:
                self.objects.delete(obj.digest)
        if not dry_run:
            self.objects.compact(grace_seconds=grace_seconds)  # packed objects' bytes, abandoned packs
            if count:
                self._audit("data.gc", "object_store", self.objects.url,
                            {"objects": count, "bytes": size, "grace_seconds": grace_seconds})
        return count, size
