"""``loopml.data``: version files and tables from Python (opens the workspace at call time)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loopml.domain.data import DatasetVersion

__all__ = ["add", "checkout", "get", "ls", "save", "show"]


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
