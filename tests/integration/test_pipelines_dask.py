"""Steps as Dask tasks on a real LocalCluster bound to 127.0.0.1, with declared resources."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.integration.pipelines_helpers import write_module

from loopml.errors import PipelineDefinitionError

FLOW = """
import os, time
import loopml

@loopml.step(cpus=1, memory="100M")
def nap(i: int, secs: float = 1.0):
    time.sleep(secs)
    return {"i": i, "pid": os.getpid()}

@loopml.step
def collect(a, b, c, d):
    return sorted({x["pid"] for x in (a, b, c, d)})

@loopml.pipeline
def par(secs: float = 1.0):
    collect(*[nap(i, secs) for i in range(4)])

@loopml.step(cpus=64)
def greedy():
    return 1

@loopml.pipeline
def too_big():
    greedy()

@loopml.step
def listening():
    import psutil
    me = psutil.Process()
    procs = [me, me.parent(), me.parent().parent()]
    addrs = set()
    for p in procs:
        for c in p.net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN:
                addrs.add(c.laddr.ip)
    return {"pid": os.getpid(), "listen": sorted(addrs)}

@loopml.pipeline
def where():
    listening()
"""


@pytest.fixture(scope="module")
def cluster(s3_server):  # type: ignore[no-untyped-def]
    # s3_server first: it puts the S3 credentials in the environment the workers inherit
    from distributed import LocalCluster

    c = LocalCluster(host="127.0.0.1", dashboard_address="127.0.0.1:0", processes=True, n_workers=2,
                     threads_per_worker=1, resources={"cpus": 1, "memory": 1e9}, silence_logs=40)
    yield c
    c.close()


def test_independent_steps_run_in_parallel_on_the_cluster(workspace: Any, tmp_path: Path, cluster: Any) -> None:
    mod = write_module(tmp_path / "proj", FLOW)
    t = time.time()
    run = workspace.pipelines.run(f"{mod}:par", executor="dask", scheduler=cluster.scheduler_address)
    elapsed = time.time() - t
    by = {s.name: s for s in run.steps}
    assert run.status == "FINISHED" and len(run.steps) == 5
    pids = __import__("json").loads(workspace.objects.read_bytes(by["collect"].output_digest))
    assert len(pids) == 2  # both workers were used
    # 4 one-second steps on 2 workers (cpus=1 each => one at a time per worker): about 2 s
    assert 1.9 < elapsed < 2.0 + 2.0


def test_a_step_asking_for_more_than_any_worker_offers_fails_before_running(
    workspace: Any, tmp_path: Path, cluster: Any
) -> None:
    mod = write_module(tmp_path / "proj", FLOW)
    with pytest.raises(PipelineDefinitionError, match="Step 'greedy' asks for resources"):
        workspace.pipelines.run(f"{mod}:too_big", executor="dask", scheduler=cluster.scheduler_address)
    assert workspace.pipelines.list_runs() == []


def test_dask_alone_starts_a_local_cluster_on_loopback_only(workspace: Any, tmp_path: Path) -> None:
    import os

    mod = write_module(tmp_path / "proj", FLOW)
    run = workspace.pipelines.run(f"{mod}:where", executor="dask")
    out = __import__("json").loads(workspace.objects.read_bytes(run.steps[0].output_digest))
    assert out["pid"] != os.getpid()
    assert out["listen"] and set(out["listen"]) == {"127.0.0.1"}


def test_postgres_and_s3_workspace_runs_unchanged_on_the_cluster(
    tmp_path: Path, cluster: Any, s3_server: Any, s3_bucket: str, postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loopml.workspace import Workspace

    monkeypatch.setenv("LOOPML_DB_URL", postgres_url)
    monkeypatch.setenv("LOOPML_ARTIFACTS", f"s3://{s3_bucket}/objs")
    monkeypatch.setenv("LOOPML_S3_ENDPOINT_URL", s3_server.endpoint_url)
    mod = write_module(tmp_path / "proj", FLOW)
    with Workspace.init(tmp_path / "ws") as ws:
        run = ws.pipelines.run(f"{mod}:par", params={"secs": 0.1}, executor="dask",
                               scheduler=cluster.scheduler_address)
        by = {s.name: s for s in run.steps}
        assert ws.objects.local_path(by["collect"].output_digest) is None  # it lives in S3
        assert len(__import__("json").loads(ws.objects.read_bytes(by["collect"].output_digest))) >= 1
        again = ws.pipelines.run(f"{mod}:par", params={"secs": 0.1})  # in-process, same store: cached
        assert {str(s.status) for s in again.steps} == {"CACHED"}


def test_a_bad_parameter_with_dask_fails_clearly_and_leaves_no_worker_behind(workspace: Any, tmp_path: Path) -> None:
    import psutil

    # the cluster starts in the background while the pipeline is checked; the error must still
    # come out as the parameter error, and the cluster must be gone when it does
    mod = write_module(tmp_path / "proj", FLOW)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(PipelineDefinitionError, match="'nope' does not match"):
        workspace.pipelines.run(f"{mod}:par", params={"nope": 1}, executor="dask", workers=1)
    time.sleep(0.5)
    left = [" ".join(p.cmdline())[:200] for p in psutil.Process().children(recursive=True)
            if p.pid not in before and p.is_running() and "from multiprocessing." not in " ".join(p.cmdline())]  # not the helpers
    assert left == []
    assert workspace.pipelines.list_runs() == []


def test_an_unreachable_scheduler_is_a_clear_error(workspace: Any, tmp_path: Path) -> None:
    import socket

    mod = write_module(tmp_path / "proj", FLOW)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}), pytest.raises(
            PipelineDefinitionError, match=f"Could not connect to the Dask scheduler at tcp://127.0.0.1:{port}"):
        workspace.pipelines.run(f"{mod}:par", executor="dask", scheduler=f"tcp://127.0.0.1:{port}")
