"""Running a traced pipeline: cache look-ups, scheduling ready steps on an executor, retries, recording."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from loopml.domain.ids import new_id
from loopml.domain.pipelines import PipelineRun, PipelineRunStatus, StepRun, StepStatus
from loopml.errors import StepFailedError, StepTimeoutError, UnmaterializableError
from loopml.progress import NullProgress, Progress
from loopml.services.pipelines import records
from loopml.services.pipelines.cache import cache_key, key_parts
from loopml.services.pipelines.dsl import Dag, Node, Pipeline
from loopml.services.pipelines.executors import Executor, StepOutcome, StepTask, execute_step
from loopml.services.pipelines.integrations import DataAdapter, TrackingAdapter
from loopml.services.pipelines.materializers import FallbackMaterializerWarning, registry

InputRec = tuple[str, str, str | None, str | None]  # digest, materializer, source, dataset version id

_OUTPUT_TAIL = 2000
HARD_TIMEOUT_GRACE = 2.0


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: str(o) if isinstance(o, PurePath) else repr(o)))


def _tail(text: str) -> str:
    return text if len(text) <= _OUTPUT_TAIL else "…" + text[-_OUTPUT_TAIL:]


@dataclass
class _Running:
    node: Node
    task: StepTask
    key: str | None
    parts: dict[str, Any]
    inputs: dict[str, InputRec]
    attempt: int
    started: float
    deadline: float | None = None  # parallel executors: past this the worker is stopped
    step_run_id: str = ""
    tracking_run_id: str | None = None  # the step's nested tracking run, opened when the step started


def _deadline(step: Any, started: float, parallel: bool) -> float | None:
    # The worker gives up at `timeout` itself; this is the backstop for a step that blocks its
    # whole worker (a C call holding the GIL, a stopped process).
    if not parallel or not step.timeout:
        return None
    return started + step.timeout + HARD_TIMEOUT_GRACE


@dataclass
class RunOptions:
    executor: str = "inline"
    workers: int | None = None
    scheduler: str | None = None
    no_cache: bool = False
    resume_from: str | None = None
    progress: Progress = field(default_factory=NullProgress)


class PipelineRunner:
    """Runs one pipeline once; the service creates one per run."""

    def __init__(self, db: Any, objects: Any, settings: Any, tracking: TrackingAdapter, data: DataAdapter,
                 executor: Executor) -> None:
        self.db = db
        self.objects = objects
        self.settings = settings
        self.tracking = tracking
        self.data = data
        self.executor = executor
        self.actor = settings.actor

    def run(self, pipeline: Pipeline, dag: Dag, params: dict[str, Any], target: str, opts: RunOptions) -> PipelineRun:
        order = dag.topological()
        for node in order:
            if node.step is not None:
                self.executor.check_resources(node.name, node.step.resources)
        run = PipelineRun(id=new_id(), pipeline=pipeline.name, target=target, status=PipelineRunStatus.RUNNING,
                          params=_jsonable(params), executor=self.executor.name, started=time.time(),
                          resumed_from=opts.resume_from)
        records.insert_run(self.db, self.actor, run)
        run.tracking_run_id = self.tracking.start_pipeline(pipeline.name, run.id, run.params, target)
        if run.tracking_run_id:
            records.set_run_tracking(self.db, run.id, run.tracking_run_id)
        reuse: dict[str, StepRun] = {}
        if opts.resume_from:
            old = records.load_run(self.db, opts.resume_from)
            reuse = {s.name: s for s in old.steps if s.status.succeeded and s.output_digest
                     and self.objects.has(s.output_digest)}
        self._dataset_versions: dict[str, str] = {}  # dataset node name -> resolved version id
        self._sys_path = _sys_path_for(pipeline)
        self._git = _git_state(self._sys_path[0]) if self._sys_path else None
        outputs: dict[str, tuple[str, str]] = {}
        done_steps: list[StepRun] = []
        pending = [n.name for n in order]
        running: dict[cf.Future[StepOutcome], _Running] = {}
        failure: StepFailedError | None = None
        batch: list[tuple[StepRun, dict[str, InputRec]]] = []
        try:
            with opts.progress.task(f"pipeline {pipeline.name}", len(order), unit="steps") as advance:
                while True:
                    progressed = True
                    while progressed and failure is None:
                        progressed = False
                        for name in list(pending):
                            node = dag.nodes[name]
                            if not all(up.name in outputs for up in node.upstream):
                                continue
                            pending.remove(name)
                            progressed = True
                            finished = self._start(run, node, outputs, reuse, opts, running, batch)
                            if finished is not None:
                                outputs[name] = (finished.output_digest or "", finished.materializer or "")
                                done_steps.append(finished)
                                advance(1)
                            if self.executor.parallel is False and running:
                                break
                        if running and not self.executor.parallel:
                            break
                    if len(batch) >= 50 or (batch and running):
                        self._flush(run, batch)
                    if not running:
                        break
                    deadlines = [r.deadline for r in running.values() if r.deadline is not None]
                    wait_for = max(0.0, min(deadlines) - time.time()) if deadlines else None
                    done, _ = cf.wait(list(running), timeout=wait_for, return_when=cf.FIRST_COMPLETED)
                    completed: list[tuple[_Running, StepOutcome]] = []
                    for fut in done:
                        r = running.pop(fut)
                        try:
                            outcome = fut.result()
                        except BaseException as exc:  # the worker itself died
                            outcome = StepOutcome(r.node.name, ok=False, error=f"the worker running step "
                                                  f"{r.node.name!r} failed: {type(exc).__name__}: {exc}",
                                                  error_kind="exception", started=r.started, ended=time.time())
                        completed.append((r, outcome))
                    now = time.time()
                    for fut, r in list(running.items()):
                        if r.deadline is not None and now > r.deadline:
                            running.pop(fut)
                            self.executor.abandon(fut)
                            assert r.node.step is not None
                            completed.append((r, StepOutcome(
                                r.node.name, ok=False, error_kind="timeout-killed", started=r.started, ended=now,
                                error=f"step {r.node.name!r} did not finish within its timeout of "
                                      f"{r.node.step.timeout:g} s; its worker was stopped")))
                    for r, outcome in completed:
                        step = r.node.step
                        assert step is not None
                        if (not outcome.ok and outcome.error_kind in ("exception", "timeout")
                                and r.attempt <= step.retries and failure is None):
                            time.sleep(step.retry_backoff * (2 ** (r.attempt - 1)))
                            r.attempt += 1
                            r.started = time.time()
                            r.deadline = _deadline(step, r.started, self.executor.parallel)
                            running[self.executor.submit(r.task, step.resources)] = r
                            continue
                        for w in outcome.warnings:
                            warnings.warn(w, FallbackMaterializerWarning, stacklevel=2)
                        srun = StepRun(
                            id=r.step_run_id, pipeline_run_id=run.id, name=r.node.name, func=r.node.func_ref,
                            status=StepStatus.FINISHED if outcome.ok else StepStatus.FAILED, cache_key=r.key,
                            key_parts=r.parts, params=_jsonable(r.node.params),
                            inputs={a: v[0] for a, v in r.inputs.items()}, output_digest=outcome.output_digest,
                            materializer=outcome.materializer, started=outcome.started or r.started,
                            ended=outcome.ended or time.time(), attempts=r.attempt, error=outcome.error,
                            stdout=outcome.stdout, stderr=outcome.stderr, metrics=outcome.metrics,
                            tracking_run_id=r.tracking_run_id,
                        )
                        self.tracking.finish_step(srun)  # now, so the nested run's end time is the step's
                        batch.append((srun, r.inputs))
                        done_steps.append(srun)
                        advance(1)
                        if outcome.ok:
                            outputs[r.node.name] = (outcome.output_digest or "", outcome.materializer or "")
                        elif failure is None:
                            failure = _failure(srun, outcome, run.id)
        except KeyboardInterrupt:
            # Leave an honest record: the run failed, the finished steps are kept for resume.
            self._flush(run, batch)
            self.tracking.abandon_steps([r.tracking_run_id for r in running.values() if r.tracking_run_id])
            records.finish_run(self.db, self.actor, run.id, PipelineRunStatus.FAILED, "interrupted by the user",
                               (), pipeline.name)
            self.tracking.end_pipeline(run.tracking_run_id, True, "interrupted by the user")
            raise
        self._flush(run, batch)
        skipped = [StepRun(id=new_id(), pipeline_run_id=run.id, name=n, func=dag.nodes[n].func_ref,
                           status=StepStatus.SKIPPED, params=_jsonable(dag.nodes[n].params)) for n in pending]
        run.status = PipelineRunStatus.FAILED if failure else PipelineRunStatus.FINISHED
        run.error = failure.message if failure else None
        records.finish_run(self.db, self.actor, run.id, run.status, run.error, skipped, pipeline.name)
        self.tracking.end_pipeline(run.tracking_run_id, failure is not None, run.error)
        run.ended = time.time()
        run.steps = done_steps + skipped
        if failure is not None:
            failure.run_id = run.id  # type: ignore[attr-defined]
            failure.run = run  # type: ignore[attr-defined]
            raise failure
        return run

    # -- one step ----------------------------------------------------------------------------

    def _start(self, run: PipelineRun, node: Node, outputs: dict[str, tuple[str, str]], reuse: dict[str, StepRun],
               opts: RunOptions, running: dict[cf.Future[StepOutcome], _Running],
               batch: list[tuple[StepRun, dict[str, InputRec]]]) -> StepRun | None:
        """Start a ready step; returns its StepRun when it finished at once (cache hit, reuse, dataset)."""
        now = time.time()
        if node.dataset is not None:
            return self._dataset_step(run, node, opts, batch)
        step = node.step
        assert step is not None
        inputs: dict[str, InputRec] = {}
        for arg, up in node.inputs.items():
            digest, mat = outputs[up.name]
            dv = self._dataset_versions.get(up.name) if up.dataset is not None else None
            inputs[arg] = (digest, mat, up.name, dv)
        parts = key_parts(step.func, params=node.params,  # type: ignore[arg-type]
                          inputs={a: (v[0], v[1]) for a, v in inputs.items()}, registered=registry.all())
        key = cache_key(parts)
        hit: StepRun | None = None
        status = StepStatus.CACHED
        old = reuse.get(node.name)
        if old is not None:
            hit, status = old, StepStatus.REUSED
        elif step.cache and not opts.no_cache:
            with self.db.read() as conn:
                row = records.find_cached(conn, key)
            if row is not None and self.objects.has(row.output_digest):
                hit = records.step_from_row(row)
        if hit is not None:
            srun = StepRun(id=new_id(), pipeline_run_id=run.id, name=node.name, func=node.func_ref, status=status,
                           cache_key=key, key_parts=parts, params=_jsonable(node.params),
                           inputs={a: v[0] for a, v in inputs.items()}, output_digest=hit.output_digest,
                           materializer=hit.materializer, source_step_run_id=hit.source_step_run_id or hit.id,
                           started=now, ended=time.time(), attempts=0, metrics=hit.metrics)
            batch.append((srun, inputs))
            return srun
        parts = {**parts, "_cache": "off-step" if not step.cache else "off-run" if opts.no_cache else "miss"}
        if self._git:
            parts["_git"] = self._git  # shown by lineage; not part of the key
        task = StepTask(
            step=node.name, func_ref=step.ref, sys_path=self._sys_path, params=dict(node.params),
            inputs={a: (v[0], v[1]) for a, v in inputs.items()}, artifacts=self.settings.artifacts,
            storage_options=self.settings.storage_options,
            scratch_dir=str(self.settings.workspace_dir) if self.settings.workspace_dir.is_dir() else None,
            preferred_materializer=step.materializer, timeout=step.timeout, func=step.func,
        )
        step_run_id = new_id()
        tracking_id = self.tracking.start_step(run.tracking_run_id, run.pipeline, node.name, step_run_id,
                                               _jsonable(node.params), key)
        now = time.time()
        running[self.executor.submit(task, step.resources)] = _Running(
            node, task, key, parts, inputs, 1, now, _deadline(step, now, self.executor.parallel),
            step_run_id, tracking_id)
        return None

    def _dataset_step(self, run: PipelineRun, node: Node, opts: RunOptions,
                      batch: list[tuple[StepRun, dict[str, InputRec]]]) -> StepRun:
        assert node.dataset is not None
        started = time.time()
        version_id, label = self.data.resolve(node.dataset.ref)
        self._dataset_versions[node.name] = version_id
        self.data.record_use(version_id, "pipeline_run", run.id)
        self.tracking.use_dataset(run.tracking_run_id, label)  # the exact version, not "latest" again
        parts = {"dataset_version": version_id}
        key = cache_key(parts)
        step_run_id = new_id()
        tracking_id = self.tracking.start_step(run.tracking_run_id, run.pipeline, node.name, step_run_id,
                                               {"ref": node.dataset.ref}, key)
        with self.db.read() as conn:
            row = records.find_cached(conn, key)
        if row is not None and self.objects.has(row.output_digest):
            digest, mat, status, source = row.output_digest, row.materializer, StepStatus.CACHED, row.id
        else:
            table = self.data.load_table(node.dataset.ref)
            outcome = execute_step(StepTask(step=node.name, func_ref=node.func_ref, sys_path=[], params={},
                                            inputs={}, artifacts=self.settings.artifacts,
                                            storage_options=self.settings.storage_options,
                                            func=lambda: table), self.objects)
            digest, mat, status, source = outcome.output_digest, outcome.materializer, StepStatus.FINISHED, None
        srun = StepRun(id=step_run_id, pipeline_run_id=run.id, name=node.name, func=f"dataset:{label}",
                       status=status, cache_key=key, key_parts={**parts, "dataset": label},
                       params={"ref": node.dataset.ref}, output_digest=digest, materializer=mat,
                       source_step_run_id=source, started=started, ended=time.time(), tracking_run_id=tracking_id)
        self.tracking.finish_step(srun)
        batch.append((srun, {}))
        return srun

    def _flush(self, run: PipelineRun, batch: list[tuple[StepRun, dict[str, InputRec]]]) -> None:
        if not batch:
            return
        records.record_steps(self.db, self.actor, run.pipeline, batch)
        if run.tracking_run_id:
            pairs = []
            for s, _ in batch:
                if s.tracking_run_id:  # a step that ran: its nested run was opened and closed already
                    continue
                tid = self.tracking.record_step(run.tracking_run_id, run.pipeline, s)
                if tid:
                    pairs.append((s.id, tid))
            records.set_step_tracking(self.db, pairs)
        batch.clear()


def _failure(srun: StepRun, outcome: StepOutcome, run_id: str) -> StepFailedError:
    tries = f" after {srun.attempts} attempts" if srun.attempts > 1 else ""
    parts = [f"Step {srun.name!r} failed{tries}:", (outcome.error or "").rstrip()]
    if outcome.stdout.strip():
        parts += ["--- its stdout ---", _tail(outcome.stdout).rstrip()]
    if outcome.stderr.strip():
        parts += ["--- its stderr ---", _tail(outcome.stderr).rstrip()]
    message = "\n".join(parts) + "\n"
    hint = f"Fix it, then `loopml pipeline resume {run_id[-8:]}` reruns from this step."
    if outcome.error_kind in ("timeout", "timeout-killed"):
        return StepTimeoutError(srun.name, message, hint=hint)
    if outcome.error_kind == "unmaterializable":
        return UnmaterializableError(
            srun.name, message,
            hint="Return a DataFrame, array, estimator, JSON-able value or Path, or register a materializer.")
    return StepFailedError(srun.name, message, hint=hint)


def _git_state(directory: str) -> str | None:
    """``<commit>`` or ``<commit>+dirty`` of the git checkout holding the pipeline code, if any."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                              timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip()[:12] + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _sys_path_for(pipeline: Pipeline) -> list[str]:
    """Directories workers need on sys.path to import the pipeline's module (same-machine workers)."""
    paths: list[str] = []
    module = sys.modules.get(pipeline.func.__module__)
    file = getattr(module, "__file__", None)
    if file:
        top = pipeline.func.__module__.split(".")[0]
        base = Path(file).resolve().parent
        for _ in range(pipeline.func.__module__.count(".")):
            base = base.parent
        if top:
            paths.append(str(base))
    cwd = os.getcwd()
    if cwd not in paths:
        paths.append(cwd)
    return paths
