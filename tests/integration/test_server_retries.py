"""Client retries through a fault-injecting proxy in front of a real `loopml server`: 503s, requests cut
mid-body and replies lost after the write landed are retried, and every point is stored exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers import FaultProxy, LoopmlServer

from loopml.domain.tracking import MetricPoint, RunStatus
from loopml.errors import LoopmlError, RemoteUnavailableError
from loopml.sdk._remote import RemoteTrackingService

LOOPML = str(Path(sys.executable).with_name("loopml"))


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env["LOOPML_DB_URL"] = db_url
    subprocess.run([LOOPML, "init", str(tmp_path / "ws")], env=env, check=True, capture_output=True)
    with LoopmlServer(tmp_path / "ws", env) as srv:
        yield srv.url


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_retry(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    subprocess.run([LOOPML, "init", str(tmp_path / "ws")], env=env, check=True, capture_output=True)
    with LoopmlServer(tmp_path / "ws", env, workers=1) as srv:
        svc = RemoteTrackingService(srv.url, retries=1)  # one attempt: a stale connection must not cost it
        rid = svc.create_run("idle")
        time.sleep(6)  # longer than uvicorn's 5 s keep-alive: the server closes our pooled connection
        svc.log_batch(rid, metrics=[MetricPoint("loss", 0.5, 0, 0.0)])
        assert len(svc.metric_history(rid, "loss")) == 1


def test_lost_replies_and_cut_requests_are_retried_without_duplicates(server: str) -> None:
    faults = {
        "/runs": ["lose-reply"],  # the run is created, the client never hears it: its retry must not add a run
        "/batch": ["503", "cut-body", "lose-reply", "lose-reply"],  # the last two reach the database
        "/end": ["lose-reply"],
    }
    with FaultProxy(server, faults) as proxy:
        svc = RemoteTrackingService(proxy.url, backoff=0.01)
        rid = svc.create_run("retry", params={"model": "rf"})
        pts = [MetricPoint("loss", 1.0 / (i + 1), i, 1.0) for i in range(3000)]
        svc.log_batch(rid, metrics=pts, params={"seed": 7}, tags={"team": "a"})
        svc.end_run(rid)
        assert proxy.pending() == {}, "every fault was hit"
        assert sum(p.endswith("/batch") for p in proxy.forwarded) == 3  # the same batch reached the server 3 times
    direct = RemoteTrackingService(server)
    assert [r.id for r in direct.search_runs(experiments=["retry"])] == [rid]
    assert [p.step for p in direct.metric_history(rid, "loss")] == list(range(3000))
    run = direct.get_run(rid)
    assert run.status == RunStatus.FINISHED
    assert run.params == {"model": "rf", "seed": "7"} and run.tags["team"] == "a"


def test_sdk_per_call_logging_through_drops_loses_and_duplicates_nothing(server: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import loopml

    with FaultProxy(server, {"/batch": ["lose-reply", "cut-body", "503", "lose-reply"]}) as proxy:
        monkeypatch.setenv("LOOPML_TRACKING_URI", proxy.url)
        with loopml.start_run("sdk", params={"lr": 0.1}) as run:
            for step in range(400):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
                run.log_metrics({"acc": step / 400, "f1": step / 800}, step=step)
                if step % 100 == 99:
                    run.flush()  # several batches, so faults hit batches in the middle of the run
        assert proxy.pending() == {}
    direct = RemoteTrackingService(server)
    for key in ("loss", "acc", "f1"):
        assert [p.step for p in direct.metric_history(run.id, key)] == list(range(400)), key
    assert direct.get_run(run.id).status == RunStatus.FINISHED


def test_retries_give_up_with_a_clear_error_and_client_errors_are_not_retried(server: str) -> None:
    with FaultProxy(server, {"/batch": ["503"] * 3}) as proxy:
        svc = RemoteTrackingService(proxy.url, retries=3, backoff=0.01)
        rid = svc.create_run("give-up")
        with pytest.raises(RemoteUnavailableError, match=r"did not answer POST .*HTTP 503"):
            svc.log_batch(rid, metrics=[MetricPoint("loss", 1.0, 0, 0.0)])
        before = len(proxy.forwarded)
        with pytest.raises(LoopmlError) as info:
            svc.log_batch(rid, metrics=[MetricPoint("bad key!?", 1.0, 0, 0.0)])
        assert 400 <= info.value.http_status < 500
        assert len(proxy.forwarded) == before + 1  # a 4xx is the caller's mistake: sent once, not retried
    assert RemoteTrackingService(server).metric_history(rid, "loss") == []
