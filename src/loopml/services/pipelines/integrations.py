"""The one place the pipelines part calls the tracking and data parts.

Both services are optional: when a part is not available (not installed in this build, or a
test passes none) pipelines still run, and nothing is recorded there.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from typing import Any

log = logging.getLogger("loopml.pipelines")

ServiceSource = Any  # a service, a zero-argument callable returning one, or None


def _resolve(source: ServiceSource) -> Any:
    if source is None:
        return None
    if isinstance(source, types.FunctionType):
        try:
            return source()
        except ImportError:
            return None
    return source


class Lazy:
    """A service fetched on first use; an ImportError (part not built yet) means 'not available'."""

    def __init__(self, source: ServiceSource) -> None:
        self._source = source
        self._value: Any = None
        self._done = False

    def get(self) -> Any:
        if not self._done:
            self._value = _resolve(self._source)
            self._done = True
        return self._value


class TrackingAdapter:
    """Pipeline runs as tracking runs, step runs as nested runs, under the same ids."""

    def __init__(self, source: ServiceSource) -> None:
        self._lazy = Lazy(source)

    @property
    def service(self) -> Any:
        return self._lazy.get()

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        svc = self.service
        if svc is None:
            return None
        try:
            return fn(svc)
        except Exception as exc:  # tracking must never break a pipeline run
            log.warning("tracking: could not %s: %s", what, exc)
            return None

    def start_pipeline(self, pipeline: str, run_id: str, params: dict[str, Any], target: str) -> str | None:
        return self._call("start the pipeline run", lambda s: s.create_run(
            f"pipeline:{pipeline}", name=f"{pipeline}-{run_id[-8:]}", params=_flat(params), run_id=run_id,
            tags={"loopml.pipeline": pipeline, "loopml.pipeline_run": run_id, "loopml.target": target}))

    def start_step(self, parent: str | None, pipeline: str, name: str, step_run_id: str, params: dict[str, Any],
                   cache_key: str | None) -> str | None:
        """Open the step's nested run when the step is handed to the executor (so its start time is real)."""
        if parent is None:
            return None
        result = self._call(f"start step {name}", lambda s: s.create_run(
            f"pipeline:{pipeline}", name=name, parent_id=parent, params=_flat(params), run_id=step_run_id,
            tags={"loopml.step": name, "loopml.step_run": step_run_id, "loopml.status": "RUNNING",
                  "loopml.cached": "false", "loopml.cache_key": cache_key or ""}))
        return result if isinstance(result, str) else None

    def finish_step(self, step: Any) -> None:
        """Log a step's metrics, captured output, timings and status to its nested run, and close it."""
        if step.tracking_run_id:
            self._call(f"record step {step.name}", lambda s: _finish(s, step, _step_tags(step)))

    def record_step(self, parent: str | None, pipeline: str, step: Any) -> str | None:
        """One nested run for a step run that finished without running (cached, reused, dataset).

        Its tags go in with the run, and a step without metrics needs no log_batch: two writes, not three.
        """
        if parent is None:
            return None

        def record(s: Any) -> str:
            run_id: str = s.create_run(f"pipeline:{pipeline}", name=step.name, parent_id=parent,
                                       params=_flat(step.params), run_id=step.id, tags=_step_tags(step))
            step.tracking_run_id = run_id
            _finish(s, step, None)
            return run_id

        result = self._call(f"record step {step.name}", record)
        return result if isinstance(result, str) else None

    def abandon_steps(self, run_ids: list[str]) -> None:
        """Close nested runs of steps that never finished (the user interrupted the pipeline)."""
        def close(s: Any) -> None:
            for rid in run_ids:
                s.end_run(rid, status="KILLED", error="interrupted by the user")

        if run_ids:
            self._call("close interrupted step runs", close)

    def use_dataset(self, run_id: str | None, ref: str) -> None:
        if run_id:
            self._call("record dataset use", lambda s: s.use_dataset(run_id, ref))

    def end_pipeline(self, run_id: str | None, failed: bool, error: str | None) -> None:
        if run_id is None:
            return

        def end(s: Any) -> None:
            from loopml.domain.tracking import RunStatus

            s.end_run(run_id, status=RunStatus.FAILED if failed else RunStatus.FINISHED, error=error)

        self._call("end the pipeline run", end)


