"""Where steps run: in-process, a local process pool, or a Dask cluster — one task function for all.

A task carries only names and digests; the worker loads inputs from and saves its output to
the content store, so nothing large travels through the executor.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import importlib
import io
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from loopml.errors import OptionalDependencyError, PipelineDefinitionError

_LOOPML_DIR = str(Path(__file__).resolve().parents[2])
_metrics: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("loopml_step_metrics",
                                                                                  default=None)


def log_step_metrics(values: dict[str, float]) -> None:
    """Record metrics of the step running in this context (kept on its step run and tracking run)."""
    current = _metrics.get()
    if current is None:
        raise PipelineDefinitionError("log_metrics() was called outside a running pipeline step.")
    current.update({k: float(v) for k, v in values.items()})


@dataclass
class StepTask:
    """Everything a worker needs to run one step; small and picklable."""

    step: str
    func_ref: str
    sys_path: list[str]
    params: dict[str, Any]
    inputs: dict[str, tuple[str, str]]  # arg -> (digest, materializer name)
    artifacts: str
    storage_options: dict[str, Any]
    scratch_dir: str | None = None
    preferred_materializer: str | None = None
    timeout: float | None = None
    func: Callable[..., Any] | None = field(default=None, repr=False)  # set for in-process runs only


@dataclass
class StepOutcome:
    step: str
    ok: bool
    output_digest: str | None = None
    materializer: str | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    error_kind: str | None = None  # "exception", "timeout", "unmaterializable", "import"
    started: float = 0.0
    ended: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@lru_cache(maxsize=8)
def _store(artifacts: str, options_json: str) -> Any:
    from loopml.stores.artifacts.cas import open_content_store

    return open_content_store(artifacts, json.loads(options_json) or None)


def _import_func(task: StepTask) -> Callable[..., Any]:
    if task.func is not None:
        return task.func
    for p in task.sys_path:
        if p not in sys.path:
            sys.path.insert(0, p)
    module_name, _, qualname = task.func_ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return getattr(obj, "func", obj)


def user_traceback(exc: BaseException) -> str:
    """The exception with only the user's frames (none of loopml's)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_LOOPML_DIR)]
    text = "".join(traceback.format_list(frames)) if frames else ""
    return text + "".join(traceback.format_exception_only(type(exc), exc)).rstrip()


def _load_input(objects: Any, digest: str, materializer: str, scratch: Path, cache: dict[str, Any] | None) -> Any:
    from loopml.services.pipelines.materializers import registry

    if cache is not None and digest in cache:
        return cache[digest]
    mat = registry.get(materializer)
    local = objects.local_path(digest)
    if local is None or mat.name == "path.tar":
        target = scratch / digest
        if not target.exists():
            objects.export(digest, target)
        local = target
    value = mat.load(Path(local))
    if cache is not None and mat.name in ("json", "pandas.parquet", "numpy.npy", "arrow.parquet"):
        cache[digest] = value
    return value


def execute_step(task: StepTask, objects: Any = None, value_cache: dict[str, Any] | None = None) -> StepOutcome:
    """Run one step: load inputs, call the function with output captured, store its return value."""
    from loopml.services.pipelines.materializers import (
        FALLBACK,
        check_picklable,
        registry,
    )

    started = time.time()
    outcome = StepOutcome(task.step, ok=False, started=started)
    objects = objects or _store(task.artifacts, json.dumps(task.storage_options, sort_keys=True, default=str))
    scratch = Path(task.scratch_dir or tempfile.gettempdir()) / "loopml-step-scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        func = _import_func(task)
    except Exception as exc:
        outcome.error, outcome.error_kind = f"cannot import {task.func_ref}: {exc}", "import"
        outcome.ended = time.time()
        return outcome
    out_buf, err_buf = io.StringIO(), io.StringIO()
    metrics: dict[str, float] = {}
    token = _metrics.set(metrics)
    try:
        kwargs = dict(task.params)
        for arg, (digest, mat_name) in task.inputs.items():
            kwargs[arg] = _load_input(objects, digest, mat_name, scratch, value_cache)
        with contextlib.redirect_stdout(out_buf), contextlib.redirect_stderr(err_buf):
            value = _call(func, kwargs, task.timeout, metrics)
    except _StepTimeout:
        outcome.error = f"step {task.step!r} did not finish within its timeout of {task.timeout:g} s"
        outcome.error_kind = "timeout"
        outcome.stdout, outcome.stderr = out_buf.getvalue(), err_buf.getvalue()
        outcome.ended = time.time()
        return outcome
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        outcome.error, outcome.error_kind = user_traceback(exc), "exception"
        outcome.stdout, outcome.stderr = out_buf.getvalue(), err_buf.getvalue()
        outcome.ended = time.time()
        return outcome
    finally:
        _metrics.reset(token)
    outcome.stdout, outcome.stderr = out_buf.getvalue(), err_buf.getvalue()
    outcome.metrics = metrics
    mat = registry.for_value(value, preferred=task.preferred_materializer)
    if mat is FALLBACK:
        reason = check_picklable(value)
        if reason is not None:
            outcome.error = (f"step {task.step!r} returned a {type(value).__module__}.{type(value).__qualname__}, "
                             f"which no materializer accepts and pickle cannot store ({reason})")
            outcome.error_kind = "unmaterializable"
            outcome.ended = time.time()
            return outcome
        outcome.warnings.append(
            f"Step {task.step!r} returned a {type(value).__module__}.{type(value).__qualname__}, which no "
            "materializer handles; it was stored with pickle (tied to these Python and package versions). "
            "Register a materializer for a portable format."
        )
    try:
        fd, tmp = tempfile.mkstemp(dir=scratch, suffix=".out")
        os.close(fd)
        try:
            mat.save(value, Path(tmp))
            ref = objects.put_file(tmp)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except Exception as exc:
        outcome.error = f"step {task.step!r}: materializer {mat.name!r} could not store its output: {exc}"
        outcome.error_kind = "unmaterializable"
        outcome.ended = time.time()
        return outcome
    if value_cache is not None and mat.name in ("json", "pandas.parquet", "numpy.npy", "arrow.parquet"):
        value_cache[ref.digest] = value
    outcome.ok, outcome.output_digest, outcome.materializer = True, ref.digest, mat.versioned_name
    outcome.ended = time.time()
    return outcome


