"""Server ingest benchmark: 8 concurrent client processes through loopml server vs MLflow server, points counted.

Environment knobs (all optional):
  RUNS=100          runs in total, spread over the 8 clients (each run: 10 params, 5 metrics x 100 steps)
  MLFLOW_RUNS=N     runs in total for MLflow (default RUNS); per-call MLflow at 100 runs takes over an hour,
                    so measure it smaller and compare values/s
  MLFLOW_MODE=batch MLflow client uses log_batch (1000 metrics per call); `percall` uses log_metric per point
  LOOPML_API=sdk    loopml client uses the per-call SDK (`loopml.start_run` + `run.log_metric` per point,
                    batched in the background); `batch` calls RemoteTrackingService.log_batch directly
  ONLY=loopml|mlflow  run one side only

Three figures per tool: wall time (client processes started -> all exited, includes Python start-up and imports),
ingest time (first request sent -> last write acknowledged, taken from the clients' clocks), and the CPU seconds the
server's process tree spent meanwhile (the figure least disturbed by other jobs on a shared machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
MLFLOW_PY = HERE / ".venvs" / "mlflow" / "bin" / "python"
LOOPML = str(Path(sys.executable).with_name("loopml"))
PERCALL = os.environ.get("MLFLOW_MODE", "batch") == "percall"
LOOPML_API = os.environ.get("LOOPML_API", "sdk")
ONLY = os.environ.get("ONLY", "")
CLIENTS, PARAMS, METRICS, STEPS = 8, 10, 5, 100
RUNS = int(os.environ.get("RUNS", "100"))
MLFLOW_RUNS = int(os.environ.get("MLFLOW_RUNS", str(RUNS)))
WORKERS = os.environ.get("WORKERS", "2")

# Each client gets argv: url, worker index, number of runs; prints one JSON line {first, last}.
LOOPML_SDK_CLIENT = """
import json, os, sys, time
os.environ["LOOPML_TRACKING_URI"] = sys.argv[1]
import loopml
w, n = sys.argv[2], int(sys.argv[3])
first = time.time()
for r in range(n):
    with loopml.start_run("bench", params={{f"p{{i}}": i for i in range({PARAMS})}}, tags={{"w": w}}) as run:
        for s in range({STEPS}):
            for k in range({METRICS}):
                run.log_metric(f"m{{k}}", s * 0.5, step=s)
print(json.dumps({{"first": first, "last": time.time()}}))
"""

LOOPML_BATCH_CLIENT = """
import json, sys, time
from loopml.sdk._remote import RemoteTrackingService
from loopml.domain.tracking import MetricPoint
svc = RemoteTrackingService(sys.argv[1]); w, n = sys.argv[2], int(sys.argv[3])
first = time.time()
for r in range(n):
    rid = svc.create_run("bench", params={{f"p{{i}}": i for i in range({PARAMS})}}, tags={{"w": w}})
    t = time.time()
    svc.log_batch(rid, metrics=[MetricPoint(f"m{{k}}", s * 0.5, s, t) for s in range({STEPS}) for k in range({METRICS})])
    svc.end_run(rid)
print(json.dumps({{"first": first, "last": time.time()}}))
"""

MLFLOW_CLIENT = """
import json, sys, time, mlflow
from mlflow.tracking import MlflowClient
from mlflow.entities import Metric, Param
c = MlflowClient(sys.argv[1]); n = int(sys.argv[3])
first = time.time()
exp = c.get_experiment_by_name("bench").experiment_id
for r in range(n):
    run = c.create_run(exp); rid = run.info.run_id
    ms = [Metric(f"m{{k}}", s * 0.5, int(time.time() * 1000), s) for s in range({STEPS}) for k in range({METRICS})]
    c.log_batch(rid, metrics=ms[:0], params=[Param(f"p{{i}}", str(i)) for i in range({PARAMS})])
    if {PERCALL}:
        for m in ms:
            c.log_metric(rid, m.key, m.value, m.timestamp, m.step)
    else:
        for i in range(0, len(ms), 1000):
            c.log_batch(rid, metrics=ms[i:i + 1000])
    c.set_terminated(rid)
