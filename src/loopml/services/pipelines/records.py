"""Reading and writing pipeline runs, step runs and their inputs in the metadata database."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, insert, select, update

from loopml.domain.pipelines import PipelineRun, PipelineRunStatus, StepRun, StepStatus
from loopml.errors import NotFoundError, PipelineDefinitionError
from loopml.stores.metadata.database import Database, append_event
from loopml.stores.metadata.schema.pipelines import (
    pipeline_runs,
    pipeline_step_inputs,
    pipeline_step_runs,
)


def step_from_row(row: Any) -> StepRun:
    return StepRun(
        id=row.id, pipeline_run_id=row.pipeline_run_id, name=row.name, func=row.func,
        status=StepStatus(row.status), cache_key=row.cache_key, key_parts=row.key_parts or {},
        params=row.params or {}, output_digest=row.output_digest, materializer=row.materializer,
        source_step_run_id=row.source_step_run_id, started=row.started, ended=row.ended,
        attempts=row.attempts or 0, error=row.error, stdout=row.stdout or "", stderr=row.stderr or "",
        tracking_run_id=row.tracking_run_id, metrics=row.metrics or {},
    )


def run_from_row(row: Any) -> PipelineRun:
    return PipelineRun(
        id=row.id, pipeline=row.pipeline, target=row.target, status=PipelineRunStatus(row.status),
        params=row.params or {}, executor=row.executor, started=row.started, ended=row.ended,
        error=row.error, resumed_from=row.resumed_from, tracking_run_id=row.tracking_run_id,
    )


def insert_run(db: Database, actor: str, run: PipelineRun) -> None:
    with db.write() as conn:
        conn.execute(insert(pipeline_runs).values(
            id=run.id, pipeline=run.pipeline, target=run.target, status=str(run.status), params=run.params,
            executor=run.executor, started=run.started, resumed_from=run.resumed_from,
        ))
        append_event(conn, actor=actor, action="pipeline.run.start", object_type="pipeline_run",
                     object_id=run.id, details={"pipeline": run.pipeline, "target": run.target,
                                                "resumed_from": run.resumed_from})


def set_run_tracking(db: Database, run_id: str, tracking_run_id: str) -> None:
    with db.write() as conn:
        conn.execute(update(pipeline_runs).where(pipeline_runs.c.id == run_id)
                     .values(tracking_run_id=tracking_run_id))


def finish_run(db: Database, actor: str, run_id: str, status: PipelineRunStatus, error: str | None,
               skipped: Iterable[StepRun] = (), pipeline: str = "") -> None:
    with db.write() as conn:
        for s in skipped:
            _insert_step(conn, s, {}, pipeline)
        conn.execute(update(pipeline_runs).where(pipeline_runs.c.id == run_id)
                     .values(status=str(status), ended=time.time(), error=error))
        append_event(conn, actor=actor, action=f"pipeline.run.{status.lower()}", object_type="pipeline_run",
                     object_id=run_id, details={"error": error} if error else {})


def _insert_step(conn: Connection, s: StepRun, inputs: dict[str, tuple[str, str, str | None, str | None]],
                 pipeline: str) -> None:
    conn.execute(insert(pipeline_step_runs).values(
        id=s.id, pipeline_run_id=s.pipeline_run_id, pipeline=pipeline, name=s.name,
        func=s.func, status=str(s.status), cache_key=s.cache_key,
        key_parts=s.key_parts, params=s.params,
        output_digest=s.output_digest, materializer=s.materializer, source_step_run_id=s.source_step_run_id,
        started=s.started, ended=s.ended, attempts=s.attempts, error=s.error, stdout=s.stdout or None,
        stderr=s.stderr or None, tracking_run_id=s.tracking_run_id, metrics=s.metrics,
    ))
    if inputs:
        conn.execute(insert(pipeline_step_inputs), [
            {"step_run_id": s.id, "arg": arg, "digest": d, "materializer": m, "source": src,
             "dataset_version_id": dv}
            for arg, (d, m, src, dv) in inputs.items()
        ])


def record_steps(
    db: Database, actor: str, pipeline: str,
    steps: list[tuple[StepRun, dict[str, tuple[str, str, str | None, str | None]]]],
) -> None:
    """Store finished step runs (with their inputs) and one audit event each, in one transaction."""
    if not steps:
        return
    with db.write() as conn:
        for s, inputs in steps:
            _insert_step(conn, s, inputs, pipeline)
            append_event(conn, actor=actor, action=f"pipeline.step.{s.status.lower()}", object_type="step_run",
                         object_id=s.id, details={"step": s.name, "pipeline_run": s.pipeline_run_id,
                                                  "output": s.output_digest})


def set_step_tracking(db: Database, pairs: list[tuple[str, str]]) -> None:
    if not pairs:
        return
    with db.write() as conn:
        for step_id, tracking_id in pairs:
            conn.execute(update(pipeline_step_runs).where(pipeline_step_runs.c.id == step_id)
                         .values(tracking_run_id=tracking_id))


def find_cached(conn: Connection, cache_key: str) -> Any:
    """The newest successful step run with this cache key, or None."""
    return conn.execute(
        select(pipeline_step_runs)
        .where(pipeline_step_runs.c.cache_key == cache_key,
               pipeline_step_runs.c.status.in_(["FINISHED", "CACHED", "REUSED"]),
               pipeline_step_runs.c.output_digest.is_not(None))
        .order_by(pipeline_step_runs.c.started.desc()).limit(1)
    ).first()


def resolve_run_id(conn: Connection, ref: str) -> str:
    """A full run id from an id or its unique tail (as shown in listings)."""
    ref = ref.strip()
    row = conn.execute(select(pipeline_runs.c.id).where(pipeline_runs.c.id == ref)).first()
    if row:
        return str(row.id)
    if len(ref) >= 4:
        rows = conn.execute(select(pipeline_runs.c.id).where(pipeline_runs.c.id.like(f"%{ref}")).limit(2)).all()
        if len(rows) == 1:
            return str(rows[0].id)
        if len(rows) > 1:
            raise PipelineDefinitionError(f"The run id {ref!r} is ambiguous.", hint="Give more characters.")
    raise NotFoundError(f"No pipeline run {ref!r}.", hint="List runs with `loopml pipeline ls`.")


def load_run(db: Database, ref: str) -> PipelineRun:
    with db.read() as conn:
        run_id = resolve_run_id(conn, ref)
        row = conn.execute(select(pipeline_runs).where(pipeline_runs.c.id == run_id)).one()
        run = run_from_row(row)
        steps = conn.execute(select(pipeline_step_runs).where(pipeline_step_runs.c.pipeline_run_id == run_id)
                             .order_by(pipeline_step_runs.c.started, pipeline_step_runs.c.name)).all()
        run.steps = [step_from_row(s) for s in steps]
        ids = [s.id for s in run.steps]
        if ids:
            by_step: dict[str, dict[str, str]] = {}
            for r in conn.execute(select(pipeline_step_inputs).where(pipeline_step_inputs.c.step_run_id.in_(ids))):
                by_step.setdefault(r.step_run_id, {})[r.arg] = r.digest
            for s in run.steps:
                s.inputs = by_step.get(s.id, {})
    return run


def list_runs(db: Database, pipeline: str | None = None, limit: int = 50) -> list[PipelineRun]:
    q = select(pipeline_runs).order_by(pipeline_runs.c.started.desc()).limit(limit)
    if pipeline:
        q = q.where(pipeline_runs.c.pipeline == pipeline)
    with db.read() as conn:
        return [run_from_row(r) for r in conn.execute(q)]
