"""The loopml CLI against a remote tracking server (LOOPML_TRACKING_URI=http://...), run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.servers import LoopmlServer, free_port

from loopml.domain.tracking import MetricPoint


def loopml(*args: str, cwd: Path, uri: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env["LOOPML_TRACKING_URI"] = uri
    return subprocess.run([sys.executable, "-m", "loopml", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_runs_commands_work_against_a_remote_server_from_a_directory_without_workspace(tmp_path: Path) -> None:
    from loopml.sdk._remote import RemoteTrackingService

    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    assert subprocess.run([sys.executable, "-m", "loopml", "init", str(tmp_path / "ws")], env=env,
                          capture_output=True).returncode == 0
    elsewhere = tmp_path / "elsewhere"  # the user's shell is not in any workspace
    elsewhere.mkdir()
    with LoopmlServer(tmp_path / "ws", env, workers=1) as srv:
        svc = RemoteTrackingService(srv.url)
        ids = {}
        for model, acc in (("rf", 0.93), ("lr", 0.81), ("rf", 0.88)):
            rid = svc.create_run("churn", params={"model": model})
            svc.log_batch(rid, metrics=[MetricPoint("acc", acc, 0, 0.0)])
            svc.end_run(rid)
            ids[acc] = rid

        r = loopml("runs", "ls", "--json", cwd=elsewhere, uri=srv.url)
        assert r.returncode == 0, r.stderr
        assert {row["id"] for row in json.loads(r.stdout)} == set(ids.values())

        r = loopml("runs", "ls", "--json", "--filter", "metrics.acc > 0.85 and params.model = 'rf'",
                   "--order-by", "metrics.acc desc", cwd=elsewhere, uri=srv.url)
        assert r.returncode == 0, r.stderr
        assert [row["id"] for row in json.loads(r.stdout)] == [ids[0.93], ids[0.88]]

        r = loopml("runs", "ls", cwd=elsewhere, uri=srv.url)  # the table a user reads
        assert r.returncode == 0 and "3 run(s)" in r.stdout and "churn" in r.stdout

        r = loopml("runs", "show", ids[0.81], "--json", cwd=elsewhere, uri=srv.url)
        assert r.returncode == 0, r.stderr
        shown = json.loads(r.stdout)
        assert shown["params"]["model"] == "lr" and shown["metrics"]["acc"] == 0.81

        r = loopml("runs", "ls", "--filter", "metrics.acc >", cwd=elsewhere, uri=srv.url)
        assert r.returncode != 0 and "Traceback" not in r.stderr  # the server's 4xx reaches the user as an error
        assert "metrics.acc" in r.stderr + r.stdout

    down = f"http://127.0.0.1:{free_port()}"
    r = loopml("runs", "ls", cwd=elsewhere, uri=down)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert down in r.stderr and "loopml server" in r.stderr
