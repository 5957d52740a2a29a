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
    "dataset",
    "log_metrics",
    "pipeline",
    "register_materializer",
    "run_pipeline",
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
