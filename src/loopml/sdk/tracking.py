"""The tracking SDK: ``loopml.start_run``, ``search_runs``, ``get_run`` and the ``Run`` handle."""

from __future__ import annotations

import atexit
import json
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from loopml.domain.tracking import MetricPoint, RunStatus
from loopml.domain.tracking import Run as RunRecord
from loopml.errors import ConflictError
from loopml.sdk._writer import BatchWriter
from loopml.services.tracking.validation import check_key, check_step, check_value, param_text

_lock = threading.Lock()
_services: dict[str, Any] = {}
_active: list[ActiveRun] = []


def _service(workspace: str | os.PathLike[str] | None = None) -> Any:
    """The remote client when LOOPML_TRACKING_URI is set, else the workspace's TrackingService."""
    with _lock:
        uri = os.environ.get("LOOPML_TRACKING_URI", "")
        if uri:
            svc = _services.get(uri)
            if svc is None:
                from loopml.sdk._remote import remote_service_from_env

                svc = remote_service_from_env(os.environ)
            if svc is not None:
                _services[uri] = svc
                return svc
        from loopml.workspace import Workspace, find_workspace_root

        # keyed by the workspace root, so changing directory picks the right workspace
        key = str(find_workspace_root(workspace))
        svc = _services.get(key)
        if svc is None:
            svc = Workspace.open(key).tracking
            _services[key] = svc
        return svc


