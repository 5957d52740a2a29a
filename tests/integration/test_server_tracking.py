"""Tracking server over a real uvicorn: remote SDK round trip, bad input -> 4xx, concurrent clients lose nothing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.servers import free_port

LOOPML = str(Path(sys.executable).with_name("loopml"))


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[str]:
    env = {**os.environ, "LOOPML_DB_URL": db_url}
    env.pop("LOOPML_TRACKING_URI", None)
    root = tmp_path / "ws"
    subprocess.run([LOOPML, "init", str(root)], env=env, check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([LOOPML, "server", "--port", str(port), "--workers", "2"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(url + "/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "server did not start")
    yield url
    proc.terminate()
    proc.wait(10)


def test_remote_sdk_round_trip(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopml.sdk._remote import RemoteTrackingService, remote_service_from_env

    svc = remote_service_from_env({"LOOPML_TRACKING_URI": server})
    assert isinstance(svc, RemoteTrackingService)
    from loopml.domain.tracking import MetricPoint

    rid = svc.create_run("exp", params={"model": "rf"}, tags={"team": "a"}, environment={"python": "3.11"})
    pts = [MetricPoint("loss", 1.0 / (i + 1), i, 0.0) for i in range(5000)]
    svc.log_batch(rid, metrics=[*pts, MetricPoint("odd", math.nan), MetricPoint("big", math.inf)], batch_id="b1")
    svc.log_batch(rid, metrics=pts, batch_id="b1")  # a retried batch is not stored twice
    svc.end_run(rid)
    assert len(svc.metric_history(rid, "loss")) == 5000
    run = svc.get_run(rid)
    assert math.isnan(run.metrics["odd"]) and run.metrics["big"] == math.inf
    assert [r.id for r in svc.search_runs("params.model = 'rf' and metrics.loss < 0.01")] == [rid]
    assert [r.environment for r in svc.search_runs()] == [{"python": "3.11"}]
    assert [r.environment for r in svc.search_runs(include_environment=False)] == [{}]  # lean listing
    assert svc.list_experiments() == ["exp"]
    spec = httpx.get(server + "/openapi.json").json()
    assert "/api/tracking/runs" in spec["paths"]


BAD = [
    ("POST", "/api/tracking/runs", b"{not json"),
    ("POST", "/api/tracking/runs", b"[]"),
    ("POST", "/api/tracking/runs", json.dumps({"experiment": 5}).encode()),
    ("POST", "/api/tracking/runs", json.dumps({"experiment": "x" * 10_000}).encode()),
    ("POST", "/api/tracking/runs", json.dumps({"experiment": "e", "tags": {"a": [1]}}).encode()),
    ("POST", "/api/tracking/runs", json.dumps({"experiment": "e", "zzz": 1}).encode()),
    ("POST", "/api/tracking/runs/nope/batch", json.dumps({"metrics": [["a", 1.0, 0, 0.0]]}).encode()),
    ("POST", "/api/tracking/runs/RID/batch", json.dumps({"metrics": [["a", "x", 0, 0.0]]}).encode()),
    ("POST", "/api/tracking/runs/RID/batch", json.dumps({"metrics": [["k" * 5000, 1.0, 0, 0.0]]}).encode()),
    ("POST", "/api/tracking/runs/RID/batch", json.dumps({"metrics": [["bad key!?", 1.0, 0, 0.0]]}).encode()),
    ("POST", "/api/tracking/runs/RID/batch", json.dumps({"metrics": [[1, 2]]}).encode()),
    ("POST", "/api/tracking/runs/RID/batch", json.dumps({"params": {"p": 2}}).encode()),
    ("POST", "/api/tracking/runs/RID/end", json.dumps({"status": "WHATEVER"}).encode()),
    ("POST", "/api/tracking/runs/search", json.dumps({"filter": "metrics.a >"}).encode()),
    ("POST", "/api/tracking/runs/search", json.dumps({"filter": "x'; drop table runs; --"}).encode()),
    ("POST", "/api/tracking/runs/search", json.dumps({"limit": -1}).encode()),
    ("GET", "/api/tracking/runs/nope", b""),
    ("GET", "/api/tracking/runs/RID/metrics/loss?max_points=abc", b""),
    ("DELETE", "/api/tracking/runs/nope", b""),
]


def test_malformed_requests_get_4xx_and_server_stays_up(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        rid = c.post("/api/tracking/runs", json={"experiment": "e", "params": {"p": 1}}).json()["run_id"]
        for method, path, body in BAD:
            r = c.request(method, path.replace("RID", rid), content=body or None,
                          headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (method, path, body[:80], r.status_code, r.text)
            assert r.json()["error"], (path, r.text)
        assert c.get("/health").status_code == 200


_CLIENT = """
import sys
from loopml.sdk._remote import RemoteTrackingService
from loopml.domain.tracking import MetricPoint
svc = RemoteTrackingService(sys.argv[1])
for r in range(3):
    rid = svc.create_run("conc", params={"worker": sys.argv[2], "r": r})
    svc.log_batch(rid, metrics=[MetricPoint(f"m{k}", float(s), s, 0.0) for k in range(5) for s in range(200)])
    svc.end_run(rid)
"""


def test_concurrent_client_processes_lose_nothing(server: str) -> None:
    from loopml.sdk._remote import RemoteTrackingService

    procs = [subprocess.Popen([sys.executable, "-c", _CLIENT, server, str(i)]) for i in range(6)]
    assert all(p.wait(120) == 0 for p in procs)
    svc = RemoteTrackingService(server)
    runs = svc.search_runs(experiments=["conc"])
    assert len(runs) == 18
    total = sum(len(svc.metric_history(r.id, f"m{k}")) for r in runs for k in range(5))
    assert total == 18 * 5 * 200
