"""Helpers for pipeline tests: user pipeline modules written to disk so workers can import them."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path


def write_module(directory: Path, source: str, name: str | None = None) -> str:
    """Write ``source`` as a fresh module in ``directory`` (put on sys.path); returns its name."""
    name = name or f"userflow_{uuid.uuid4().hex[:10]}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    return name
