"""Audit events: every action on a loopml object is recorded as one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One recorded action: who did what to which object, and when (unix seconds)."""

    id: str
    ts: float
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any] = field(default_factory=dict)
