"""`status`: where a workspace keeps things and how much is there, read cheaply.

For SQLite it reads with the standard library's sqlite3 so that `loopml status`
starts fast without importing SQLAlchemy; PostgreSQL goes through the store.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from loopml.errors import DatabaseUnavailableError
from loopml.settings import Settings
from loopml.stores.metadata.revisions import head_revision


def _sqlite_counts(url: str) -> tuple[str | None, dict[str, int]]:
    path = url.split("///", 1)[1].split("?", 1)[0]
    if not os.path.exists(path):
        raise DatabaseUnavailableError(
            f"The database file {path!r} does not exist.", hint="Run `loopml init` to create the workspace."
        )
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
            version = None
            if "alembic_version" in names:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                version = row[0] if row else None
            counts = {n: int(conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0])
                      for n in sorted(names) if n != "alembic_version"}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise DatabaseUnavailableError(
            f"Cannot read the SQLite database {path!r}: {exc}.",
            hint="If the file is damaged, restore it from a backup; loopml changed nothing in it.",
        ) from exc
    return version, counts


def _local_object_totals(root: Path) -> tuple[int, int]:
    from loopml.stores.artifacts.backends import TMP_DIRNAME
    from loopml.stores.artifacts.packs import PackIndex

    count = size = 0
    if not root.is_dir():
        return 0, 0
    for fan in os.scandir(root):
        if fan.is_dir() and len(fan.name) == 2:
            for entry in os.scandir(fan.path):
                count += 1
                size += entry.stat().st_size
    packs = PackIndex(root, root / TMP_DIRNAME)
    try:
        packed, packed_bytes = packs.totals()
    finally:
        packs.close()
    return count + packed, size + packed_bytes


def describe_workspace(settings: Settings) -> dict[str, Any]:
    """A plain dict for `loopml status` (and its --json form)."""
    if settings.db_url.startswith("sqlite"):

        version, counts = _sqlite_counts(settings.db_url)
        db_display = settings.db_url
    else:
        from loopml.stores.metadata.database import Database

        db = Database(settings.db_url)
        try:
            version = db.schema_version()
            counts = db.table_counts()
        finally:
            db.dispose()
        db_display = db.display_url
    info: dict[str, Any] = {
        "root": str(settings.root),
        "config": str(settings.config_path),
        "database": db_display,
        "schema_version": version,
        "schema_head": head_revision(),
        "artifacts": settings.artifacts,
        "counts": counts,
        "sources": dict(settings.sources),
    }
    if settings.artifacts_is_local:
        objects, size = _local_object_totals(Path(settings.artifacts.removeprefix("file://")))
        info["objects"] = objects
        info["object_bytes"] = size
    return info
