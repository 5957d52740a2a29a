"""How much parallel work this process may start: its CPUs, and whether it may fork (stdlib only, cheap)."""

from __future__ import annotations

import os
import sys


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def fork_is_safe() -> bool:
    """Whether forking this process is safe: the platform forks and no other thread is running.

    A thread holding a lock at the fork would leave it held forever in the child. A process that
    never imported ``threading`` runs no other Python thread, so the check imports nothing.
    """
    threading = sys.modules.get("threading")
    return hasattr(os, "fork") and (threading is None or threading.active_count() == 1)
