"""Pipeline objects: pipeline runs, step runs, schedules and triggers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    CACHED = "CACHED"
    REUSED = "REUSED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"

    @property
    def succeeded(self) -> bool:
        return self in (StepStatus.FINISHED, StepStatus.CACHED, StepStatus.REUSED)


class PipelineRunStatus(StrEnum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"


@dataclass
class StepRun:
    """One execution (or cache hit) of a step inside a pipeline run."""

    id: str
    pipeline_run_id: str
    name: str
    func: str
    status: StepStatus
    cache_key: str | None = None
    key_parts: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # argument name -> digest
    output_digest: str | None = None
    materializer: str | None = None
    source_step_run_id: str | None = None  # the step run whose output a cache hit reused
    started: float | None = None
    ended: float | None = None
    attempts: int = 0
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    tracking_run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


@dataclass
class PipelineRun:
    """One run of a pipeline: its target, parameters, status and step runs."""

    id: str
    pipeline: str
    target: str
    status: PipelineRunStatus
    params: dict[str, Any]
    executor: str
    started: float
    ended: float | None = None
    error: str | None = None
    resumed_from: str | None = None
    tracking_run_id: str | None = None
    steps: list[StepRun] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass
class Schedule:
    """A pipeline run on a cron expression by `loopml scheduler`."""

    id: str
    name: str
    target: str
    cron: str
    params: dict[str, Any]
    enabled: bool
    created: float


@dataclass
class Trigger:
    """A pipeline run when an event happens (a new dataset version, an alert)."""

    id: str
    name: str
    target: str
    event_type: str  # "dataset" or "alert"
    source: str  # dataset name or alert name
    params: dict[str, Any]
    enabled: bool
    created: float
    last_event: str | None = None
    pass_as: str | None = None  # the pipeline parameter that receives the event
