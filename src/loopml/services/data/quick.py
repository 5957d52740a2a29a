"""Quick answers for `data status` and an unchanged `data add` on the embedded SQLite workspace (stdlib only).

The answer "nothing changed" needs no SQLAlchemy: scan the working copy, compare
the fingerprint of its stat identities with the one the data service recorded
when it last hashed that path (in ``.loopml/hash-state.db``), and read the
version row with the stdlib ``sqlite3``. Every function here returns ``None``
when it cannot answer with certainty (PostgreSQL, a schema not at this code's
head revision, a changed file, any error); the caller then runs the full path,
which gives the same answer or the proper error.
"""

from __future__ import annotations

import os

from loopml.errors import LoopmlError
from loopml.services.data.scan import fingerprint_path

TYPE_CHECKING = False  # not `import typing` (nor json, tomllib, re): start-up is what this module saves
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Mapping
    from typing import Any
else:
    try:  # the C module alone: sqlite3's Python layer loads datetime for adapters this path never uses (~2 ms)
        import _sqlite3 as sqlite3
    except ImportError:
        import sqlite3

WORKSPACE_DIRNAME = ".loopml"  # the same names as loopml.settings, without importing it
STATE_DB_FILENAME = "hash-state.db"
TREE_SCHEMA = "CREATE TABLE IF NOT EXISTS tree_state (root TEXT PRIMARY KEY, fingerprint TEXT, content_digest TEXT)"
_KNOWN_SETTINGS = {"db_url", "artifacts", "s3_endpoint_url", "tracking_uri", "actor"}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./")
_MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "stores", "metadata", "migrations", "versions")
_VERSION_COLUMNS = ("id", "name", "version", "created_at", "num_files", "size", "kind", "content_digest",
                    "message", "status", "source", "stats", "validation", "created_by")


def is_valid_name(name: object) -> bool:
    """A dataset name: letters, digits, '-', '_', '.', '/', no '@', at most 200 characters."""
    return isinstance(name, str) and bool(name) and len(name) <= 200 and set(name) <= _NAME_CHARS


