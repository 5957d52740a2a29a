"""Crash safety and concurrency of `loopml data add/push/pull` with real processes (SIGKILL, two adders)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopml.workspace import Workspace

LOOPML = [sys.executable, "-m", "loopml"]


def _make_data(root: Path, files: int, size: int, big_mb: int = 0) -> Path:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"f{i:05}.bin").write_bytes(os.urandom(size))
    if big_mb:
        with (root / "big.bin").open("wb") as fh:
            for _ in range(big_mb):
                fh.write(os.urandom(1024 * 1024))
    return root


def _assert_consistent(ws_root: Path, name: str, expected_files: int) -> None:
    with Workspace.open(ws_root) as ws:
        assert ws.doctor(verify=True).ok
        versions = ws.data.list_versions(name)
        assert len(versions) <= 1
        for v in versions:  # complete or absent
            files = ws.data.files(v)
            assert len(files) == v.num_files == expected_files
            assert not ws.objects.missing([f.digest for f in files])


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
def test_kill_9_during_add_leaves_a_complete_version_or_none(tmp_path: Path, delay: float) -> None:
    Workspace.init(tmp_path / "ws").close()
    data = _make_data(tmp_path / "data", 2500, 8 * 1024, big_mb=150)  # enough small files for worker processes
    proc = subprocess.Popen([*LOOPML, "--quiet", "data", "add", str(data), "--name", "big"],
                            cwd=tmp_path / "ws", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _assert_consistent(tmp_path / "ws", "big", 2501)
    # The worker processes died with it (none is left writing).
    assert subprocess.run(["pgrep", "-f", f"data add {data}"], capture_output=True).stdout == b""
    # The next add after the crash completes normally.
    done = subprocess.run([*LOOPML, "data", "add", str(data), "--name", "big"], cwd=tmp_path / "ws",
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _assert_consistent(tmp_path / "ws", "big", 2501)


def test_kill_9_during_push_and_pull(tmp_path: Path) -> None:
    ws_root = tmp_path / "ws"
    Workspace.init(ws_root).close()
    data = _make_data(tmp_path / "data", 800, 16 * 1024, big_mb=100)
    remote = tmp_path / "remote"
    assert subprocess.run([*LOOPML, "data", "add", str(data), "--name", "d"], cwd=ws_root).returncode == 0
    assert subprocess.run([*LOOPML, "data", "remote", "add", "bk", str(remote)], cwd=ws_root).returncode == 0
    proc = subprocess.Popen([*LOOPML, "--quiet", "data", "push"], cwd=ws_root)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert subprocess.run([*LOOPML, "data", "push"], cwd=ws_root).returncode == 0
    objects = ws_root / ".loopml" / "objects"
    for child in objects.iterdir():
        if len(child.name) == 2 or child.name == "packs":
            subprocess.run(["rm", "-rf", str(child)], check=True)
    proc = subprocess.Popen([*LOOPML, "--quiet", "data", "pull"], cwd=ws_root)
    time.sleep(0.6)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Workspace.open(ws_root) as ws:
        # Whatever landed is whole: every present object hashes to its name.
        assert not [o for o in ws.objects.iter_objects() if ws.objects.verify(o.digest).status != "ok"]
    assert subprocess.run([*LOOPML, "data", "pull"], cwd=ws_root).returncode == 0
    _assert_consistent(ws_root, "d", 801)


def test_two_processes_adding_the_same_data_both_succeed_and_store_once(tmp_path: Path) -> None:
    ws_root = tmp_path / "ws"
    Workspace.init(ws_root).close()
    data = _make_data(tmp_path / "data", 400, 4096, big_mb=20)
    procs = [subprocess.Popen([*LOOPML, "data", "add", str(data), "--name", "same"], cwd=ws_root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    with Workspace.open(ws_root) as ws:
        versions = ws.data.list_versions("same")
        assert len(versions) == 1 and versions[0].num_files == 401
        assert sum(1 for _ in ws.objects.iter_objects()) == 401
        assert ws.doctor(verify=True).ok
        # Small objects are packed: whichever process indexed one first keeps it, the other's copy is cut out.
        packed = ws.objects.packs.totals() if ws.objects.packs is not None else (0, 0)
        pack_files = (ws_root / ".loopml" / "objects" / "packs").glob("*.pack")
        assert packed[0] == 400 and sum(p.stat().st_size for p in pack_files) == packed[1] == 400 * 4096


def test_ctrl_c_during_add_stops_the_worker_processes_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws").close()
    data = _make_data(tmp_path / "data", 5000, 16 * 1024)  # enough small files for worker processes
    proc = subprocess.Popen([*LOOPML, "--quiet", "data", "add", str(data), "--name", "d"], cwd=tmp_path / "ws",
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(0.6)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground process group
    proc.communicate(timeout=60)
    assert subprocess.run(["pgrep", "-f", f"data add {data}"], capture_output=True).stdout == b""
    _assert_consistent(tmp_path / "ws", "d", 5000)
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.objects.backend.count_temp_files() == 0  # type: ignore[attr-defined]
