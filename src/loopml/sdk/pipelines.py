"""The pipelines SDK: ``loopml.step``, ``loopml.pipeline``, ``loopml.run_pipeline`` and helpers used inside steps."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopml.domain.pipelines import PipelineRun
from loopml.services.pipelines.dsl import Pipeline, Step, dataset, pipeline, step
from loopml.services.pipelines.executors import log_step_metrics
from loopml.services.pipelines.materializers import register_materializer

__all__ = [
    "Pipeline",
    "PipelineRun",
    "Step",
    "add_trigger",
    "dataset",
    "emit_alert",
    "lineage",
    "log_metrics",
    "pipeline",
    "register_materializer",
    "run_pipeline",
    "schedule",
    "step",
]


def log_metrics(**values: float) -> None:
    """Inside a step: record metrics on its step run (and its nested tracking run)."""
    log_step_metrics(values)


def run_pipeline(
    target: str | Pipeline,
    *,
    params: Mapping[str, Any] | None = None,
    executor: str = "inline",
    workers: int | None = None,
    scheduler: str | None = None,
    no_cache: bool = False,
    workspace: str | Path | None = None,
) -> PipelineRun:
    """Run a pipeline (a ``@pipeline`` function or ``"module:function"``) in the nearest workspace."""
    from loopml.progress import auto_progress
    from loopml.workspace import Workspace

    with Workspace.open(workspace) as ws:
        return ws.pipelines.run(target, params=params, executor=executor, workers=workers, scheduler=scheduler,
                                no_cache=no_cache, progress=auto_progress())


def schedule(name: str, target: str, cron: str, *, params: Mapping[str, Any] | None = None,
             workspace: str | Path | None = None) -> Any:
    """Store a cron schedule for ``target``; `loopml scheduler` runs it."""
    from loopml.workspace import Workspace

    with Workspace.open(workspace) as ws:
        return ws.pipelines.add_schedule(name, target, cron, params)


def add_trigger(name: str, target: str, *, on_dataset: str | None = None, on_alert: str | None = None,
                params: Mapping[str, Any] | None = None, pass_as: str | None = None,
                workspace: str | Path | None = None) -> Any:
    """Run ``target`` on a new version of ``on_dataset`` or when alert ``on_alert`` fires."""
    from loopml.workspace import Workspace

    with Workspace.open(workspace) as ws:
        return ws.pipelines.add_trigger(name, target, on_dataset=on_dataset, on_alert=on_alert, params=params,
                                        pass_as=pass_as)


def emit_alert(alert: str, key: str, *, workspace: str | Path | None = None) -> list[tuple[str, str | None, str]]:
    """Tell alert triggers that ``alert`` fired (once per ``key``); returns (trigger, run id, status)."""
    from loopml.workspace import Workspace

    with Workspace.open(workspace) as ws:
        return ws.pipelines.emit_event("alert", alert, key)


def lineage(obj: str, *, workspace: str | Path | None = None) -> str:
    """Lineage of an artifact digest, pipeline run, step run or tracking run, as text."""
    from loopml.services.pipelines.lineage import render_text
    from loopml.workspace import Workspace

    with Workspace.open(workspace) as ws:
        return render_text(ws.pipelines.lineage(obj))
