"""Printing for the CLI: Rich tables on a terminal, plain text or JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

_UNITS = ("B", "KB", "MB", "GB", "TB")


def human_bytes(n: float) -> str:
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def echo(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n")


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> None:
    """A Rich table; piped output gets the same table without colour."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title, show_lines=False, header_style="bold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(soft_wrap=True).print(table)


def print_kv(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        echo(f"{key.ljust(width)}  {value}")


def error(message: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\x1b[31mError:\x1b[0m {message}\n")
    else:
        sys.stderr.write(f"Error: {message}\n")
