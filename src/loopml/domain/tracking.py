"""Tracking objects: experiments, runs, metric points."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One logged value of a metric; ``ts`` is unix seconds, ``step`` defaults to 0."""

    key: str
    value: float
    step: int = 0
    ts: float = 0.0


@dataclass
class Run:
    """A tracked run; ``metrics`` holds the latest value of each key."""

    id: str
    experiment: str
    name: str | None
    status: RunStatus
    start_time: float
    end_time: float | None = None
    parent_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    deleted: bool = False

    @property
    def duration(self) -> float | None:
        return None if self.end_time is None else self.end_time - self.start_time
