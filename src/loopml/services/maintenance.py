"""Workspace upkeep: describe where things live, check schema and object integrity."""

from __future__ import annotations

from dataclasses import dataclass, field

from loopml.progress import NullProgress, Progress
from loopml.stores.artifacts.backends import LocalBackend
from loopml.stores.artifacts.cas import ContentStore
from loopml.stores.metadata.database import Database
from loopml.stores.metadata.revisions import head_revision


@dataclass
class DoctorReport:
    """What `doctor` found; ``ok`` is False when anything needs a user's attention."""

    schema_version: str | None
    schema_head: str
    objects_checked: int = 0
    bytes_checked: int = 0
    corrupt: list[tuple[str, str | None]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stray_temp_files: int = 0
    verified: bool = False

    @property
    def ok(self) -> bool:
        return self.schema_version == self.schema_head and not self.corrupt and not self.missing


def check_workspace(
    db: Database, objects: ContentStore, *, verify: bool = False, progress: Progress | None = None
) -> DoctorReport:

    """Check the schema; with ``verify``, rehash every object and find referenced-but-missing ones."""
    reporter: Progress = progress if progress is not None else NullProgress()
    report = DoctorReport(schema_version=db.schema_version(), schema_head=head_revision())
    if isinstance(objects.backend, LocalBackend):
        report.stray_temp_files = objects.backend.count_temp_files()
    if not verify:
        return report
    report.verified = True
    stored = list(objects.iter_objects())
    with reporter.task("Verifying objects", sum(o.size for o in stored), unit="bytes") as advance:
        for ref in stored:
            check = objects.verify(ref.digest)
            report.objects_checked += 1
            report.bytes_checked += ref.size
            if check.status == "corrupt":
                report.corrupt.append((ref.digest, check.actual))
            elif check.status == "missing":  # listed but unreadable (e.g. its pack file is gone)
                report.missing.append(ref.digest)
            advance(ref.size)
    present = {o.digest for o in stored} - set(report.missing)
    report.missing = sorted(set(report.missing) | (db.referenced_digests() - present))
    return report