class DataAdapter:
    """Dataset versions as pipeline inputs, and polling for new versions (triggers)."""

    def __init__(self, source: ServiceSource) -> None:
        self._lazy = Lazy(source)

    @property
    def service(self) -> Any:
        return self._lazy.get()

    @property
    def available(self) -> bool:
        return self.service is not None

    def _require(self) -> Any:
        svc = self.service
        if svc is None:
            from loopml.errors import PipelineDefinitionError

            raise PipelineDefinitionError(
                "This pipeline reads a dataset, but the data part is not available in this workspace."
            )
        return svc

    def resolve(self, ref: str) -> tuple[str, str]:
        """(version id, 'name@version') of a dataset reference."""
        v = self._require().resolve(ref)
        return str(v.id), str(getattr(v, "label", None) or f"{v.name}@v{v.version}")

    def latest_version_id(self, name: str) -> str | None:
        svc = self.service
        if svc is None:
            return None
        try:
            return str(svc.resolve(name).id)
        except Exception:
            return None

    def load_table(self, ref: str) -> Any:
        return self._require().load_table(ref)

    def uses(self, version_id: str) -> list[tuple[str, str]]:
        """(consumer type, consumer id) of everything recorded as having read this version, oldest first."""
        svc = self.service
        if svc is None:
            return []
        return [(u.consumer_type, u.consumer_id) for u in svc.consumers_of(version_id)]

    def record_use(self, version_id: str, consumer_type: str, consumer_id: str) -> None:
        svc = self.service
        if svc is None:
            return
        try:
            svc.record_use(version_id, consumer_type=consumer_type, consumer_id=consumer_id, role="input")
        except Exception as exc:  # lineage must never break a pipeline run, but must not vanish silently
            log.warning("data: could not record that %s %s read dataset version %s: %s", consumer_type,
                        consumer_id, version_id, exc)


def _step_tags(step: Any) -> dict[str, str]:
    return {"loopml.step": step.name, "loopml.step_run": step.id, "loopml.status": str(step.status),
            "loopml.cached": str(step.status in ("CACHED", "REUSED")).lower(),
            "loopml.cache_key": step.cache_key or "", "loopml.output": step.output_digest or "",
            "loopml.started": f"{step.started or 0:.3f}", "loopml.ended": f"{step.ended or 0:.3f}",
            "loopml.attempts": str(step.attempts)}


def _finish(s: Any, step: Any, tags: dict[str, str] | None) -> None:
    """Metrics (and ``tags``), captured stdout/stderr as artifacts, then the final status."""
    from loopml.domain.tracking import MetricPoint, RunStatus

    run_id = step.tracking_run_id
    ended = step.ended or 0.0
    points = [MetricPoint(k, float(v), 0, ended) for k, v in step.metrics.items()]
    if step.duration is not None and step.status not in ("CACHED", "REUSED"):  # a cache hit did not run
        points.append(MetricPoint("duration_s", float(step.duration), 0, ended))
    if points or tags:
        s.log_batch(run_id, metrics=points, tags=tags)
    for label, text in (("stdout", step.stdout), ("stderr", step.stderr)):
        if text:
            s.log_artifact_bytes(run_id, text.encode("utf-8"), f"{label}.txt")
    status = RunStatus.FAILED if step.status == "FAILED" else RunStatus.FINISHED
    s.end_run(run_id, status=status, error=step.error)


def _flat(params: dict[str, Any]) -> dict[str, str]:
    import json

    return {str(k): v if isinstance(v, str) else json.dumps(v, default=repr) for k, v in params.items()}
