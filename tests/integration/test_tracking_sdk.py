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