print(json.dumps({{"first": first, "last": time.time()}}))
"""


def wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its descendants (Linux /proc)."""
    ticks, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def clients(py: str, code: str, url: str, runs: int, env: dict[str, str] | None = None,
            server_pid: int = 0) -> tuple[float, float, float]:
    """Start 8 clients sharing ``runs`` runs; return (wall s, first request -> last ack s, server CPU s)."""
    cpu0 = tree_cpu(server_pid)
    shares = [runs // CLIENTS + (1 if i < runs % CLIENTS else 0) for i in range(CLIENTS)]
    t0 = time.perf_counter()
    ps = [subprocess.Popen([py, "-c", code, url, str(i), str(n)], stdout=subprocess.PIPE, text=True, env=env)
          for i, n in enumerate(shares)]
    outs = [p.communicate()[0] for p in ps]
    wall = time.perf_counter() - t0
    assert all(p.returncode == 0 for p in ps), [p.returncode for p in ps]
    cpu = tree_cpu(server_pid) - cpu0
    marks = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    return wall, max(m["last"] for m in marks) - min(m["first"] for m in marks), cpu


def fmt(name: str, n: int, expected: int, wall: float, ingest: float, cpu: float) -> str:
    return (f"{name}: {n}/{expected} points counted (lost {expected - n}); wall {wall:.2f}s ({expected / wall:,.0f}/s),"
            f" ingest {ingest:.2f}s ({expected / ingest:,.0f}/s), server CPU {cpu:.2f}s"
            f" ({expected / max(cpu, 0.01):,.0f} points per CPU-second)")


def bench_loopml(tmp: Path, env: dict[str, str]) -> tuple[float, float]:
    expected = RUNS * METRICS * STEPS
    subprocess.run([LOOPML, "init", str(tmp / "ws")], env=env, check=True, capture_output=True)
    srv = subprocess.Popen([LOOPML, "server", "--port", "5811", "--workers", WORKERS], cwd=tmp / "ws", env=env)
    url = "http://127.0.0.1:5811"
    try:
        wait(url + "/health", srv)
        code = LOOPML_SDK_CLIENT if LOOPML_API == "sdk" else LOOPML_BATCH_CLIENT
        wall, ingest, cpu = clients(sys.executable, code.format(PARAMS=PARAMS, METRICS=METRICS, STEPS=STEPS), url,
                                    RUNS, env, srv.pid)
        from loopml.sdk._remote import RemoteTrackingService

        svc = RemoteTrackingService(url)
        runs = svc.search_runs(experiments=["bench"])
        n = sum(len(svc.metric_history(r.id, f"m{k}")) for r in runs for k in range(METRICS))
        assert len(runs) == RUNS and all(len(r.params) == PARAMS for r in runs), (len(runs), RUNS)
    finally:
        srv.terminate()
        srv.wait()
    print(fmt(f"loopml ({LOOPML_API})", n, expected, wall, ingest, cpu), flush=True)
    return wall, ingest


def bench_mlflow(tmp: Path) -> tuple[float, float]:
    expected = MLFLOW_RUNS * METRICS * STEPS
    ms = subprocess.Popen([str(MLFLOW_PY), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", "5812",
                           "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--workers", WORKERS,
                           "--default-artifact-root", str(tmp / "mlart")], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    murl = "http://127.0.0.1:5812"
    try:
        wait(murl + "/health", ms)
        subprocess.run([str(MLFLOW_PY), "-c", f"from mlflow.tracking import MlflowClient; "
                        f"MlflowClient('{murl}').create_experiment('bench')"], check=True)
        wall, ingest, cpu = clients(str(MLFLOW_PY), MLFLOW_CLIENT.format(PERCALL=PERCALL, PARAMS=PARAMS,
                                                                          METRICS=METRICS, STEPS=STEPS),
                                    murl, MLFLOW_RUNS, server_pid=ms.pid)
        out = subprocess.run([str(MLFLOW_PY), "-c", f"""
from mlflow.tracking import MlflowClient
c = MlflowClient('{murl}'); e = c.get_experiment_by_name('bench').experiment_id
runs = c.search_runs([e], max_results=10000)
assert len(runs) == {MLFLOW_RUNS}, len(runs)
print(sum(len(c.get_metric_history(r.info.run_id, f'm{{k}}')) for r in runs for k in range({METRICS})))
"""], check=True, capture_output=True, text=True).stdout
        n = int(out.strip())
    finally:
        ms.terminate()
        ms.wait()
    print(fmt(f"mlflow ({'log_metric' if PERCALL else 'log_batch'})", n, expected, wall, ingest, cpu), flush=True)
    return wall, ingest


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    os.chdir(tmp)  # clients start here: no git repository around them
    res_l = bench_loopml(tmp, env) if ONLY in ("", "loopml") else None
    res_m = bench_mlflow(tmp) if ONLY in ("", "mlflow") else None
    if res_l and res_m:
        vl = RUNS * METRICS * STEPS
        vm = MLFLOW_RUNS * METRICS * STEPS
        print(f"ratio by values/s: wall {vl / res_l[0] / (vm / res_m[0]):.1f}x, "
              f"ingest {vl / res_l[1] / (vm / res_m[1]):.1f}x")


if __name__ == "__main__":
    main()
