"""Differences between two dataset versions: files, and for tables rows, schema and column statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopml.domain.data import FileEntry


@dataclass
class DatasetDiff:
    a: str
    b: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    rows: tuple[int, int] | None = None
    schema_changes: list[str] = field(default_factory=list)
    stat_changes: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "added": self.added, "removed": self.removed,
                "modified": self.modified, "rows": list(self.rows) if self.rows else None,
                "schema_changes": self.schema_changes,
                "stat_changes": {c: {k: list(v) for k, v in ch.items()} for c, ch in self.stat_changes.items()}}


_STAT_KEYS = ("dtype", "null_count", "distinct", "min", "max", "mean", "std")


def diff_manifests(a: list[FileEntry], b: list[FileEntry]) -> tuple[list[str], list[str], list[str]]:
    da = {f.path: f.digest for f in a}
    db = {f.path: f.digest for f in b}
    added = sorted(set(db) - set(da))
    removed = sorted(set(da) - set(db))
    modified = sorted(p for p in set(da) & set(db) if da[p] != db[p])
    return added, removed, modified


def diff_stats(result: DatasetDiff, sa: dict[str, Any] | None, sb: dict[str, Any] | None) -> None:
    if not sa or not sb:
        return
    result.rows = (int(sa.get("rows", 0)), int(sb.get("rows", 0)))
    schema_a, schema_b = sa.get("schema", {}), sb.get("schema", {})
    for col in schema_b:
        if col not in schema_a:
            result.schema_changes.append(f"+ {col} ({schema_b[col]})")
        elif schema_a[col] != schema_b[col]:
            result.schema_changes.append(f"~ {col}: {schema_a[col]} -> {schema_b[col]}")
    for col in schema_a:
        if col not in schema_b:
            result.schema_changes.append(f"- {col} ({schema_a[col]})")
    ca, cb = sa.get("columns", {}), sb.get("columns", {})
    for col in sorted(set(ca) & set(cb)):
        changes = {k: (ca[col].get(k), cb[col].get(k)) for k in _STAT_KEYS
                   if ca[col].get(k) != cb[col].get(k)}
        if changes:
            result.stat_changes[col] = changes
