"""Server ingest benchmark: 8 concurrent client processes through loopml server vs MLflow server, points counted."""

from __future__ import annotations

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
PERCALL = os.environ.get("MLFLOW_MODE") == "percall"
CLIENTS, RUNS, PARAMS, METRICS, STEPS = 8, int(os.environ.get("RUNS", "4")), 10, 5, 100

LOOPML_CLIENT = """
import sys, time
from loopml.sdk._remote import RemoteTrackingService
from loopml.domain.tracking import MetricPoint
svc = RemoteTrackingService(sys.argv[1]); w = sys.argv[2]
for r in range({RUNS}):
    rid = svc.create_run("bench", params={{f"p{{i}}": i for i in range({PARAMS})}}, tags={{"w": w}})
    t = time.time()
    svc.log_batch(rid, metrics=[MetricPoint(f"m{{k}}", s * 0.5, s, t) for k in range({METRICS}) for s in range({STEPS})])
    svc.end_run(rid)
"""

MLFLOW_CLIENT = """
import sys, time, mlflow
from mlflow.tracking import MlflowClient
from mlflow.entities import Metric, Param
c = MlflowClient(sys.argv[1]); exp = c.get_experiment_by_name("bench").experiment_id
for r in range({RUNS}):
    run = c.create_run(exp); rid = run.info.run_id
    ms = [Metric(f"m{{k}}", s * 0.5, int(time.time() * 1000), s) for k in range({METRICS}) for s in range({STEPS})]
    c.log_batch(rid, metrics=ms[:0], params=[Param(f"p{{i}}", str(i)) for i in range({PARAMS})])
    if {PERCALL}:
        for m in ms:
            c.log_metric(rid, m.key, m.value, m.timestamp, m.step)
    else:
        for i in range(0, len(ms), 1000):
            c.log_batch(rid, metrics=ms[i:i + 1000])
    c.set_terminated(rid)
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


def clients(py: str, code: str, url: str) -> float:
    t0 = time.perf_counter()
    ps = [subprocess.Popen([py, "-c", code, url, str(i)]) for i in range(CLIENTS)]
    assert all(p.wait() == 0 for p in ps)
    return time.perf_counter() - t0


def main() -> None:
    expected = CLIENTS * RUNS * METRICS * STEPS
    tmp = Path(tempfile.mkdtemp())
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    # loopml
    subprocess.run([LOOPML, "init", str(tmp / "ws")], env=env, check=True, capture_output=True)
    srv = subprocess.Popen([LOOPML, "server", "--port", "5811", "--workers", "2"], cwd=tmp / "ws", env=env)
    url = "http://127.0.0.1:5811"
    wait(url + "/health", srv)
    t_l = clients(sys.executable, LOOPML_CLIENT.format(RUNS=RUNS, PARAMS=PARAMS, METRICS=METRICS, STEPS=STEPS), url)
    from loopml.sdk._remote import RemoteTrackingService

    svc = RemoteTrackingService(url)
    n_l = sum(len(svc.metric_history(r.id, f"m{k}")) for r in svc.search_runs(experiments=["bench"])
              for k in range(METRICS))
    srv.terminate()
    srv.wait()
    # mlflow
    ms = subprocess.Popen([str(MLFLOW_PY), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", "5812",
                           "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--workers", "2",
                           "--default-artifact-root", str(tmp / "mlart")], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    murl = "http://127.0.0.1:5812"
    wait(murl + "/health", ms)
    subprocess.run([str(MLFLOW_PY), "-c", f"from mlflow.tracking import MlflowClient; "
                    f"MlflowClient('{murl}').create_experiment('bench')"], check=True)
    t_m = clients(str(MLFLOW_PY), MLFLOW_CLIENT.format(PERCALL=PERCALL, RUNS=RUNS, PARAMS=PARAMS, METRICS=METRICS, STEPS=STEPS),
                  murl)
    out = subprocess.run([str(MLFLOW_PY), "-c", f"""
from mlflow.tracking import MlflowClient
c = MlflowClient('{murl}'); e = c.get_experiment_by_name('bench').experiment_id
runs = c.search_runs([e], max_results=10000)
print(sum(len(c.get_metric_history(r.info.run_id, f'm{{k}}')) for r in runs for k in range({METRICS})))
"""], check=True, capture_output=True, text=True).stdout
    n_m = int(out.strip())
    ms.terminate()
    ms.wait()
    print(f"points expected {expected}: loopml {n_l} in {t_l:.2f}s ({expected / t_l:,.0f}/s), "
          f"mlflow {'log_metric' if PERCALL else 'log_batch'} {n_m} in {t_m:.2f}s ({expected / t_m:,.0f}/s); ratio {t_m / t_l:.1f}x")


if __name__ == "__main__":
    main()
