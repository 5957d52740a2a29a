"""PipelineService: run, resume, inspect and explain pipelines; schedules and triggers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from loopml.domain.ids import new_id
from loopml.domain.pipelines import PipelineRun, Schedule, StepRun, StepStatus, Trigger
from loopml.errors import ConflictError, NotFoundError, PipelineDefinitionError
from loopml.progress import NullProgress, Progress
from loopml.services.pipelines import records
from loopml.services.pipelines.dsl import Dag, Pipeline, load_target
from loopml.services.pipelines.executors import Executor
from loopml.services.pipelines.integrations import DataAdapter, TrackingAdapter
from loopml.stores.metadata.database import append_event
from loopml.stores.metadata.schema.pipelines import (
    pipeline_schedule_slots,
    pipeline_schedules,
    pipeline_step_runs,
    pipeline_trigger_firings,
    pipeline_triggers,
)


def parse_param_pairs(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a=1", "train.lr=0.1"]`` -> ``{"a": 1, "train.lr": 0.1}``; values are read as YAML scalars."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise PipelineDefinitionError(f"The parameter {pair!r} must look like NAME=VALUE or STEP.ARG=VALUE.")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def load_params_file(path: str | Path) -> dict[str, Any]:
    """A YAML file of parameters: ``name: value`` and ``step: {arg: value}`` (or ``step.arg: value``)."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise PipelineDefinitionError(f"The parameters file {str(p)!r} does not exist.") from exc
    except yaml.YAMLError as exc:
        raise PipelineDefinitionError(f"The parameters file {str(p)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PipelineDefinitionError(f"The parameters file {str(p)!r} must hold a mapping of names to values.")
    data = data.get("parameters", data)
    return dict(data)


def flatten_params(params: Mapping[str, Any], pipeline: Pipeline) -> dict[str, Any]:
    """Nested ``{step: {arg: v}}`` becomes ``{"step.arg": v}`` unless ``step`` is a pipeline parameter."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict) and key not in pipeline.signature.parameters and "." not in key:
            for arg, v in value.items():
                out[f"{key}.{arg}"] = v
        else:
            out[key] = value
    return out


class PipelineService:
    """Runs pipelines in a workspace and answers questions about past runs.

    ``tracking`` and ``data`` are the other parts' services, or zero-argument callables
    returning them (so they load only when a pipeline actually records a run or reads a dataset).
    """

    def __init__(self, db: Any, objects: Any, settings: Any, *, tracking: Any = None, data: Any = None) -> None:
        self.db = db
        self.objects = objects
        self.settings = settings
        self.tracking = TrackingAdapter(tracking)
        self.data = DataAdapter(data)

    # -- running -----------------------------------------------------------------------------

    def load(self, target: str | Pipeline) -> Pipeline:
        return load_target(target, search_path=self.settings.root)

    def plan(self, target: str | Pipeline, params: Mapping[str, Any] | None = None) -> Dag:
        """Trace the pipeline with these parameters and validate it, running nothing."""
        pipeline = self.load(target)
        return pipeline.trace(flatten_params(params or {}, pipeline))

    def run(
        self,
        target: str | Pipeline,
        *,
        params: Mapping[str, Any] | None = None,
        executor: str | Executor = "inline",
        workers: int | None = None,
        scheduler: str | None = None,
        no_cache: bool = False,
        progress: Progress | None = None,
        resume_from: str | None = None,
    ) -> PipelineRun:
        """Run a pipeline; raises StepFailedError (with ``.run_id``) when a step fails.

        ``executor`` is a name (inline, process, dask) or an executor already made with
        ``make_executor`` (the CLI starts a Dask cluster that way before the workspace opens);
        either way it is closed when the run ends.
        """
        from loopml.services.pipelines.executors import Executor, make_executor
        from loopml.services.pipelines.runner import PipelineRunner, RunOptions

        if workers is not None and workers < 1:
            from loopml.errors import InvalidParameterError

            raise InvalidParameterError("workers", "pipeline run", "a positive integer", workers)
        # Made first: a Dask executor starts its cluster in the background while the pipeline loads.
        exe = executor if isinstance(executor, Executor) else make_executor(
            executor, self.objects, workers=workers, scheduler=scheduler)
        try:
            pipeline = self.load(target)
            flat = flatten_params(params or {}, pipeline)
            dag = pipeline.trace(flat)  # every parameter and call is checked before anything runs
            target_ref = target if isinstance(target, str) else pipeline.ref
            runner = PipelineRunner(self.db, self.objects, self.settings, self.tracking, self.data, exe)
            opts = RunOptions(executor=exe.name, workers=workers, scheduler=scheduler, no_cache=no_cache,
                              resume_from=resume_from, progress=progress or NullProgress())
            return runner.run(pipeline, dag, flat, target_ref, opts)
        finally:
            exe.close()

    def resume(self, run_ref: str, *, executor: str | None = None, workers: int | None = None,
               scheduler: str | None = None, progress: Progress | None = None) -> PipelineRun:
        """Rerun a failed run from its failed step, reusing the outputs of the steps that finished."""
        old = records.load_run(self.db, run_ref)
        if old.status == "FINISHED":
            raise ConflictError(f"Pipeline run {old.id[-8:]!r} finished; there is nothing to resume.",
                                hint="Run the pipeline again instead (finished steps are cached).")
        return self.run(old.target, params=old.params, executor=executor or old.executor, workers=workers,
                        scheduler=scheduler, progress=progress, resume_from=old.id)

    # -- inspecting ----------------------------------------------------------------------------

    def get_run(self, run_ref: str) -> PipelineRun:
        return records.load_run(self.db, run_ref)

    def list_runs(self, pipeline: str | None = None, limit: int = 50) -> list[PipelineRun]:
        return records.list_runs(self.db, pipeline, limit)

    def step_run(self, run_ref: str, step: str) -> StepRun:
        run = self.get_run(run_ref)
        for s in run.steps:
            if s.name == step:
                return s
        raise NotFoundError(f"Pipeline run {run.id[-8:]!r} has no step {step!r}.",
                            hint=f"Its steps: {', '.join(s.name for s in run.steps)}.")

    def explain(self, run_ref: str, step: str) -> list[str]:
        """Why a step was or was not taken from the cache, in plain sentences."""
        from loopml.services.pipelines.cache import explain_difference

        run = self.get_run(run_ref)
        s = self.step_run(run.id, step)
        if s.status == StepStatus.REUSED:
            return [f"{step}: reused from pipeline run {run.resumed_from or '?'} (resume keeps finished steps)."]
        if s.status == StepStatus.SKIPPED:
            return [f"{step}: not run, because an upstream step failed."]
        with self.db.read() as conn:
            source = None
            if s.source_step_run_id:
                source = conn.execute(select(pipeline_step_runs)
                                      .where(pipeline_step_runs.c.id == s.source_step_run_id)).first()
            if s.status == StepStatus.CACHED:
                where = f" of pipeline run {source.pipeline_run_id}" if source else ""
                return [f"{step}: cached. Its key {s.cache_key[:16] if s.cache_key else ''}… matches step run "
                        f"{s.source_step_run_id}{where}: same code, helper functions, parameters, input "
                        "contents, materializers and package versions."]
            reason = s.key_parts.get("_cache")
            lines = [f"{step}: ran ({s.status.lower()})."]
            if reason == "off-step":
                lines.append("Caching is off for this step (@step(cache=False)).")
                return lines
            if reason == "off-run":
                lines.append("Caching was off for this run (--no-cache).")
                return lines
            prev = conn.execute(
                select(pipeline_step_runs)
                .where(pipeline_step_runs.c.pipeline == run.pipeline, pipeline_step_runs.c.name == step,
                       pipeline_step_runs.c.status.in_(["FINISHED", "CACHED", "REUSED"]),
                       pipeline_step_runs.c.started < (s.started or time.time()),
                       pipeline_step_runs.c.id != s.id)
                .order_by(pipeline_step_runs.c.started.desc()).limit(1)
            ).first()
        if prev is None:
            lines.append("No earlier successful run of this step exists, so there was nothing to reuse.")
            return lines
        if prev.cache_key == s.cache_key:
            lines.append(f"Its key matches step run {prev.id}, but that output was missing from the store.")
            return lines
        diff = explain_difference(s.key_parts, prev.key_parts or {})
        lines.append(f"Compared with the previous run of this step (step run {prev.id}, pipeline run "
                     f"{prev.pipeline_run_id}):")
        lines += [f"  - {d}" for d in diff] or ["  - the cache key differs"]
        return lines

    def lineage(self, ref: str) -> Any:
        from loopml.services.pipelines.lineage import build_lineage

        return build_lineage(self.db, ref, self.data)

    # -- schedules -------------------------------------------------------------------------------

    def add_schedule(self, name: str, target: str, cron: str, params: Mapping[str, Any] | None = None) -> Schedule:
        """Store a cron schedule; checks the cron expression and the pipeline with its params first."""
        from croniter import croniter

        if not croniter.is_valid(cron):
            raise PipelineDefinitionError(f"The cron expression {cron!r} of schedule {name!r} is not valid.",
                                          hint='Use five fields, e.g. "0 3 * * *" for 03:00 every day.')
        self.plan(target, params)
        sched = Schedule(new_id(), name, target, cron, dict(params or {}), True, time.time())
        try:
            with self.db.write() as conn:
                conn.execute(insert(pipeline_schedules).values(
                    id=sched.id, name=name, target=target, cron=cron, params=sched.params, enabled=True,
                    created=sched.created))
                append_event(conn, actor=self.settings.actor, action="pipeline.schedule.create",
                             object_type="schedule", object_id=sched.id,
                             details={"name": name, "target": target, "cron": cron})
        except IntegrityError as exc:
            raise ConflictError(f"A schedule named {name!r} already exists.",
                                hint="Remove it first (loopml pipeline unschedule) or pick another name.") from exc
        return sched

    def list_schedules(self) -> list[Schedule]:
        with self.db.read() as conn:
            rows = conn.execute(select(pipeline_schedules).order_by(pipeline_schedules.c.name)).all()
        return [Schedule(r.id, r.name, r.target, r.cron, r.params or {}, bool(r.enabled), r.created) for r in rows]

    def remove_schedule(self, name: str) -> None:
        with self.db.write() as conn:
            row = conn.execute(select(pipeline_schedules.c.id).where(pipeline_schedules.c.name == name)).first()
            if row is None:
                raise NotFoundError(f"No schedule named {name!r}.", hint="List them with `loopml pipeline schedules`.")
            conn.execute(delete(pipeline_schedule_slots).where(pipeline_schedule_slots.c.schedule_id == row.id))
            conn.execute(delete(pipeline_schedules).where(pipeline_schedules.c.id == row.id))
            append_event(conn, actor=self.settings.actor, action="pipeline.schedule.delete",
                         object_type="schedule", object_id=row.id, details={"name": name})

    # -- triggers --------------------------------------------------------------------------------

    def add_trigger(self, name: str, target: str, *, on_dataset: str | None = None, on_alert: str | None = None,
                    params: Mapping[str, Any] | None = None, pass_as: str | None = None) -> Trigger:
        """Run ``target`` when a new version of dataset ``on_dataset`` appears (or alert ``on_alert`` fires).

        With ``pass_as``, that pipeline parameter receives the event: ``name@version`` of the new
        dataset version, or the alert's key.
        """
        if bool(on_dataset) == bool(on_alert):
            raise PipelineDefinitionError(f"Trigger {name!r} needs exactly one event: on_dataset or on_alert.")
        if pass_as:
            pipe = self.load(target)
            if pass_as not in pipe.signature.parameters:
                raise PipelineDefinitionError(
                    f"Trigger {name!r} passes the event as {pass_as!r}, which is not a parameter of pipeline "
                    f"{pipe.name!r} (its parameters: {', '.join(pipe.signature.parameters) or 'none'}).")
            self.plan(target, {**(params or {}), pass_as: "placeholder@1"})
        else:
            self.plan(target, params)
        event_type, source = ("dataset", on_dataset) if on_dataset else ("alert", on_alert)
        assert source is not None
        baseline = self.data.latest_version_id(source) if event_type == "dataset" else None
        trig = Trigger(new_id(), name, target, event_type, source, dict(params or {}), True, time.time(), baseline,
                       pass_as)
        try:
            with self.db.write() as conn:
                conn.execute(insert(pipeline_triggers).values(
                    id=trig.id, name=name, target=target, event_type=event_type, source=source,
                    params=trig.params, enabled=True, created=trig.created, last_event=baseline, pass_as=pass_as))
                append_event(conn, actor=self.settings.actor, action="pipeline.trigger.create",
                             object_type="trigger", object_id=trig.id,
                             details={"name": name, "target": target, "on": f"{event_type}:{source}"})
        except IntegrityError as exc:
            raise ConflictError(f"A trigger named {name!r} already exists.",
                                hint="Remove it first (loopml trigger rm) or pick another name.") from exc
        return trig

    def list_triggers(self) -> list[Trigger]:
        with self.db.read() as conn:
            rows = conn.execute(select(pipeline_triggers).order_by(pipeline_triggers.c.name)).all()
        return [Trigger(r.id, r.name, r.target, r.event_type, r.source, r.params or {}, bool(r.enabled),
                        r.created, r.last_event, r.pass_as) for r in rows]

    def remove_trigger(self, name: str) -> None:
        with self.db.write() as conn:
            row = conn.execute(select(pipeline_triggers.c.id).where(pipeline_triggers.c.name == name)).first()
            if row is None:
                raise NotFoundError(f"No trigger named {name!r}.", hint="List them with `loopml trigger ls`.")
            conn.execute(delete(pipeline_trigger_firings).where(pipeline_trigger_firings.c.trigger_id == row.id))
            conn.execute(delete(pipeline_triggers).where(pipeline_triggers.c.id == row.id))
            append_event(conn, actor=self.settings.actor, action="pipeline.trigger.delete",
                         object_type="trigger", object_id=row.id, details={"name": name})

    def emit_event(self, event_type: str, source: str, key: str, *, progress: Progress | None = None,
                   claimed_by: str = "api") -> list[tuple[str, str | None, str]]:
        """Tell triggers that ``source`` produced event ``key`` (e.g. an alert id); runs each matching one once."""
        fired = []
        for trig in self.list_triggers():
            if trig.enabled and trig.event_type == event_type and trig.source == source:
                fired.append(self._fire(trig, key, progress))
        return fired

    def _fire(self, trig: Trigger, key: str, progress: Progress | None) -> tuple[str, str | None, str]:
        try:
            with self.db.write() as conn:
                conn.execute(insert(pipeline_trigger_firings).values(
                    trigger_id=trig.id, event_key=key, fired_at=time.time(), status="RUNNING"))
                conn.execute(update(pipeline_triggers).where(pipeline_triggers.c.id == trig.id)
                             .values(last_event=key))
                append_event(conn, actor=self.settings.actor, action="pipeline.trigger.fire",
                             object_type="trigger", object_id=trig.id, details={"event": key})
        except IntegrityError:
            return (trig.name, None, "already fired")
        params = dict(trig.params)
        if trig.pass_as:
            params[trig.pass_as] = self._event_value(trig, key)
        run_id, status = self._run_claimed(trig.target, params, progress)
        with self.db.write() as conn:
            conn.execute(update(pipeline_trigger_firings)
                         .where(pipeline_trigger_firings.c.trigger_id == trig.id,
                                pipeline_trigger_firings.c.event_key == key)
                         .values(pipeline_run_id=run_id, status=status))
        return (trig.name, run_id, status)

    def _event_value(self, trig: Trigger, key: str) -> str:
        if trig.event_type == "dataset":
            try:
                return self.data.resolve(trig.source)[1]
            except Exception:
                return trig.source
        return key

    def _run_claimed(self, target: str, params: Mapping[str, Any], progress: Progress | None) -> tuple[str | None, str]:
        from loopml.errors import LoopmlError

        try:
            run = self.run(target, params=params, progress=progress)
            return run.id, "FINISHED"
        except LoopmlError as exc:
            return getattr(exc, "run_id", None), "FAILED"

    # -- the scheduler loop ------------------------------------------------------------------

    def tick(self, now: float | None = None, *, claimed_by: str = "scheduler",
             progress: Progress | None = None) -> list[tuple[str, str | None, str]]:
        """One scheduler pass: run each schedule's latest due slot and each trigger's new event, once each.

        A slot is claimed by inserting a unique (schedule, slot time) row before running, so two
        schedulers, or one restarted, never run the same slot twice.
        """
        from croniter import croniter

        now = time.time() if now is None else now
        done: list[tuple[str, str | None, str]] = []
        for sched in self.list_schedules():
            if not sched.enabled:
                continue
            slot = float(croniter(sched.cron, now).get_prev(float))
            if slot < sched.created:
                continue
            try:
                with self.db.write() as conn:
                    conn.execute(insert(pipeline_schedule_slots).values(
                        schedule_id=sched.id, slot_time=slot, claimed_at=time.time(), claimed_by=claimed_by,
                        status="RUNNING"))
                    append_event(conn, actor=self.settings.actor, action="pipeline.schedule.fire",
                                 object_type="schedule", object_id=sched.id, details={"slot": slot})
            except IntegrityError:
                continue
            run_id, status = self._run_claimed(sched.target, sched.params, progress)
            with self.db.write() as conn:
                conn.execute(update(pipeline_schedule_slots)
                             .where(pipeline_schedule_slots.c.schedule_id == sched.id,
                                    pipeline_schedule_slots.c.slot_time == slot)
                             .values(pipeline_run_id=run_id, status=status))
            done.append((f"schedule {sched.name}", run_id, status))
        for trig in self.list_triggers():
            if not trig.enabled or trig.event_type != "dataset":
                continue
            latest = self.data.latest_version_id(trig.source)
            if latest is None or latest == trig.last_event:
                continue
            name, run_id, status = self._fire(trig, latest, progress)
            done.append((f"trigger {name}", run_id, status))
        return done

    def slots(self, schedule: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(pipeline_schedule_slots).join(
                    pipeline_schedules, pipeline_schedules.c.id == pipeline_schedule_slots.c.schedule_id)
                .where(pipeline_schedules.c.name == schedule).order_by(pipeline_schedule_slots.c.slot_time)).all()
        return [dict(r._mapping) for r in rows]

    def run_scheduler(self, *, interval: float = 30.0, stop: Callable[[], bool] | None = None,
                      on_result: Callable[[tuple[str, str | None, str]], None] | None = None,
                      claimed_by: str = "scheduler") -> None:
        """Tick every ``interval`` seconds until ``stop()`` is true (Ctrl-C from the CLI)."""
        while True:
            for result in self.tick(claimed_by=claimed_by):
                if on_result:
                    on_result(result)
            if stop is not None and stop():
                return
            deadline = time.time() + interval
            while time.time() < deadline:
                if stop is not None and stop():
                    return
                time.sleep(min(0.5, max(0.0, deadline - time.time())))
