"""Stable, time-ordered object ids."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """A 32-hex-character id: 48 bits of milliseconds then 80 random bits.

    Ids sort by creation time (handy in listings and B-tree indexes) and never collide in practice.
    """
    millis = int(time.time() * 1000)
    return f"{millis:012x}{os.urandom(10).hex()}"


def short_id(object_id: str, length: int = 8) -> str:
    """The tail of an id, which is the random part, for display."""
    return object_id[-length:]
