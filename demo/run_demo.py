"""The loopml demo: runs the loop on the embedded defaults (SQLite + local objects), printing each arrow.

Each part adds its own chapter as ``demo/part_<name>.py`` with ``run(demo: Demo)``;
chapters run in the order of ``CHAPTERS`` and a missing one is skipped.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHAPTERS = ["part_foundation", "part_data", "part_tracking", "part_pipelines"]


@dataclass
class Demo:
    """What chapters share: the demo directory, a CLI runner and notes between chapters."""

    dir: Path
    notes: dict[str, Any] = field(default_factory=dict)

    def banner(self, text: str) -> None:
        print(f"\n=== {text} ===", flush=True)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `loopml ARGS` in the demo directory, echoing the command and its output."""
        print(f"$ loopml {' '.join(args)}", flush=True)
        proc = subprocess.run([sys.executable, "-m", "loopml", *args], cwd=self.dir, text=True, capture_output=True)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        sys.stdout.flush()
        if check and proc.returncode != 0:
            raise SystemExit(f"demo step failed: loopml {' '.join(args)} (exit {proc.returncode})")
        return proc


def main(demo_dir: Path | None = None) -> None:
    demo_dir = demo_dir or HERE.parent / ".demo"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True)
    demo = Demo(demo_dir)
    sys.path.insert(0, str(HERE))
    for name in CHAPTERS:
        try:
            chapter = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        chapter.run(demo)
    demo.banner("done")
    print(f"The demo workspace is in {demo_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
