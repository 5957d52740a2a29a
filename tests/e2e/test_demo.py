"""`make demo` runs the whole loop on the embedded defaults; this keeps it from breaking silently."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_every_chapter_and_leaves_a_healthy_workspace(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    demo_dir = tmp_path / "demo"
    r = subprocess.run([sys.executable, str(REPO / "demo" / "run_demo.py"), str(demo_dir)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "=== done ===" in r.stdout
    assert "cached 5 of 5 steps" in r.stdout  # the second pipeline run came from the cache
    conn = sqlite3.connect(demo_dir / ".loopml" / "loopml.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    doctor = subprocess.run([sys.executable, "-m", "loopml", "doctor", "--verify"], cwd=demo_dir, env=env,
                            capture_output=True, text=True, timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
