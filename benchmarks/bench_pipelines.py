"""Pipelines benchmarks: cached and uncached step overhead, Dask parallelism, a tiny flow vs Metaflow and ZenML.

Run: .venv/bin/python benchmarks/bench_pipelines.py   (after benchmarks/setup_metaflow.sh and setup_zenml.sh;
`dask` or `peers` as argument runs only those rows)
Prints a Markdown report; numbers go into BENCHMARKS.md (pipelines section).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOOPML_PY = REPO / ".venv" / "bin" / "python"
METAFLOW_PY = HERE / ".venvs" / "metaflow" / "bin" / "python"
ZENML_PY = HERE / ".venvs" / "zenml" / "bin" / "python"
_TINY_LOOPML_TIMES: dict[str, float] = {}  # the loopml tiny-flow medians, shared by the peer rows


def chain_module(n: int) -> str:
    lines = ["import loopml", "", "@loopml.step", "def inc(x: int) -> int:", "    return x + 1", "",
             "@loopml.pipeline", "def chain(start: int = 0):", "    v = inc(start)"]
    lines += ["    v = inc(v)"] * (n - 1)
    return "\n".join(lines) + "\n"


SLEEPY = """
import time
import loopml

@loopml.step(cpus=1)
def nap(i: int, secs: float = 2.0) -> int:
    time.sleep(secs)
    return i

@loopml.pipeline
def naps(n: int = 8, secs: float = 2.0):
    for i in range(n):
        nap(i, secs)
"""

TINY_LOOPML = """
import loopml

@loopml.step
def start() -> list:
    return [1, 2, 3]

@loopml.step
def middle(xs: list) -> int:
    return sum(xs)

@loopml.step
def end(total: int) -> int:
    return total * 2

@loopml.pipeline
def tiny():
    end(middle(start()))
"""

TINY_METAFLOW = """
from metaflow import FlowSpec, step

class TinyFlow(FlowSpec):
    @step
    def start(self):
        self.xs = [1, 2, 3]
        self.next(self.middle)

    @step
    def middle(self):
        self.total = sum(self.xs)
        self.next(self.end)

    @step
    def end(self):
        self.result = self.total * 2

if __name__ == "__main__":
    TinyFlow()
"""


TINY_ZENML = """
import os

from zenml import pipeline, step

@step
def start() -> list:
    return [1, 2, 3]

@step
def middle(xs: list) -> int:
    return sum(xs)

@step
def end(total: int) -> int:
    return total * 2

@pipeline(enable_cache=os.environ.get("TINY_CACHE") == "1")
def tiny():
    end(middle(start()))

if __name__ == "__main__":
    tiny()
