"""Environment capture for runs: git state, Python, packages, OS/CPU, command line (cached per process)."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from typing import Any


def _git(args: list[str], cwd: str) -> bytes | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def git_state(cwd: str) -> dict[str, Any]:
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {}
    from loopml.stores.artifacts.hashing import hash_bytes

    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd) or b""
    diff = _git(["diff", "HEAD"], cwd) or b""
    return {"commit": commit.decode().strip(), "dirty": bool(status.strip()),
            "diff_hash": hash_bytes(diff) if diff else None}


def _name_version(metadata: str) -> tuple[str, str]:
    # Only two header lines are needed: reading them directly is ~10x faster than
    # ``dist.metadata``, which parses every file (long descriptions included) as email.
    name = version = ""
    for line in metadata.partition("\n\n")[0].splitlines():
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
    return name, version


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    from importlib.metadata import distributions

    packages: dict[str, str] = {}
    for dist in distributions():
        name, version = _name_version(dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "")
        if name:
            packages[name.lower()] = version
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": dict(sorted(packages.items())),
    }


def capture_environment(cwd: str | None = None) -> dict[str, Any]:
    """What made this run: git commit/dirty/diff hash, Python, packages, OS/CPU, command line."""
    env = dict(_static())
    env["git"] = git_state(cwd or os.getcwd())
    env["command"] = [sys.executable, *sys.argv]
    return env
