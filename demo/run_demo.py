"""The loopml demo: runs the loop on the embedded defaults (SQLite + local objects), printing each arrow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_DIR = HERE.parent / ".demo"
LOOPML = [sys.executable, "-m", "loopml"]


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"$ loopml {' '.join(args)}", flush=True)
    proc = subprocess.run([*LOOPML, *args], cwd=DEMO_DIR, text=True, capture_output=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo step failed: loopml {' '.join(args)} (exit {proc.returncode})")
    return proc


def main() -> None:
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    DEMO_DIR.mkdir()
    banner("workspace: SQLite metadata + local content-addressed objects")
    cli("init")
    cli("status")

    banner("artifacts: store bytes by content, de-duplicated, then verify every object")
    from loopml import Workspace

    with Workspace.open(DEMO_DIR) as ws:
        a = ws.objects.put_bytes(b"the same bytes")
        b = ws.objects.put_bytes(b"the same bytes")
        print(f"stored twice, kept once: {a.digest[:16]}… == {b.digest[:16]}… ({a == b})")
    cli("doctor", "--verify")

    banner("done")
    print(f"The demo workspace is in {DEMO_DIR}")


if __name__ == "__main__":
    main()