def find_workspace(start: str | None) -> str | None:
    """The nearest directory at or above ``start`` (default: here) holding ``.loopml/``."""
    here = os.path.realpath(start or os.getcwd())
    while True:
        if os.path.isdir(os.path.join(here, WORKSPACE_DIRNAME)):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def embedded_db_path(root: str, env: Mapping[str, str]) -> str | None:
    """The SQLite file of the workspace at ``root``, or None when it is not a plain embedded SQLite URL."""
    url = env.get("LOOPML_DB_URL") or None
    if url is None:
        config = os.path.join(root, WORKSPACE_DIRNAME, "config.toml")
        try:
            with open(config, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raw = b""
        except OSError:
            return None
        section = _simple_config(raw)
        if section is None:  # not the simple form loopml writes: let TOML read it
            import tomllib

            try:
                data = tomllib.loads(raw.decode("utf-8"))
            except ValueError:
                return None
            section = data.get("loopml", data)
        if not isinstance(section, dict) or not set(section) <= _KNOWN_SETTINGS:
            return None
        url = str(section["db_url"]) if "db_url" in section else None
    if url is None:
        return os.path.join(root, WORKSPACE_DIRNAME, "loopml.db")
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    rel = url[len("sqlite:///"):]
    if not rel or rel == ":memory:":
        return None
    path = rel if os.path.isabs(rel) else os.path.join(root, rel)
    return path if os.path.isfile(path) else None


def _simple_config(raw: bytes) -> dict[str, str] | None:
    """The ``[loopml]`` table of a config file in the form ``write_config_file`` writes, else None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    out: dict[str, str] = {}
    in_table = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line == "[loopml]" and not in_table and not out:
            in_table = True
            continue
        key, sep, value = line.partition(" = ")
        if not (in_table and sep and key.isidentifier() and len(value) >= 2 and value[0] == value[-1] == '"'):
            return None
        inner = value[1:-1]
        if "\\" in inner or '"' in inner:
            return None  # escapes: leave them to the TOML parser
        out[key] = inner
    return out


def _head_revision() -> str | None:
    try:
        names = [n.split("_", 1)[0] for n in os.listdir(_MIGRATIONS)
                 if n[:1].isdigit() and "_" in n and n.endswith(".py")]
    except OSError:
        return None
    return max(names) if names else None


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA query_only=1")
    return conn


def _known_content(state_db: str, path: str) -> tuple[str, str] | None:
    """(kind, content digest) of the working copy at ``path`` if it is exactly as last hashed, else None."""
    if not os.path.isfile(state_db):
        return None
    root = os.path.abspath(path)
    conn = _connect(state_db)
    try:
        row = conn.execute("SELECT fingerprint, content_digest FROM tree_state WHERE root = ?", (root,)).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    kind, fingerprint = fingerprint_path(path, fork=True)
    if fingerprint != row[0]:
        return None
    return kind, row[1]


def _open_metadata(db_path: str) -> sqlite3.Connection | None:
    conn = _connect(db_path)
    head = _head_revision()
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    if head is None or row is None or row[0] != head:
        conn.close()
        return None  # the full path migrates (or refuses) first
    return conn


def _read_if_clean(ws_root: str, db_path: str, path: str, name: str,
                   read: Callable[[sqlite3.Connection, str], Any]) -> Any:
    """``read(metadata connection, content digest)`` when ``path`` is exactly as last hashed, else None.

    None also for anything this path cannot vouch for (a scan error, an old schema …): the full CLI
    then gives the answer or the proper error.
    """
    if not is_valid_name(name):
        return None
    try:
        known = _known_content(os.path.join(ws_root, WORKSPACE_DIRNAME, STATE_DB_FILENAME), path)
        if known is None:
            return None
        conn = _open_metadata(db_path)
        if conn is None:
            return None
        try:
            return read(conn, known[1])
        finally:
            conn.close()
    except (sqlite3.Error, OSError, ValueError, ImportError, LoopmlError):
        return None


def quick_status(ws_root: str, db_path: str, path: str, name: str) -> dict[str, Any] | None:
    """The clean status report of ``path`` against the latest version of ``name``, or None."""

    def read(conn: sqlite3.Connection, digest: str) -> dict[str, Any] | None:
        row = conn.execute("SELECT version, content_digest FROM dataset_versions WHERE name = ? "
                           "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
        if row is None or row[1] != digest:
            return None
        return {"name": name, "base": f"{name}@v{int(row[0])}", "added": [], "removed": [], "modified": [],
                "hashed_files": 0}

    result: dict[str, Any] | None = _read_if_clean(ws_root, db_path, path, name, read)
    return result


def quick_unchanged_add(ws_root: str, db_path: str, path: str, name: str) -> dict[str, Any] | None:
    """The existing version an add of ``path`` as ``name`` would return unchanged (as a dict), or None."""

    def read(conn: sqlite3.Connection, digest: str) -> tuple[Any, list[str]] | None:
        row = conn.execute(f"SELECT {', '.join(_VERSION_COLUMNS)} FROM dataset_versions "
                           "WHERE name = ? AND content_digest = ? ORDER BY version LIMIT 1",
                           (name, digest)).fetchone()
        if row is None:
            return None
        return row, sorted(r[0] for r in conn.execute("SELECT tag FROM dataset_tags WHERE version_id = ?",
                                                      (row[0],)))

    found = _read_if_clean(ws_root, db_path, path, name, read)
    if found is None:
        return None
    row, tags = found
    v = dict(zip(_VERSION_COLUMNS, row, strict=True))
    for key in ("stats", "validation"):
        if isinstance(v[key], str | bytes):
            import json

            v[key] = json.loads(v[key])
    # The field order of domain.data.DatasetVersion (what the full path prints).
    return {"id": v["id"], "name": v["name"], "version": int(v["version"]), "created_at": float(v["created_at"]),
            "num_files": int(v["num_files"]), "size": int(v["size"]), "kind": v["kind"],
            "content_digest": v["content_digest"], "message": v["message"], "tags": tags, "status": v["status"],
            "source": v["source"], "stats": v["stats"], "validation": v["validation"],
            "created_by": v["created_by"]}
