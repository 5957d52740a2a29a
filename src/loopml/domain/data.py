"""Dataset versions, their files and lineage uses: plain dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DatasetKind = Literal["file", "directory", "table"]
VersionStatus = Literal["ok", "failing"]


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a dataset version: path relative to the version root, size, BLAKE3 digest."""

    path: str
    size: int
    digest: str


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    """An immutable dataset version; ``id`` is derived from its name and content."""

    id: str
    name: str
    version: int
    created_at: float
    num_files: int
    size: int
    kind: DatasetKind
    content_digest: str
    message: str | None = None
    tags: tuple[str, ...] = ()
    status: VersionStatus = "ok"
    source: str | None = None
    stats: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    created_by: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}@v{self.version}"


@dataclass(frozen=True, slots=True)
class DatasetUse:
    """A lineage record: a consumer (run, pipeline run, model …) read a dataset version."""

    version_id: str
    consumer_type: str
    consumer_id: str
    role: str
    ts: float


@dataclass(frozen=True, slots=True)
class AddResult:
    """What ``add`` did: the version, whether content was unchanged, how many files were hashed/stored."""

    version: DatasetVersion
    unchanged: bool
    hashed_files: int = 0
    stored_files: int = 0
    stored_bytes: int = 0


@dataclass
class StatusReport:
    """What changed in a working copy since the latest version of a dataset."""

    name: str
    base: str | None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    hashed_files: int = 0

    @property
    def clean(self) -> bool:
        return not (self.added or self.removed or self.modified)
