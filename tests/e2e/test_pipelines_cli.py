"""`loopml pipeline …`, `loopml lineage`, `loopml trigger …` and `loopml scheduler` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FLOW = '''
import loopml

@loopml.step
def load(n: int = 3):
    print("loading", n)
    return list(range(n))

@loopml.step
def fit(xs, lr: float = 0.1):
    return {"w": sum(xs) * lr}

@loopml.step
def fail_if(model, fail: bool = False):
    if fail:
        raise RuntimeError("evaluation exploded")
    return model["w"]

@loopml.pipeline
def train(n: int = 3, fail: bool = False):
    fail_if(fit(load(n)), fail=fail)
'''


def loopml(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    return subprocess.run([sys.executable, "-m", "loopml", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOW)
    assert loopml("init", cwd=tmp_path).returncode == 0
    return tmp_path


def test_run_show_ls_graph_explain(project: Path) -> None:
    r = loopml("pipeline", "run", "flows:train", "-p", "n=4", "-p", "fit.lr=0.5", "--json", cwd=project)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert [s["status"] for s in first["steps"]] == ["FINISHED"] * 3 and first["params"] == {"n": 4, "fit.lr": 0.5}
    (project / "p.yaml").write_text("n: 4\nfit:\n  lr: 0.5\n")
    r = loopml("pipeline", "run", "flows:train", "-f", "p.yaml", cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("CACHED") == 3
    run_id = loopml("pipeline", "ls", "--limit", "1", cwd=project).stdout
    second = next(line for line in run_id.splitlines() if "train" in line).split("│")[1].strip()
    show = loopml("pipeline", "show", second, cwd=project).stdout
    assert "fit" in show and "CACHED" in show and "yes" in show
    assert "cached" in loopml("pipeline", "explain", second, "fit", cwd=project).stdout
    graph = loopml("pipeline", "graph", "flows:train", cwd=project).stdout
    assert "fit  <- load (xs)" in graph and "fail_if  <- fit (model)" in graph
    r = loopml("pipeline", "graph", second, "--format", "html", "-o", "g.html", cwd=project)
    assert r.returncode == 0 and "<svg" in (project / "g.html").read_text()


def test_bad_input_is_one_clear_line_and_exit_code(project: Path) -> None:
    r = loopml("pipeline", "run", "flows:train", "-p", "fit.momentum=1", cwd=project)
    assert r.returncode == 2 and "'momentum' does not match the signature of step 'fit'" in r.stderr
    assert "Traceback" not in r.stderr
    r = loopml("pipeline", "run", "nosuch:train", cwd=project)
    assert r.returncode == 2 and "cannot be found" in r.stderr
    r = loopml("pipeline", "run", "flows:train", "--executor", "spark", cwd=project)
    assert r.returncode == 2 and "Use inline, process or dask" in r.stderr


def test_failure_shows_the_step_error_and_resume_finishes(project: Path) -> None:
    r = loopml("pipeline", "run", "flows:train", "-p", "fail=true", cwd=project)
    assert r.returncode == 1
    assert "Step 'fail_if' failed" in r.stderr and "RuntimeError: evaluation exploded" in r.stderr
    assert "site-packages" not in r.stderr and "loopml/services" not in r.stderr
    run_tail = r.stderr.split("loopml pipeline resume ")[1].split("`")[0]
    (project / "flows.py").write_text(FLOW.replace('raise RuntimeError("evaluation exploded")', "pass"))
    r = loopml("pipeline", "resume", run_tail, cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("REUSED") == 2 and "FINISHED" in r.stdout


def test_lineage_text_and_html(project: Path) -> None:
    out = json.loads(loopml("pipeline", "run", "flows:train", "--json", cwd=project).stdout)
    digest = out["steps"][1]["output"]
    r = loopml("lineage", digest[:12], "--html", "lin.html", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "step fit" in r.stdout and "step load" in r.stdout and "step fail_if" in r.stdout
    assert (project / "lin.html").read_text().count("<rect") >= 4
    r = loopml("lineage", "doesnotexist", cwd=project)
    assert r.returncode == 1 and "Nothing called 'doesnotexist'" in r.stderr


def test_alert_trigger_from_the_cli(project: Path) -> None:
    assert loopml("trigger", "add", "retrain", "--pipeline", "flows:train", "--on-alert", "drift",
                  cwd=project).returncode == 0
    assert "retrain" in loopml("trigger", "ls", cwd=project).stdout
    assert "FINISHED" in loopml("trigger", "fire", "drift", "--key", "a1", cwd=project).stdout
    assert "already fired" in loopml("trigger", "fire", "drift", "--key", "a1", cwd=project).stdout


def test_scheduler_survives_a_restart_without_running_a_slot_twice(project: Path) -> None:
    r = loopml("pipeline", "schedule", "minutely", "--cron", "* * * * *", "--pipeline", "flows:train", cwd=project)
    assert r.returncode == 0, r.stderr
    # pretend the schedule was made an hour ago, so the current minute's slot is due now
    from loopml.workspace import Workspace

    with Workspace.open(project) as ws:
        from sqlalchemy import update

        from loopml.stores.metadata.schema.pipelines import pipeline_schedules

        with ws.db.write() as conn:
            conn.execute(update(pipeline_schedules).values(created=time.time() - 3600))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    if time.time() % 60 > 50:  # keep both scheduler lives inside one minute
        time.sleep(61 - time.time() % 60)

    def scheduler_life(seconds: float) -> str:
        proc = subprocess.Popen([sys.executable, "-m", "loopml", "scheduler", "--interval", "0.2"], cwd=project,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(seconds)
        proc.send_signal(signal.SIGKILL)  # a crash, not a clean stop
        out, _ = proc.communicate(timeout=10)
        return out

    first = scheduler_life(4.0)
    second = scheduler_life(3.0)
    assert "schedule minutely: run" in first and "FINISHED" in first
    assert "schedule minutely" not in second
    with Workspace.open(project) as ws:
        assert len(ws.pipelines.slots("minutely")) == 1
        assert len(ws.pipelines.list_runs()) == 1


def test_dask_run_from_the_cli_starts_and_stops_its_cluster(project: Path) -> None:
    import psutil

    proc = subprocess.Popen([sys.executable, "-m", "loopml", "pipeline", "run", "flows:train", "--executor", "dask",
                             "--workers", "2", "--json"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")})
    seen: set[int] = set()
    while proc.poll() is None:  # every process it starts (forkserver, workers) while it runs
        try:
            seen.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)  # returns at exit: nothing left holding its output open
    assert proc.returncode == 0, err
    run = json.loads(out)
    assert run["status"] == "FINISHED" and [s["status"] for s in run["steps"]] == ["FINISHED"] * 3
    r = loopml("pipeline", "show", run["id"][-8:], cwd=project)
    assert "dask" in r.stdout
    assert len(seen) >= 3  # the forkserver and two workers
    assert [p for p in seen if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE] == []