"""


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def bench_overhead(work: Path) -> list[str]:
    sys.path.insert(0, str(work))
    (work / "chain100.py").write_text(chain_module(100))
    from loopml import Workspace

    ws = Workspace.init(work / "ws100")
    ws.pipelines.plan("chain100:chain")  # import the module once, outside the timings
    t = time.perf_counter()
    first = ws.pipelines.run("chain100:chain")
    uncached = time.perf_counter() - t
    step_time = sum(s.duration or 0 for s in first.steps)
    t = time.perf_counter()
    second = ws.pipelines.run("chain100:chain")
    cached = time.perf_counter() - t
    assert all(s.status == "CACHED" for s in second.steps)
    t = time.perf_counter()
    ws.pipelines.run("chain100:chain", no_cache=True)
    nocache = time.perf_counter() - t
    ws.close()
    env = {**os.environ, "PYTHONPATH": str(work)}
    cli_cached = timed([str(LOOPML_PY), "-m", "loopml", "-q", "pipeline", "run", "chain100:chain"],
                       work / "ws100", env)
    return [
        "| 100-step chain, fully cached re-run (in-process API) | "
        f"{cached:.3f} s total ({cached * 10:.1f} ms/step) | target < 1 s | {'met' if cached < 1 else 'MISSED'} |",
        f"| same, as a CLI command (interpreter start + imports included) | {cli_cached:.3f} s | | |",
        f"| 100 trivial steps, uncached, first run (in-process) | {uncached:.3f} s ({uncached * 10:.1f} ms/step; "
        f"step bodies {step_time * 1000:.0f} ms in all) | target < 20 ms/step | "
        f"{'met' if uncached * 10 < 20 else 'MISSED'} |",
        f"| 100 trivial steps, --no-cache re-run (in-process) | {nocache:.3f} s ({nocache * 10:.1f} ms/step) | "
        f"target < 20 ms/step | {'met' if nocache * 10 < 20 else 'MISSED'} |",
    ]


def bench_dask(work: Path) -> list[str]:
    (work / "sleepy.py").write_text(SLEEPY)
    env = {**os.environ, "PYTHONPATH": str(work)}
    wsdir = work / "wsdask"
    wsdir.mkdir()
    subprocess.run([str(LOOPML_PY), "-m", "loopml", "init"], cwd=wsdir, check=True, capture_output=True)
    cmd = [str(LOOPML_PY), "-m", "loopml", "-q", "pipeline", "run", "sleepy:naps", "--no-cache",
           "--executor", "dask", "--workers", "2"]
    with_start = timed(cmd, wsdir, env)
    # against an already running cluster (the usual case on a real cluster)
    from distributed import LocalCluster

    cluster = LocalCluster(host="127.0.0.1", dashboard_address="127.0.0.1:0", processes=True, n_workers=2,
                           threads_per_worker=1, resources={"cpus": 1}, silence_logs=40)
    try:
        warm = timed([*cmd[:-2], "--scheduler", cluster.scheduler_address], wsdir, env)
    finally:
        cluster.close()
    # in-process API: no interpreter start or CLI imports; LocalCluster start and shutdown included
    sys.path.insert(0, str(work))
    from loopml import Workspace

    with Workspace.open(wsdir) as ws:
        t = time.perf_counter()
        ws.pipelines.run("sleepy:naps", executor="dask", workers=2, no_cache=True)
        api = time.perf_counter() - t
    ideal = 8 / 2 * 2.0
    return [
        f"| 8 independent 2-s steps, Python API `run(executor='dask')` (starts and stops a 2-worker "
        f"LocalCluster) | {api:.2f} s | ideal {ideal:.0f} s + < 2 s | "
        f"{'met' if api < ideal + 2 else 'MISSED'} (overhead {api - ideal:.2f} s) |",
        f"| 8 independent 2-s steps, `--executor dask` (starts a 2-worker LocalCluster) | {with_start:.2f} s | "
        f"ideal {ideal:.0f} s + < 2 s | {'met' if with_start < ideal + 2 else 'MISSED'} (overhead "
        f"{with_start - ideal:.2f} s, CLI start and cluster start included) |",
        f"| same on an already running 2-worker cluster (`--scheduler tcp://…`) | {warm:.2f} s | "
        f"ideal {ideal:.0f} s + < 2 s | {'met' if warm < ideal + 2 else 'MISSED'} (overhead {warm - ideal:.2f} s) |",
    ]


def bench_vs_metaflow(work: Path, repeats: int = 3) -> list[str]:
    if not METAFLOW_PY.exists():
        return ["| tiny 3-step flow vs Metaflow | not run: run benchmarks/setup_metaflow.sh first | | |"]
    (work / "tiny_loopml.py").write_text(TINY_LOOPML)
    mfdir = work / "mf"
    mfdir.mkdir()
    (mfdir / "tinyflow.py").write_text(TINY_METAFLOW)
    wsdir = work / "wstiny"
    wsdir.mkdir()
    subprocess.run([str(LOOPML_PY), "-m", "loopml", "init"], cwd=wsdir, check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(work), "USERNAME": "bench", "METAFLOW_USER": "bench"}
    loop_uncached, loop_cached, mf = [], [], []
    for _ in range(repeats):
        loop_uncached.append(timed([str(LOOPML_PY), "-m", "loopml", "-q", "pipeline", "run", "tiny_loopml:tiny",
                                    "--no-cache"], wsdir, env))
        loop_cached.append(timed([str(LOOPML_PY), "-m", "loopml", "-q", "pipeline", "run", "tiny_loopml:tiny"],
                                 wsdir, env))
        mf.append(timed([str(METAFLOW_PY), "tinyflow.py", "--quiet", "run"], mfdir, env))
    lu, lc, m = (statistics.median(x) for x in (loop_uncached, loop_cached, mf))
    _TINY_LOOPML_TIMES.update(uncached=lu, cached=lc)
    version = subprocess.run([str(METAFLOW_PY), "-c", "import metaflow; print(metaflow.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    return [
        f"| tiny 3-step flow, loopml CLI, uncached (median of {repeats}) | {lu:.2f} s | Metaflow {version}: "
        f"{m:.2f} s | Metaflow / loopml = {m / lu:.1f}x |",
        f"| tiny 3-step flow, loopml CLI, cached re-run (median of {repeats}) | {lc:.2f} s | Metaflow has no "
        f"cross-run cache: {m:.2f} s | {m / lc:.1f}x |",
    ]


def bench_vs_zenml(work: Path, repeats: int = 3) -> list[str]:
    if not ZENML_PY.exists():
        return ["| tiny 3-step flow vs ZenML | not run: run benchmarks/setup_zenml.sh first | | |"]
    zdir = work / "zen"
    zdir.mkdir()
    (zdir / "tiny_zenml.py").write_text(TINY_ZENML)
    # Its own config and local store in the temp dir, offline, analytics off.
    env = {**os.environ, "ZENML_ANALYTICS_OPT_IN": "false", "ZENML_CONFIG_PATH": str(zdir / "cfg"),
           "ZENML_LOGGING_VERBOSITY": "WARN", "ZENML_ENABLE_RICH_TRACEBACK": "false", "AUTO_OPEN_DASHBOARD": "false"}
    timed([str(ZENML_PY.parent / "zenml"), "init"], zdir, env)  # repository + default local stack, untimed
    timed([str(ZENML_PY), "tiny_zenml.py"], zdir, env)  # the first run after init sets up its store: untimed
    uncached, cached = [], []
    for _ in range(repeats):
        uncached.append(timed([str(ZENML_PY), "tiny_zenml.py"], zdir, env))
        cached.append(timed([str(ZENML_PY), "tiny_zenml.py"], zdir, {**env, "TINY_CACHE": "1"}))
    zu, zc = statistics.median(uncached), statistics.median(cached)
    version = subprocess.run([str(ZENML_PY), "-c", "import zenml; print(zenml.__version__)"], env=env,
                             capture_output=True, text=True).stdout.strip()
    loop_u, loop_c = _TINY_LOOPML_TIMES.get("uncached"), _TINY_LOOPML_TIMES.get("cached")
    ratio_u = f"ZenML / loopml = {zu / loop_u:.1f}x" if loop_u else "loopml row not run"
    ratio_c = f"{zc / loop_c:.1f}x" if loop_c else "loopml row not run"
    return [
        f"| tiny 3-step flow, uncached (median of {repeats}) | loopml {loop_u or float('nan'):.2f} s (row above) | "
        f"ZenML {version} `python tiny_zenml.py` (enable_cache=False): {zu:.2f} s | **{ratio_u}** |",
        f"| tiny 3-step flow, cached re-run (median of {repeats}) | loopml {loop_c or float('nan'):.2f} s | "
        f"ZenML {version} cached (enable_cache=True): {zc:.2f} s | {ratio_c} |",
    ]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="loopml-bench-pipelines-"))
    try:
        rows = ["| measurement | loopml | reference | result |", "|---|---|---|---|"]
        rows += bench_overhead(work)
        rows += bench_vs_metaflow(work)
        rows += bench_vs_zenml(work)
        rows += bench_dask(work)
        print("\n".join(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["dask"]:  # only the Dask rows
        w = Path(tempfile.mkdtemp(prefix="loopml-bench-pipelines-"))
        print("\n".join(bench_dask(w)))
        shutil.rmtree(w, ignore_errors=True)
    elif sys.argv[1:] == ["peers"]:  # only the tiny-flow rows (Metaflow, ZenML)
        w = Path(tempfile.mkdtemp(prefix="loopml-bench-pipelines-"))
        print("\n".join(bench_vs_metaflow(w) + bench_vs_zenml(w)))
        shutil.rmtree(w, ignore_errors=True)
    else:
        main()