class ActiveRun:
    """A run being logged to; use as a context manager. Metric logging is queued and batched."""

    def __init__(self, service: Any, run_id: str, experiment: str, params: Mapping[str, str]) -> None:
        self.service = service
        self.id = run_id
        self.experiment = experiment
        self._params: dict[str, str] = dict(params)
        self._writer = BatchWriter(service, run_id)
        self._keys: set[str] = set()
        self._ended = False

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, experiment={self.experiment!r})"

    # -- logging ---------------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int = 0, *, ts: float | None = None) -> None:
        # The hot path: checks run at the call (errors belong to the caller), but a key is
        # checked once per run and plain floats and ints skip the general checks.
        if self._ended:
            self._raise_ended()
        if type(key) is not str or key not in self._keys:
            self._keys.add(check_key(key))
        if type(value) is not float:
            value = check_value(key, value)
        if type(step) is not int:
            step = check_step(step)
        self._writer.put(MetricPoint(key, value, step, ts or time.time()))

    def _raise_ended(self) -> None:
        raise ConflictError(f"Run {self.id!r} has ended; a metric logged to it now would be lost.",
                            hint="Log inside the `with loopml.start_run(...)` block, or start a new run.")

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        if self._ended:
            self._raise_ended()
        now = time.time()
        st = check_step(step)
        points = [MetricPoint(check_key(k), check_value(k, v), st, now) for k, v in metrics.items()]
        for p in points:
            self._writer.put(p)

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        rows = {check_key(k, "param"): param_text(k, v) for k, v in params.items()}
        for k, v in rows.items():
            if k in self._params and self._params[k] != v:
                raise ConflictError(f"Param {k!r} of run {self.id!r} is already {self._params[k]!r}; got {v!r}.",
                                    hint="Params are immutable; log a new key or start a new run.")
        new = {k: v for k, v in rows.items() if k not in self._params}
        if new:
            self.service.log_batch(self.id, params=new)
            self._params.update(new)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        rows = {check_key(k, "tag"): param_text(k, v, "tag") for k, v in tags.items()}
        self.service.log_batch(self.id, tags=rows)

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> Any:
        return self.service.log_artifact(self.id, Path(path), name=name)

    def log_text(self, text: str, name: str) -> Any:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / Path(name).name
            p.write_text(text, encoding="utf-8")
            return self.service.log_artifact(self.id, p, name=name)

    def log_dict(self, data: Any, name: str = "data.json") -> Any:
        return self.log_text(json.dumps(data, indent=2, sort_keys=True, default=str), name)

    def log_figure(self, figure: Any, name: str | None = None) -> Any:
        """Store a matplotlib figure (PNG) or a plotly figure (self-contained HTML)."""
        with tempfile.TemporaryDirectory() as d:
            if hasattr(figure, "savefig"):
                p = Path(d) / Path(name or "figure.png").name
                figure.savefig(p)
            elif hasattr(figure, "write_html"):
                p = Path(d) / Path(name or "figure.html").name
                figure.write_html(str(p), include_plotlyjs=True)
            else:
                from loopml.errors import InvalidParameterError

                raise InvalidParameterError("figure", "log_figure", "a matplotlib or plotly figure", type(figure))
            return self.service.log_artifact(self.id, p, name=name or p.name)

    def use_dataset(self, ref: str) -> str:
        return str(self.service.use_dataset(self.id, ref))

    def child(self, name: str | None = None, *, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, str] | None = None) -> ActiveRun:
        """A nested run under this one."""
        return _start(self.service, self.experiment, name=name, params=params, tags=tags, parent_id=self.id)

    # -- lifecycle -------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything queued so far; raises a write error if one happened."""
        self._writer.flush()

    def end(self, status: RunStatus | str = RunStatus.FINISHED, error: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            self._writer.close()
        finally:
            self.service.end_run(self.id, status=status, error=error)
            with _lock:
                if self in _active:
                    _active.remove(self)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.end(RunStatus.FINISHED)
        elif isinstance(exc, KeyboardInterrupt):
            self.end(RunStatus.KILLED, error="KeyboardInterrupt")
        else:
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.end(RunStatus.FAILED, error=text)


def _start(service: Any, experiment: str, *, name: str | None, params: Mapping[str, Any] | None,
           tags: Mapping[str, Any] | None, parent_id: str | None) -> ActiveRun:
    from loopml.services.tracking.environment import capture_environment

    param_rows = {check_key(k, "param"): param_text(k, v) for k, v in (params or {}).items()}
    tag_rows = {check_key(k, "tag"): param_text(k, v, "tag") for k, v in (tags or {}).items()}
    run_id = service.create_run(experiment, name=name, parent_id=parent_id, params=param_rows, tags=tag_rows,
                                environment=capture_environment())
    run = ActiveRun(service, run_id, experiment, param_rows)
    with _lock:
        _active.append(run)
    return run


def start_run(experiment: str = "default", *, name: str | None = None, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None, nested: bool = False, parent: ActiveRun | str | None = None,
              workspace: str | os.PathLike[str] | None = None) -> ActiveRun:
    """Start a run: ``with loopml.start_run(experiment="churn", params={...}) as run: ...``.

    ``nested=True`` makes it a child of the innermost active run.
    """
    service = _service(workspace)
    parent_id: str | None = parent.id if isinstance(parent, ActiveRun) else parent
    if nested and parent_id is None:
        with _lock:
            if _active:
                parent_id = _active[-1].id
    return _start(service, experiment, name=name, params=params, tags=tags, parent_id=parent_id)


def get_run(run_id: str, *, workspace: str | os.PathLike[str] | None = None) -> RunRecord:
    return _service(workspace).get_run(run_id)


def search_runs(filter: str | None = None, *, experiments: list[str] | str | None = None,
                order_by: list[str] | str | None = None, limit: int | None = None,
                include_deleted: bool = False, workspace: str | os.PathLike[str] | None = None) -> Any:
    """Runs matching the filter language, as a pandas DataFrame (one row per run)."""
    import pandas as pd

    if isinstance(order_by, str):
        order_by = [order_by]
    if isinstance(experiments, str):
        experiments = [experiments]
    # the DataFrame has no environment column, so the search skips loading it
    runs = _service(workspace).search_runs(filter, experiments=experiments, order_by=order_by, limit=limit,
                                           include_deleted=include_deleted, include_environment=False)
    return runs_frame(runs, pd)


_FRAME_COLUMNS = ("run_id", "experiment", "name", "status", "start_time", "end_time", "duration", "parent_id")


def runs_frame(runs: list[RunRecord], pd: Any) -> Any:
    """One row per run: the attributes, then ``metrics.*``, ``params.*`` and ``tags.*`` (missing: NaN/None)."""
    n = len(runs)
    cols: dict[str, list[Any]] = {
        "run_id": [r.id for r in runs], "experiment": [r.experiment for r in runs], "name": [r.name for r in runs],
        "status": [r.status.value for r in runs], "start_time": [r.start_time for r in runs],
        "end_time": [r.end_time for r in runs], "duration": [r.duration for r in runs],
        "parent_id": [r.parent_id for r in runs],
    }
    # built column by column: a list of per-run dicts made pandas do the pivot, row by row
    for prefix, attr in (("metrics.", "metrics"), ("params.", "params"), ("tags.", "tags")):
        kind: dict[str, list[Any]] = {}
        for i, r in enumerate(runs):
            for k, v in getattr(r, attr).items():
                col = kind.get(k)
                if col is None:
                    col = kind[k] = [None] * n
                col[i] = v
        for k, col in kind.items():
            cols[prefix + k] = col
    return pd.DataFrame(cols, columns=list(cols))


def autolog(*, disable: bool = False, **kwargs: Any) -> None:
    """Log scikit-learn fits (params, training/validation scores, the fitted model) to runs."""
    from loopml.sdk.autolog import autolog as _autolog

    _autolog(disable=disable, **kwargs)


def _finish_all() -> None:
    # Interpreter exit: flush what is queued and close still-open runs, so nothing logged is lost.
    with _lock:
        runs = list(_active)
    for run in reversed(runs):
        try:
            run.end(RunStatus.FINISHED)
        except Exception:
            pass


atexit.register(_finish_all)

