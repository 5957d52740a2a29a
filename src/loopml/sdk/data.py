"""``loopml.data``: version files and tables from Python (opens the workspace at call time)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loopml.domain.data import DatasetVersion

__all__ = ["add", "checkout", "diff", "gc", "get", "ls", "pull", "push", "save", "show", "status", "tag",
           "validate"]


def _ws(workspace: str | os.PathLike[str] | None) -> Any:
    from loopml.workspace import Workspace

    return Workspace.open(workspace)


def save(table: Any, name: str, *, tags: tuple[str, ...] = (), message: str | None = None,
         workspace: str | os.PathLike[str] | None = None) -> DatasetVersion:
    """Store a pandas DataFrame or Arrow table as a Parquet dataset version."""
    with _ws(workspace) as ws:
        return ws.data.save_table(table, name, tags=tags, message=message)


def add(path: str | os.PathLike[str], name: str | None = None, *, tags: tuple[str, ...] = (),
        message: str | None = None, workspace: str | os.PathLike[str] | None = None) -> DatasetVersion:
    """Version a file or directory."""
    with _ws(workspace) as ws:
        return ws.data.add(path, name or Path(path).resolve().name, tags=tags,
                           message=message)


def get(ref: str, *, as_path: bool = False, workspace: str | os.PathLike[str] | None = None) -> Any:
    """A table version as a DataFrame; a file or directory version (or ``as_path=True``) as a local Path."""
    with _ws(workspace) as ws:
        v = ws.data.resolve(ref)
        if v.kind == "table" and not as_path:
            return ws.data.load_table(v.id)
        return ws.data.local_path(v.id)


def show(ref: str, *, workspace: str | os.PathLike[str] | None = None) -> DatasetVersion:
    with _ws(workspace) as ws:
        return ws.data.resolve(ref)


def ls(name: str | None = None, *, workspace: str | os.PathLike[str] | None = None) -> list[DatasetVersion]:
    with _ws(workspace) as ws:
        return ws.data.list_versions(name)


def checkout(ref: str, dest: str | os.PathLike[str] | None = None, *, link: str = "copy",
             workspace: str | os.PathLike[str] | None = None) -> Path:
    with _ws(workspace) as ws:
        return ws.data.checkout(ref, dest, link=link)


def status(path: str | os.PathLike[str], name: str | None = None, *,
           workspace: str | os.PathLike[str] | None = None) -> Any:
    """What changed at ``path`` since the latest version of ``name`` (a StatusReport)."""
    with _ws(workspace) as ws:
        return ws.data.status(path, name or Path(path).resolve().name)


def diff(a: str, b: str, *, workspace: str | os.PathLike[str] | None = None) -> Any:
    """Files added, removed and modified between two versions; for tables also rows, schema and statistics."""
    with _ws(workspace) as ws:
        return ws.data.diff(a, b)


def tag(ref: str, name: str, *, workspace: str | os.PathLike[str] | None = None) -> DatasetVersion:
    """Tag a version (the tag moves if another version of the dataset had it)."""
    with _ws(workspace) as ws:
        return ws.data.tag(ref, name)


def validate(ref: str, rules: dict[str, Any] | None = None, *,
             workspace: str | os.PathLike[str] | None = None) -> Any:
    """Check a table version against ``rules`` (default: the dataset's attached rules); a ValidationReport."""
    with _ws(workspace) as ws:
        return ws.data.validate(ref, rules)


def push(refs: list[str] | None = None, *, remote: str | None = None,
         workspace: str | os.PathLike[str] | None = None) -> Any:
    """Upload the objects of ``refs`` (default: every version) that the remote lacks."""
    with _ws(workspace) as ws:
        return ws.data.push(refs, remote=remote)


def pull(refs: list[str] | None = None, *, remote: str | None = None,
         workspace: str | os.PathLike[str] | None = None) -> Any:
    """Download the objects of ``refs`` (default: every version) the local store lacks, each verified."""
    with _ws(workspace) as ws:
        return ws.data.pull(refs, remote=remote)


def gc(*, dry_run: bool = False, grace_seconds: float = 3600.0,
       workspace: str | os.PathLike[str] | None = None) -> tuple[int, int]:
    """Delete objects no version references (older than the grace period); (objects, bytes)."""
    with _ws(workspace) as ws:
        return ws.data.gc(dry_run=dry_run, grace_seconds=grace_seconds)
