"""An unreadable file in `loopml data add`: one clear line naming it, exit 2, no version made.

Root reads mode-000 files, so as root the CLI runs without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH
(``setpriv --bounding-set``): the permission check is then the kernel's, as for any user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _without_root_override() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root needs util-linux's setpriv to drop CAP_DAC_OVERRIDE")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def test_unreadable_file_is_named_and_nothing_is_stored(tmp_path: Path) -> None:
    def loopml(*args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*(prefix or []), sys.executable, "-m", "loopml", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    assert loopml("init").returncode == 0
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("readable\n")
    secret = tmp_path / "d" / "b.txt"
    secret.write_text("secret\n")
    secret.chmod(0)
    try:
        r = loopml("data", "add", "d", "--name", "docs", prefix=_without_root_override())
    finally:
        secret.chmod(0o644)
    assert r.returncode == 2, r.stdout + r.stderr
    assert str(secret) in r.stderr and "Permission denied" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(loopml("data", "ls", "--json").stdout) == []
    # files read before the failure may be stored, complete and unreferenced (gc collects them)
    assert loopml("doctor", "--verify").returncode == 0
    gc = loopml("data", "gc", "--grace", "0")
    assert gc.returncode == 0, gc.stderr
    objects = [p for p in (tmp_path / ".loopml" / "objects").rglob("*")
               if p.is_file() and not p.name.startswith("index.sqlite")]  # the pack index stays, empty
    assert objects == []
