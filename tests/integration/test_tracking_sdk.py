"""The tracking SDK against real databases: batching, failures, 8 concurrent writer processes."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from loopml.errors import ConflictError, InvalidParameterError


def _log_from_process(root: str, env: dict[str, str], worker: int, n: int) -> None:
    os.environ.update(env)
    os.chdir(root)
    import loopml

    with loopml.start_run("concurrent", name=f"w{worker}", params={"worker": worker}) as run:
        for i in range(n):
            run.log_metric("x", float(i), step=i)
            if i % 500 == 0:
                run.flush()  # many small transactions racing the other processes


def test_context_manager_flushes_and_marks_failure(workspace, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import loopml

    monkeypatch.chdir(workspace.settings.root)
    with pytest.raises(RuntimeError), loopml.start_run("e", params={"lr": 0.1}) as run:
        for i in range(2000):
            run.log_metric("loss", 1.0 / (i + 1), step=i)
        run.log_metric("bad", math.nan)
        with pytest.raises(InvalidParameterError):
            run.log_metric("acc", "high")  # type: ignore[arg-type]
        with pytest.raises(ConflictError):
            run.log_params({"lr": 0.2})
        child = run.child("inner")
        child.log_metric("c", 1.0)
        child.end()
        raise RuntimeError("boom")
    rec = loopml.get_run(run.id)
    assert rec.status.value == "FAILED" and "boom" in (rec.error or "")
    assert len(workspace.tracking.metric_history(run.id, "loss")) == 2000
    assert math.isnan(rec.metrics["bad"])
    assert rec.environment["python"] and "packages" in rec.environment
    df = loopml.search_runs("metrics.c = 1", order_by="start_time")
    assert list(df["parent_id"]) == [run.id]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_eight_processes_log_into_one_workspace_without_loss(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    from loopml.workspace import Workspace

    env: dict[str, str] = {}
    if backend == "postgresql":
        env["LOOPML_DB_URL"] = request.getfixturevalue("postgres_url")
    ws = Workspace.init(tmp_path, db_url=env.get("LOOPML_DB_URL"))
    ctx = mp.get_context("spawn")
    n = 3000
    procs = [ctx.Process(target=_log_from_process, args=(str(tmp_path), env, w, n)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    runs = ws.tracking.search_runs(experiments=["concurrent"])
    assert len(runs) == 8 and all(r.status.value == "FINISHED" for r in runs)
    assert sum(len(ws.tracking.metric_history(r.id, "x")) for r in runs) == 8 * n
    ws.close()


def test_writer_writes_in_the_background_and_logging_after_the_end_is_an_error(workspace, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import time

    import loopml

    monkeypatch.chdir(workspace.settings.root)
    with loopml.start_run("e") as run:
        for i in range(10):
            run.log_metric("loss", float(i), step=i)
        deadline = time.monotonic() + 10
        # nothing flushed yet: the background writer lands the points on its own within its interval
        while len(workspace.tracking.metric_history(run.id, "loss")) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workspace.tracking.metric_history(run.id, "loss")) == 10
        assert loopml.get_run(run.id).status.value == "RUNNING"
    with pytest.raises(ConflictError, match="ended"):
        run.log_metric("loss", 1.0, step=99)
    assert len(workspace.tracking.metric_history(run.id, "loss")) == 10


def test_writer_back_pressure_writes_without_dropping(workspace) -> None:  # type: ignore[no-untyped-def]
    from loopml.domain.tracking import MetricPoint
    from loopml.sdk._writer import BatchWriter

    svc = workspace.tracking
    rid = svc.create_run("e")
    writer = BatchWriter(svc, rid, max_queue=100, max_batch=30, interval=60.0)
    for i in range(1000):
        writer.put(MetricPoint("x", float(i), i, 1.0))
    # with a 60 s interval, only the threshold wake-ups and the full-buffer writes have run
    assert len(svc.metric_history(rid, "x")) >= 1000 - 2 * 100  # at most the buffer and one batch in flight
    writer.close()
    pts = svc.metric_history(rid, "x")
    assert [p.step for p in pts] == list(range(1000))
    assert svc.get_run(rid).metrics["x"] == 999.0


def test_a_failed_write_keeps_its_points_for_the_next_flush(workspace) -> None:  # type: ignore[no-untyped-def]
    from loopml.domain.tracking import MetricPoint
    from loopml.errors import DatabaseUnavailableError
    from loopml.sdk._writer import BatchWriter

    svc = workspace.tracking
    calls = {"n": 0}

    class FlakyOnce:  # the real service, with its second write failing once (e.g. the database was away)
        def log_batch(self, run_id, **kw):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 2:
                raise DatabaseUnavailableError("database away for a moment")
            return svc.log_batch(run_id, **kw)

    rid = svc.create_run("e")
    writer = BatchWriter(FlakyOnce(), rid, max_batch=30, interval=60.0)
    for i in range(100):
        writer.put(MetricPoint("x", float(i), i, 1.0))
    with pytest.raises(DatabaseUnavailableError):  # raised by this write, or kept from a background one
        writer.flush()
    landed = [p.step for p in svc.metric_history(rid, "x")]
    assert landed == list(range(len(landed))) and len(landed) >= 30  # in order, none twice
    writer.close()  # retries whatever is left
    assert [p.step for p in svc.metric_history(rid, "x")] == list(range(100))
