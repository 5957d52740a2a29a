"""Benchmark: loopml data vs DVC 3.x on the same data, same machine, same run; prints ratios.

Run:  bash benchmarks/setup_dvc.sh && .venv/bin/python benchmarks/bench_data.py [--scale 1.0]
Both tools are timed as CLI processes (interpreter start included). Data is random bytes under
benchmarks/.work/ (removed at the end). A moto S3 server is started on 127.0.0.1 for push/pull.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
LOOPML = [str(ROOT / ".venv" / "bin" / "loopml"), "--quiet"]
DVC = [str(HERE / ".venvs" / "dvc" / "bin" / "dvc")]
REPEAT = 5
# PYTHONDONTWRITEBYTECODE (set in some shells) would make loopml's editable install recompile its modules on every
# command, while DVC's site-packages were compiled at install: both tools run as a user's shell would run them.
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1", "DVC_NO_ANALYTICS": "1", "LOOPML_ACTOR": "bench"}


def warm(path: Path) -> None:
    """Read every file under ``path`` (not timed), so each tool starts with its input in the page cache.

    This VM pages out page cache not touched for about a minute (DAMON "pageout"), so without
    this the first tool to read freshly written data would read part of it from disk and the
    second would find it cached by the first.
    """
    files = [path] if path.is_file() else [Path(d) / f for d, _, fs in os.walk(path) for f in fs]
    for f in files:
        with f.open("rb") as fh:
            while fh.read(16 * 1024 * 1024):
                pass


def run(cmd: list[str], cwd: Path, *, inputs: Path | None = None) -> tuple[float, str]:
    # Flush dirty pages first (not timed), so no tool pays for the previous step's writeback
    # (the data just generated, or the other tool's copies).
    if inputs is not None:
        warm(inputs)
    os.sync()
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return dt, p.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, 16 * 1024 * 1024)
            fh.write(os.urandom(n))
            left -= n


def wipe_objects(ws: Path) -> None:
    for child in (ws / ".loopml" / "objects").iterdir():
        if len(child.name) == 2 or child.name == "packs":
            shutil.rmtree(child)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 1 GiB file, 10,000 files / 500 MB")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--skip-remote", action="store_true", help="leave out push and pull")
    args = ap.parse_args()
    big_size = int(1024**3 * args.scale)
    n_files = max(10, int(10_000 * args.scale))
    small_size = 50 * 1000
    shutil.rmtree(WORK, ignore_errors=True)
    dvc_repo, ws = WORK / "dvcrepo", WORK / "loopws"
    dvc_repo.mkdir(parents=True)
    ws.mkdir()
    run([*DVC, "init", "--no-scm", "-q"], dvc_repo)
    run([*LOOPML, "init"], ws)
    versions = {"dvc": run([*DVC, "--version"], dvc_repo)[1].strip(),
                "loopml": run([str(ROOT / ".venv/bin/python"), "-c", "import loopml;print(loopml.__version__)"], ws)[1].strip()}
    results: list[tuple[str, float, float, str]] = []

    def record(label: str, t_loop: float, t_dvc: float, note: str = "") -> None:
        results.append((label, t_loop, t_dvc, note))
        print(f"{label:45} loopml {t_loop:7.2f}s  dvc {t_dvc:7.2f}s  ratio {t_dvc / t_loop:6.1f}x {note}", flush=True)

    # 1. one big file (the same file, inside the DVC repo; loopml adds it by path)
    big = dvc_repo / "big.bin"
    write_random(big, big_size)
    t_l, _ = run([*LOOPML, "data", "add", str(big), "--name", "big"], ws, inputs=big)
    t_d, _ = run([*DVC, "add", "-q", "big.bin"], dvc_repo, inputs=big)
    record(f"add one {big_size / 1024**3:.2f} GiB file", t_l, t_d)

    # 2. many files
    # Three rounds, each on newly written data (a second add of the same bytes would be another workload);
    # the first two data sets are then dropped from both tools (untimed), "many" stays for what follows.
    total_mb = n_files * small_size / 1e6
    adds_l, adds_d = [], []
    for round_name in ("many_r1", "many_r2", "many"):
        many = dvc_repo / round_name
        for i in range(n_files):
            write_random(many / f"d{i % 100:02}" / f"f{i:05}.bin", small_size)
        adds_l.append(run([*LOOPML, "data", "add", str(many), "--name", round_name], ws, inputs=many)[0])
        adds_d.append(run([*DVC, "add", "-q", round_name], dvc_repo, inputs=many)[0])
        if round_name != "many":
            run([*DVC, "remove", "-q", f"{round_name}.dvc"], dvc_repo)
            shutil.rmtree(many)
    record(f"add {n_files} files / {total_mb:.0f} MB", statistics.median(adds_l), statistics.median(adds_d),
           "(median of 3 rounds, new data each; loopml " + " / ".join(f"{t:.2f}" for t in adds_l)
           + " s, dvc " + " / ".join(f"{t:.2f}" for t in adds_d) + " s)")

    # 3. nothing changed: status and re-add (sub-second, so the median of REPEAT runs, alternating tools)
    def median_pair(cmd_l: list[str], cmd_d: list[str]) -> tuple[float, float, str]:
        tl, td, out_l = [], [], ""
        for _ in range(REPEAT):
            t, out_l = run(cmd_l, ws)
            tl.append(t)
            td.append(run(cmd_d, dvc_repo)[0])
        return statistics.median(tl), statistics.median(td), out_l

    t_l, t_d, out = median_pair([*LOOPML, "data", "status", str(many), "--name", "many", "--json"],
                                [*DVC, "status", "-q"])
    assert json.loads(out)["clean"]
    record("status, nothing changed", t_l, t_d, f"(median of {REPEAT})")
    t_l, t_d, out = median_pair([*LOOPML, "data", "add", str(many), "--name", "many", "--json"],
                                [*DVC, "add", "-q", "many"])
    assert json.loads(out)["unchanged"]
    record("re-add, nothing changed", t_l, t_d,
           f"(median of {REPEAT}; loopml hashed {json.loads(out)['hashed_files']} files)")

    # 4. one file changed
    write_random(many / "d07" / "f00007.bin", small_size)
    t_l, out = run([*LOOPML, "data", "add", str(many), "--name", "many", "--json"], ws, inputs=many)
    hashed = json.loads(out)["hashed_files"]
    t_d, _ = run([*DVC, "add", "-q", "many"], dvc_repo, inputs=many)
    record("re-add, one file changed", t_l, t_d, f"(loopml hashed {hashed} file(s))")

    # 5. push / pull of the many-files dataset to moto S3 on loopback
    if not args.skip_remote:
        push_pull(ws, dvc_repo, n_files, record)
    print("\nversions:", versions)
    print(json.dumps({"versions": versions, "results": results}))
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)


def push_pull(ws: Path, dvc_repo: Path, n_files: int, record: Callable[[str, float, float, str], None]) -> None:
    port = free_port()
    moto = subprocess.Popen([str(ROOT / ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        import boto3

        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
        s3.create_bucket(Bucket="loopml-bench")
        s3.create_bucket(Bucket="dvc-bench")
        endpoint = f"http://127.0.0.1:{port}"
        run([*LOOPML, "data", "remote", "add", "s3", "s3://loopml-bench/store", "--endpoint-url", endpoint], ws)
        run([*DVC, "remote", "add", "-d", "s3", "s3://dvc-bench/store"], dvc_repo)
        run([*DVC, "remote", "modify", "s3", "endpointurl", endpoint], dvc_repo)
        t_l, _ = run([*LOOPML, "data", "push", "many"], ws)
        t_d, _ = run([*DVC, "push", "-q", "many.dvc"], dvc_repo)
        record(f"push {n_files} files to S3 (moto)", t_l, t_d, "")
        wipe_objects(ws)
        shutil.rmtree(dvc_repo / ".dvc" / "cache")
        t_l, _ = run([*LOOPML, "data", "pull", "many"], ws)
        t_d, _ = run([*DVC, "fetch", "-q", "many.dvc"], dvc_repo)
        record(f"pull {n_files} files into empty cache", t_l, t_d, "(dvc fetch)")
        shutil.rmtree(dvc_repo / ".dvc" / "cache")
        t_d2, _ = run([*DVC, "pull", "-q", "-f", "many.dvc"], dvc_repo)
        record(f"pull {n_files} files into empty cache", t_l, t_d2, "(dvc pull)")
    finally:
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