class _StepTimeout(Exception):
    pass


def _call(func: Callable[..., Any], kwargs: dict[str, Any], timeout: float | None, metrics: dict[str, float]) -> Any:
    if not timeout:
        return func(**kwargs)
    # The step runs in a daemon thread so a hung step cannot keep the process alive;
    # the process and Dask executors additionally stop the worker that ran it.
    result: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            result["value"] = ctx.run(func, **kwargs)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="loopml-step")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise _StepTimeout()
    if "error" in result:
        raise result["error"]
    return result["value"]


# -- executors ---------------------------------------------------------------------------------

class Executor:
    """Runs StepTasks and hands back futures of StepOutcomes."""

    name = "base"
    parallel = False

    def submit(self, task: StepTask, resources: dict[str, float]) -> cf.Future[StepOutcome]:
        raise NotImplementedError

    def check_resources(self, step: str, resources: dict[str, float]) -> None:
        return None

    def abandon(self, future: cf.Future[StepOutcome]) -> None:
        """Stop the work behind a future that ran past its step's timeout."""
        future.cancel()

    def close(self) -> None:
        return None


class InlineExecutor(Executor):
    """Runs each step in this process, one at a time.

    Inputs are loaded fresh from the store for every step (no in-memory sharing), so a step
    that mutates its input cannot change what another step sees.
    """

    name = "inline"

    def __init__(self, objects: Any) -> None:
        self.objects = objects

    def submit(self, task: StepTask, resources: dict[str, float]) -> cf.Future[StepOutcome]:
        fut: cf.Future[StepOutcome] = cf.Future()
        fut.set_result(execute_step(task, self.objects))
        return fut


