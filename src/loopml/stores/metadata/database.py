"""The metadata database: opening, safe automatic migration, transactions, audit events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, inspect, select, text
from sqlalchemy.exc import DatabaseError, OperationalError

from loopml.domain.ids import new_id
from loopml.errors import DatabaseUnavailableError, SchemaVersionError
from loopml.stores.metadata.engine import create_engine, display_url, is_sqlite
from loopml.stores.metadata.revisions import MIGRATIONS_DIR, head_revision, known_revisions

_PG_MIGRATION_LOCK_KEY = 0x6C6F6F706D6C  # "loopml"


class Database:
    """One metadata database (SQLite or PostgreSQL) at the current schema.

    ``write()`` gives a transaction that holds the write lock from its start;
    ``read()`` a connection for consistent reads that never blocks writers.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.display_url = display_url(url)
        self.is_sqlite = is_sqlite(url)
        self.engine = create_engine(url)

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Database:
        """Open the database, creating or upgrading its schema under a lock."""
        if is_sqlite(url):
            _check_sqlite_file(url)
        db = cls(url)
        if migrate:
            db.migrate()
        return db

    def _unavailable(self, exc: Exception) -> DatabaseUnavailableError:
        orig = getattr(exc, "orig", exc)
        if self.is_sqlite:
            return DatabaseUnavailableError(
                f"Cannot use the SQLite database {self.display_url!r}: {orig}.",
                hint="If the file is damaged, restore it from a backup; loopml changed nothing in it.",
            )
        return DatabaseUnavailableError(
            f"Cannot reach the database {self.display_url!r}: {str(orig).strip().splitlines()[0]}.",
            hint="Check that the server is running and LOOPML_DB_URL is right.",
        )

    def schema_version(self) -> str | None:
        """The stored schema revision, or None for an empty database."""
        try:
            with self.read() as conn:
                return _read_revision(conn)
        except (OperationalError, DatabaseError) as exc:
            raise self._unavailable(exc) from exc

    def migrate(self) -> None:
        """Bring the schema to this code's head revision.

        Safe when many processes open a new workspace at once: the check and the
        upgrade run in one transaction holding a database-wide lock (SQLite's
        write lock, PostgreSQL's advisory lock), and DDL is transactional on both.
        """
        head = head_revision()
        current = self.schema_version()
        if current == head:
            return
        self._check_not_newer(current)
        try:
            with self.engine.begin() as conn:
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK_KEY})
                current = _read_revision(conn)
                if current == head:
                    return
                self._check_not_newer(current)
                _run_alembic_upgrade(conn)
        except (OperationalError, DatabaseError) as exc:
            raise self._unavailable(exc) from exc

    def _check_not_newer(self, current: str | None) -> None:
        if current is not None and current not in known_revisions():
            raise SchemaVersionError(
                f"The database {self.display_url!r} has schema revision {current!r}, newer than this "
                f"loopml understands (up to {head_revision()!r}).",
                hint="Upgrade loopml (pip install -U loopml); the database was not changed.",
            )

    # -- transactions --------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; committed on success, rolled back on any exception."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
                yield conn
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    def dispose(self) -> None:
        self.engine.dispose()

    # -- introspection ---------------------------------------------------------

    def table_counts(self) -> dict[str, int]:
        from loopml.stores.metadata.schema import metadata

        with self.read() as conn:
            existing = set(inspect(conn).get_table_names())
            return {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in sorted(metadata.tables.items())
                if name in existing
            }

    def referenced_digests(self) -> set[str]:
        """Every artifact digest referenced by any table (columns marked ``object_ref``)."""
        from loopml.stores.metadata.schema import metadata

        refs: set[str] = set()
        with self.read() as conn:
            for table in metadata.tables.values():
                for column in table.columns:
                    if column.info.get("object_ref"):
                        rows = conn.execute(select(column).where(column.is_not(None)).distinct())
                        refs.update(r[0] for r in rows)
        return refs


def _read_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def _run_alembic_upgrade(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def _check_sqlite_file(url: str) -> None:
    """Fail early, naming the file, when a SQLite database's directory does not exist.

    The file itself is never read here: a plain ``open``/``close`` of a database file drops the
    process's SQLite (POSIX) locks and can let another process delete the WAL under a live
    connection. A file that is not a database is reported by SQLite itself on first use.
    """
    path_part = url.split("///", 1)[1] if "///" in url else ""
    if not path_part or path_part == ":memory:":
        return
    path = Path(path_part.split("?", 1)[0])
    if path.exists():
        return
    elif not path.parent.is_dir():
        raise DatabaseUnavailableError(
            f"The directory {str(path.parent)!r} for the database {str(path)!r} does not exist.",
            hint="Run `loopml init` or fix LOOPML_DB_URL.",
        )


def append_event(
    conn: Connection,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any] | None = None,
) -> str:
    """Record one audit event inside the caller's transaction; returns its id."""
    from loopml.stores.metadata.schema.core import events

    event_id = new_id()
    conn.execute(
        insert(events).values(
            id=event_id,
            ts=time.time(),
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            details=details or {},
        )
    )
    return event_id


_INSERT_SQL: dict[tuple[str, str, tuple[str, ...]], tuple[str, bool]] = {}


def insert_rows(conn: Connection, table: Any, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """``INSERT`` many rows given as tuples in ``columns`` order, straight to the driver's executemany.

    Used for metric history and dataset manifests, where building and binding one SQLAlchemy
    parameter set per row cost more than the database work. The SQL is compiled once per dialect.
    """
    cache_key = (conn.dialect.name, table.name, columns)
    cached = _INSERT_SQL.get(cache_key)
    if cached is None:
        compiled = insert(table).compile(dialect=conn.dialect, column_keys=list(columns))
        positional = bool(compiled.positional)
        if positional and tuple(compiled.positiontup or ()) != columns:
            raise AssertionError(f"unexpected parameter order {compiled.positiontup} for {columns}")
        cached = (str(compiled), positional)
        _INSERT_SQL[cache_key] = cached
    sql, positional = cached
    if positional:
        conn.exec_driver_sql(sql, rows)
    else:
        conn.exec_driver_sql(sql, [dict(zip(columns, r, strict=True)) for r in rows])
