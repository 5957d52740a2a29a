"""Tracking benchmark: per-call ingest and search over 10,000 runs, loopml vs MLflow 3.x on local SQLite.

Run it under the shared benchmark lock (the machine has 2 cores):

    bash benchmarks/setup_mlflow.sh            # once: benchmarks/.venvs/mlflow
    flock /tmp/loopml-bench.lock .venv/bin/python benchmarks/bench_tracking.py
    flock /tmp/loopml-bench.lock .venv/bin/python benchmarks/bench_tracking.py --search-only

Each tool runs in its own interpreter (loopml in this venv, MLflow in its venv) from a small
driver script; both write to a local SQLite file. Sizes come from the environment:
RUNS (100) runs x 10 params x 5 metrics x STEPS (100) steps for ingest; MLflow's per-call
API is measured on PERCALL_RUNS (20) of them and compared by rate (values/s); SEARCH_RUNS
(10,000) runs for search, REPEAT (7) warm searches and COLD (5) fresh processes per tool.
Every logged value is counted in each database afterwards; both searches must return the
same runs. The filled search stores are kept in TRACKING_CACHE (benchmarks/.work/tracking) between
runs; `--search-only` skips the ingest part.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MLFLOW_PY = HERE / ".venvs" / "mlflow" / "bin" / "python"
LOOPML_PY = sys.executable
LOOPML_CLI = str(Path(sys.executable).with_name("loopml"))
CACHE = Path(os.environ.get("TRACKING_CACHE", HERE / ".work" / "tracking"))

RUNS = int(os.environ.get("RUNS", "100"))
PERCALL_RUNS = int(os.environ.get("PERCALL_RUNS", "20"))
PARAMS, METRICS, STEPS = 10, 5, int(os.environ.get("STEPS", "100"))
SEARCH_RUNS = int(os.environ.get("SEARCH_RUNS", "10000"))
REPEAT = int(os.environ.get("REPEAT", "7"))
COLD = int(os.environ.get("COLD", "5"))
FILTER = "metrics.acc > 0.9 and params.model = 'rf'"

# -- drivers: each prints one JSON line ---------------------------------------------------------

LOOPML_DRIVER = r'''
import json, os, sys, time
mode, ws = sys.argv[1], sys.argv[2]
os.chdir(ws)
t_import = time.perf_counter()
import loopml

if mode in ("percall", "percall-full"):
    runs, metrics, steps, params = (int(a) for a in sys.argv[3:7])
    loopml.search_runs(limit=1)  # opens the workspace (imports SQLAlchemy), like MLflow's set_experiment
    if mode == "percall-full":
        # same durability as MLflow's SQLite default: fsync at every commit
        from sqlalchemy import event
        from loopml.sdk.tracking import _service
        eng = _service().db.engine
        event.listen(eng, "connect", lambda c, r: c.execute("PRAGMA synchronous=FULL"))
        eng.dispose()
    t0 = time.perf_counter()
    for r in range(runs):
        with loopml.start_run("bench", name=f"r{r}", params={f"p{i}": i for i in range(params)}) as run:
            for s in range(steps):
                for k in range(metrics):
                    run.log_metric(f"m{k}", s * 0.5 + k, step=s)
    # the context exit flushed the writer and ended the run: everything is in the database
    print(json.dumps({"seconds": time.perf_counter() - t0}))
elif mode == "populate":
    from loopml.domain.tracking import MetricPoint
    from loopml.sdk.tracking import _service
    svc = _service()
    for row in json.load(open(sys.argv[3])):
        rid = svc.create_run("search", name=row["name"], params=row["params"], tags=row["tags"])
        svc.log_batch(rid, metrics=[MetricPoint(k, v, 0, row["ts"]) for k, v in row["metrics"].items()])
        svc.end_run(rid)
    print(json.dumps({"ok": True}))
elif mode == "search":
    flt, repeat = sys.argv[3], int(sys.argv[4])
    # like the MLflow driver (``import mlflow`` imports pandas; get_experiment_by_name opens the
    # store and does one lookup): pandas imported, store open, one lookup of a missing run done
    # before the clock starts, so the first search is the search's own cold cost
    import pandas
    from loopml.errors import NotFoundError
    from loopml.sdk.tracking import _service
    try:
        _service().get_run("0" * 32)
    except NotFoundError:
        pass
    times, df = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        df = loopml.search_runs(flt, experiments=["search"])
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "names": sorted(df["name"]), "columns": len(df.columns)}))
'''

MLFLOW_DRIVER = r'''
import json, os, sys, time, logging
logging.disable(logging.WARNING)
mode, db = sys.argv[1], sys.argv[2]
import mlflow
from mlflow.tracking import MlflowClient
from mlflow.entities import Metric, Param, RunTag
mlflow.set_tracking_uri("sqlite:///" + db)

if mode == "init":
    mlflow.set_experiment("bench")  # creates the schema (MLflow's migrations), not timed
    MlflowClient().create_experiment("search")
    print(json.dumps({"ok": True}))
elif mode == "percall":
    runs, metrics, steps, params = (int(a) for a in sys.argv[3:7])
    mlflow.set_experiment("bench")
    t0 = time.perf_counter()
    for r in range(runs):
        with mlflow.start_run(run_name=f"r{r}"):
            mlflow.log_params({f"p{i}": i for i in range(params)})
            for s in range(steps):
                for k in range(metrics):
                    mlflow.log_metric(f"m{k}", s * 0.5 + k, step=s)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
elif mode == "batch":
    runs, metrics, steps, params = (int(a) for a in sys.argv[3:7])
    c = MlflowClient()
    exp = mlflow.set_experiment("bench").experiment_id
    t0 = time.perf_counter()
    for r in range(runs):
        rid = c.create_run(exp, run_name=f"b{r}").info.run_id
        now = int(time.time() * 1000)
        ms = [Metric(f"m{k}", s * 0.5 + k, now, s) for s in range(steps) for k in range(metrics)]
        c.log_batch(rid, params=[Param(f"p{i}", str(i)) for i in range(params)])
        for i in range(0, len(ms), 1000):  # MLflow accepts at most 1000 metrics per batch
            c.log_batch(rid, metrics=ms[i:i + 1000])
        c.set_terminated(rid)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
elif mode == "populate":
    # Not timed. fsync off while filling (a per-connection setting, not stored in the file):
    # 10,000 runs at MLflow's ~4 fsyncing commits per run would take many minutes.
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    event.listen(Engine, "connect", lambda conn, rec: conn.execute("PRAGMA synchronous=OFF"))
    c = MlflowClient()
    exp = c.get_experiment_by_name("search").experiment_id
    for row in json.load(open(sys.argv[3])):
        rid = c.create_run(exp, run_name=row["name"]).info.run_id
        ts = int(row["ts"] * 1000)
        c.log_batch(rid, metrics=[Metric(k, v, ts, 0) for k, v in row["metrics"].items()],
                    params=[Param(k, v) for k, v in row["params"].items()],
                    tags=[RunTag(k, v) for k, v in row["tags"].items()])
        c.set_terminated(rid)
    print(json.dumps({"ok": True}))
elif mode == "search":
    flt, repeat = sys.argv[3], int(sys.argv[4])
    exp = MlflowClient().get_experiment_by_name("search").experiment_id
    times, df = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        df = mlflow.search_runs(experiment_ids=[exp], filter_string=flt)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "names": sorted(df["tags.mlflow.runName"]), "columns": len(df.columns)}))
'''


def drive(py: Path | str, driver: Path, *args: str) -> tuple[dict, float]:
    """Run a driver; return its JSON answer and the wall time of the whole process."""
    # PYTHONDONTWRITEBYTECODE (set in some shells) would make loopml's editable install recompile its modules in
    # every process, while MLflow's site-packages were compiled at install: both run as a user's shell would.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOOPML_", "MLFLOW_")) and k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    out = subprocess.run([str(py), str(driver), *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{driver.name} {args[:1]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]), wall


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


def search_data(n: int) -> list[dict]:
    """The same deterministic runs for both stores: 5 params, 3 metrics, 1 tag each."""
    rnd = random.Random(4)
    rows = []
    for i in range(n):
        rows.append({
            "name": f"s{i:05d}",
            "ts": 1_700_000_000 + i,
            "params": {"model": rnd.choice(["rf", "lr", "gb", "svm"]), "n_estimators": str(rnd.choice([50, 100, 200])),
                       "max_depth": str(rnd.randint(2, 12)), "lr": repr(round(rnd.uniform(0.001, 0.3), 4)),
                       "seed": str(i)},
            "metrics": {"acc": rnd.uniform(0.5, 1.0), "loss": rnd.uniform(0.0, 2.0), "f1": rnd.uniform(0.4, 1.0)},
            "tags": {"team": rnd.choice(["a", "b", "c"])},
        })
    return rows


def new_workspace(path: Path) -> Path:
    subprocess.run([LOOPML_CLI, "init", str(path)], check=True, capture_output=True)
    return path


def populate_search(tmp: Path, drivers: dict[str, Path]) -> tuple[Path, Path]:
    """Both stores with SEARCH_RUNS identical runs, kept in benchmarks/.work/tracking between runs.

    MLflow's copy is reused while SEARCH_RUNS is the same; loopml's while its schema revision is.
    """
    from loopml.stores.metadata.revisions import head_revision

    data = tmp / "search.json"
    data.write_text(json.dumps(search_data(SEARCH_RUNS)))
    base = CACHE / f"search-{SEARCH_RUNS}"
    ws, mdir = base / f"loopml-ws-{head_revision()}", base / "mlflow"
    mdb = mdir / "mlflow.db"
    if not (ws / "done").exists():
        shutil.rmtree(ws, ignore_errors=True)
        new_workspace(ws)
        t0 = time.perf_counter()
        drive(LOOPML_PY, drivers["loopml"], "populate", str(ws), str(data))
        print(f"populated loopml with {SEARCH_RUNS} runs (service API) in {time.perf_counter() - t0:.1f} s", flush=True)
        (ws / "done").write_text("")
    if not (mdir / "done").exists():
        shutil.rmtree(mdir, ignore_errors=True)
        mdir.mkdir(parents=True)
        drive(MLFLOW_PY, drivers["mlflow"], "init", str(mdb))
        t0 = time.perf_counter()
        drive(MLFLOW_PY, drivers["mlflow"], "populate", str(mdb), str(data))
        print(f"populated MLflow with {SEARCH_RUNS} runs (log_batch) in {time.perf_counter() - t0:.1f} s", flush=True)
        (mdir / "done").write_text("")
    return ws, mdb


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--search-only", action="store_true", help="skip the ingest part, run only the search part")
    args = ap.parse_args()
    if not MLFLOW_PY.exists():
        sys.exit("MLflow venv missing: run `bash benchmarks/setup_mlflow.sh` first.")
    tmp = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    drivers = {"loopml": tmp / "loopml_driver.py", "mlflow": tmp / "mlflow_driver.py"}
    drivers["loopml"].write_text(LOOPML_DRIVER)
    drivers["mlflow"].write_text(MLFLOW_DRIVER)
    rows: list[tuple[str, str, str, str, str, str]] = []
    if not args.search_only:
        ingest(drivers, rows)
    search(tmp, drivers, rows)

    print()
    print("| measurement | loopml | MLflow | ratio | target | |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    shutil.rmtree(tmp, ignore_errors=True)


def ingest(drivers: dict[str, Path], rows: list[tuple[str, str, str, str, str, str]]) -> None:
    tmp = drivers["loopml"].parent
    shape = [str(METRICS), str(STEPS), str(PARAMS)]
    per_run = METRICS * STEPS
    ws = new_workspace(tmp / "ingest-ws")
    ldb = ws / ".loopml" / "loopml.db"
    ans, wall_l = drive(LOOPML_PY, drivers["loopml"], "percall", str(ws), str(RUNS), *shape)
    t_l = ans["seconds"]
    n_l = count(ldb, "select count(*) from tracking_metric_history")
    assert n_l == RUNS * per_run, n_l
    rate_l = n_l / t_l

    ws_full = new_workspace(tmp / "ingest-ws-full")
    ans, _ = drive(LOOPML_PY, drivers["loopml"], "percall-full", str(ws_full), str(RUNS), *shape)
    t_lf = ans["seconds"]
    assert count(ws_full / ".loopml" / "loopml.db", "select count(*) from tracking_metric_history") == RUNS * per_run
    rate_lf = RUNS * per_run / t_lf

    mdb_pc, mdb_b = tmp / "mlflow-percall.db", tmp / "mlflow-batch.db"
    for db in (mdb_pc, mdb_b):
        drive(MLFLOW_PY, drivers["mlflow"], "init", str(db))
    ans, wall_mpc = drive(MLFLOW_PY, drivers["mlflow"], "percall", str(mdb_pc), str(PERCALL_RUNS), *shape)
    t_mpc = ans["seconds"]
    n_mpc = count(mdb_pc, "select count(*) from metrics")
    assert n_mpc == PERCALL_RUNS * per_run, n_mpc
    rate_mpc = n_mpc / t_mpc
    ans, wall_mb = drive(MLFLOW_PY, drivers["mlflow"], "batch", str(mdb_b), str(RUNS), *shape)
    t_mb = ans["seconds"]
    n_mb = count(mdb_b, "select count(*) from metrics")
    assert n_mb == RUNS * per_run, n_mb
    rate_mb = n_mb / t_mb

    vals = f"{RUNS} runs, {RUNS * per_run:,} values"
    rows.append((f"ingest per-call ({vals}); MLflow `mlflow.log_metric` on {PERCALL_RUNS} runs "
                 f"({PERCALL_RUNS * per_run:,} values), compared by rate",
                 f"{t_l:.2f} s = {rate_l:,.0f}/s", f"{t_mpc:.1f} s = {rate_mpc:,.0f}/s",
                 f"{rate_l / rate_mpc:.0f}x", ">= 100x", "met" if rate_l / rate_mpc >= 100 else "NOT met"))
    rows.append((f"ingest per-call vs MLflow `MlflowClient.log_batch` ({vals} each)",
                 f"{t_l:.2f} s = {rate_l:,.0f}/s", f"{t_mb:.2f} s = {rate_mb:,.0f}/s",
                 f"{rate_l / rate_mb:.1f}x", ">= 5x", "met" if rate_l / rate_mb >= 5 else "NOT met"))
    rows.append(("same, loopml with SQLite `synchronous=FULL` (fsync per commit, MLflow's durability)",
                 f"{t_lf:.2f} s = {rate_lf:,.0f}/s", f"{t_mb:.2f} s = {rate_mb:,.0f}/s",
                 f"{rate_lf / rate_mb:.1f}x (vs per-call {rate_lf / rate_mpc:.0f}x)", "(info)", ""))
    rows.append(("ingest, whole process (start, imports, open store, log, exit)",
                 f"{wall_l:.2f} s", f"per-call {wall_mpc:.1f} s ({PERCALL_RUNS} runs); log_batch {wall_mb:.1f} s",
                 f"{wall_mb / wall_l:.1f}x vs log_batch", "(info)", ""))
    print(f"ingest done: loopml {rate_l:,.0f}/s (fsync {rate_lf:,.0f}/s), MLflow per-call {rate_mpc:,.0f}/s, "
          f"log_batch {rate_mb:,.0f}/s", flush=True)



def search(tmp: Path, drivers: dict[str, Path], rows: list[tuple[str, str, str, str, str, str]]) -> None:
    sws, sdb = populate_search(tmp, drivers)
    assert count(sws / ".loopml" / "loopml.db", "select count(*) from tracking_runs") == SEARCH_RUNS
    assert count(sdb, "select count(*) from runs") == SEARCH_RUNS
    warm_l, _ = drive(LOOPML_PY, drivers["loopml"], "search", str(sws), FILTER, str(REPEAT))
    warm_m, _ = drive(MLFLOW_PY, drivers["mlflow"], "search", str(sdb), FILTER, str(REPEAT))
    assert warm_l["names"] == warm_m["names"], "the two searches returned different runs"
    found = len(warm_l["names"])
    cold_l, cold_m, cli_l, first_l, first_m = [], [], [], [], []
    for _ in range(COLD):
        a, w = drive(LOOPML_PY, drivers["loopml"], "search", str(sws), FILTER, "1")
        cold_l.append(w)
        first_l.append(a["times"][0])
        a, w = drive(MLFLOW_PY, drivers["mlflow"], "search", str(sdb), FILTER, "1")
        cold_m.append(w)
        first_m.append(a["times"][0])
        t0 = time.perf_counter()
        out = subprocess.run([LOOPML_CLI, "runs", "ls", "--filter", FILTER, "-e", "search", "-n", "100000", "--json"],
                             cwd=sws, capture_output=True, text=True)
        cli_l.append(time.perf_counter() - t0)
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)) == found
    wl, wm = median(warm_l["times"][1:] or warm_l["times"]), median(warm_m["times"][1:] or warm_m["times"])
    label = f"search {SEARCH_RUNS:,} runs `{FILTER}` -> {found} runs as a DataFrame"
    rows.append((f"{label}, warm (median of {max(REPEAT - 1, 1)} in one process)",
                 f"{wl * 1000:.1f} ms", f"{wm * 1000:.1f} ms", f"{wm / wl:.1f}x", ">= 10x",
                 "met" if wm / wl >= 10 else "NOT met"))
    def ms(xs: list[float]) -> str:
        return " ".join(f"{x * 1000:.1f}" for x in xs)

    print(f"search, every time (ms): warm loopml {ms(warm_l['times'])}; MLflow {ms(warm_m['times'])}", flush=True)
    print(f"search, first in each fresh process (ms): loopml {ms(first_l)}; MLflow {ms(first_m)}", flush=True)
    fl, fm = median(first_l), median(first_m)
    rows.append((f"{label}, first search in a fresh process (median of {COLD})",
                 f"{fl * 1000:.0f} ms", f"{fm * 1000:.0f} ms", f"{fm / fl:.1f}x", ">= 10x",
                 "met" if fm / fl >= 10 else "NOT met"))
    cl, cm = median(cold_l), median(cold_m)
    rows.append((f"same, whole process: start + import + search + exit (median of {COLD})",
                 f"{cl:.2f} s", f"{cm:.2f} s", f"{cm / cl:.1f}x", "(info)", ""))
    rows.append(("CLI `loopml runs ls --filter ... --json` (whole process) vs MLflow Python process above "
                 "(`mlflow runs list` has no filter)",
                 f"{median(cli_l):.2f} s", f"{cm:.2f} s", f"{cm / median(cli_l):.1f}x", "(info)", ""))


if __name__ == "__main__":
    main()