class ProcessExecutor(Executor):
    """A local pool of worker processes; independent steps run at once."""

    name = "process"
    parallel = True

    def __init__(self, workers: int | None = None) -> None:
        import multiprocessing

        self.workers = workers or os.cpu_count() or 2
        self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, task: StepTask, resources: dict[str, float]) -> cf.Future[StepOutcome]:
        task.func = None
        return self.pool.submit(execute_step, task)

    def abandon(self, future: cf.Future[StepOutcome]) -> None:
        # A process pool cannot stop one task; stopping the workers fails the run's other
        # running steps too, which is what a failed run does anyway (resume reruns them).
        self.kill()

    def kill(self) -> None:
        """Stop every worker now (a step hung past its timeout)."""
        for proc in list(getattr(self.pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                proc.kill()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """Each step a Dask task with its declared resources; a LocalCluster on 127.0.0.1 if no scheduler given.

    Connecting (importing ``distributed``, starting the cluster's processes) happens in a background
    thread from construction on, so it overlaps with loading and checking the pipeline; the first
    call that needs the cluster waits for it.
    """

    name = "dask"
    parallel = True

    def __init__(self, scheduler: str | None = None, workers: int | None = None) -> None:
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            raise OptionalDependencyError("distributed", "dask", "The Dask executor")
        self.scheduler = scheduler
        self.workers = workers
        self.cluster: Any = None
        self._client: Any = None
        self._offered: list[dict[str, float]] | None = None
        self._error: BaseException | None = None
        self._closed = False
        if not scheduler:
            _start_forkserver()
        self._thread = threading.Thread(target=self._connect, name="loopml-dask-start", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        try:
            import dask
            import distributed.utils
            from distributed import Client, LocalCluster

            if self.scheduler:
                # how long to keep trying: Dask's distributed.comm.timeouts.connect (30 s by default)
                self._client = Client(self.scheduler)
                return
            n = self.workers or 2
            cpus = float(os.cpu_count() or 2)
            memory = float(_total_memory() / n)
            # The forkserver is already up (see _start_forkserver); without this flag Dask would
            # import numpy, pandas and more in this process only to choose a preload list for it.
            distributed.utils._forkserver_preload_set = True
            with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
                self.cluster = LocalCluster(
                    host="127.0.0.1", dashboard_address="127.0.0.1:0", processes=True, n_workers=n,
                    threads_per_worker=1, resources={"cpus": cpus, "memory": memory}, silence_logs=40,
                    env=dict(os.environ),  # forked workers see today's environment, not the forkserver's
                )
            self._offered = [{"cpus": cpus, "memory": memory}]
            self._client = Client(self.cluster)
        except BaseException as exc:  # handed to the thread that needs the cluster
            self._error = exc

    @property
    def client(self) -> Any:
        self._thread.join()
        if self._error is not None:
            from loopml.errors import LoopmlError

            if isinstance(self._error, LoopmlError):
                raise self._error
            where = f"the Dask scheduler at {self.scheduler}" if self.scheduler else "a local Dask cluster"
            raise PipelineDefinitionError(
                f"Could not connect to {where}: {type(self._error).__name__}: {self._error}",
                hint="Check the --scheduler address (tcp://HOST:PORT) and that the scheduler is running.",
            ) from self._error
        return self._client

    @property
    def address(self) -> str:
        return str(getattr(self.client.scheduler, "address", "?"))

    def check_resources(self, step: str, resources: dict[str, float]) -> None:
        if not resources:
            return
        if self._offered is None:  # one round trip per run, not per step
            self._offered = [w.get("resources", {})
                             for w in self.client.scheduler_info().get("workers", {}).values()]
        offered = self._offered
        if not any(all(w.get(k, 0) >= v for k, v in resources.items()) for w in offered):
            raise PipelineDefinitionError(
                f"Step {step!r} asks for resources {resources}, which no worker of the Dask cluster at "
                f"{self.address} offers (workers offer {offered or 'nothing'}).",
                hint="Start workers with --resources 'cpus=N memory=BYTES' or lower the step's cpus=/memory=.",
            )

    def submit(self, task: StepTask, resources: dict[str, float]) -> cf.Future[StepOutcome]:
        task.func = None
        dfut = self.client.submit(execute_step, task, resources=resources or None, pure=False,
                                  key=f"loopml-{task.step}-{os.urandom(6).hex()}")
        fut: cf.Future[StepOutcome] = cf.Future()

        def done(d: Any) -> None:
            try:
                fut.set_result(d.result())
            except BaseException as exc:
                if not fut.done():
                    fut.set_exception(exc)

        dfut.add_done_callback(done)
        fut.dask_future = dfut  # type: ignore[attr-defined]
        return fut

    def abandon(self, future: cf.Future[StepOutcome]) -> None:
        dfut = getattr(future, "dask_future", None)
        if dfut is not None:
            with contextlib.suppress(Exception):
                dfut.cancel()
        future.cancel()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._thread.join()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close(timeout=5)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=10)


_FORKSERVER_PRELOAD = ["distributed", "loopml.services.pipelines.executors", "loopml.services.pipelines.materializers"]


def _start_forkserver() -> None:
    """Start the process LocalCluster workers are forked from, now, in parallel with this one.

    It imports distributed (and the step runner) once, on another core, while this process goes
    on loading the workspace and the pipeline; each worker is then a cheap fork of it, and a forked
    worker exits without tearing an interpreter down (spawned workers took ~0.5 s each to stop).
    """
    import multiprocessing
    import multiprocessing.forkserver

    with contextlib.suppress(Exception):  # already running in this process, or not supported: Dask copes
        multiprocessing.get_context("forkserver").set_forkserver_preload(_FORKSERVER_PRELOAD)
        multiprocessing.forkserver.ensure_running()


def stop_forkserver() -> None:
    """Stop the forkserver at once, for a process about to exit (the CLI after a Dask run).

    Left alone it tears its interpreter down after this process exits, ~0.25 s during which it
    still holds this process's stdout/stderr, so a caller reading them waits too. Nothing lives
    in it once the cluster is closed. Uses multiprocessing's own stop routine; skipped quietly
    if that ever changes.
    """
    import multiprocessing.forkserver
    import signal

    server: Any = getattr(multiprocessing.forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    if server is None or pid is None:
        return
    with contextlib.suppress(Exception):
        os.kill(pid, signal.SIGTERM)
        server._stop()


def _total_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def make_executor(name: str, objects: Any, *, workers: int | None = None, scheduler: str | None = None) -> Executor:
    if name == "inline":
        return InlineExecutor(objects)
    if name == "process":
        return ProcessExecutor(workers)
    if name == "dask":
        return DaskExecutor(scheduler, workers)
    raise PipelineDefinitionError(
        f"The executor {name!r} is not known.", hint="Use inline, process or dask."
    )
