"""Progress reporting for long work: a Rich bar on a terminal, silence otherwise.

Services take a ``Progress`` and call ``task(...)``; only the edges (CLI, SDK) choose which.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

Advance = Callable[[int], None]


class Progress(Protocol):
    def task(self, description: str, total: int | None, *, unit: str = "items") -> AbstractTask: ...


class AbstractTask(Protocol):
    def __enter__(self) -> Advance: ...
    def __exit__(self, *exc: object) -> None: ...


class NullProgress:
    """Reports nothing (not a terminal, or asked to be quiet)."""

    @contextmanager
    def task(self, description: str, total: int | None, *, unit: str = "items") -> Iterator[Advance]:
        yield lambda n=1: None


class RichProgress:
    """A Rich progress bar on stderr; bytes are shown as sizes and speeds."""

    @contextmanager
    def task(self, description: str, total: int | None, *, unit: str = "items") -> Iterator[Advance]:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress as RichBar,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.console import Console

        columns: list[object] = [TextColumn("{task.description}"), BarColumn()]
        if unit == "bytes":
            columns += [DownloadColumn(), TransferSpeedColumn()]
        else:
            columns += [MofNCompleteColumn()]
        columns.append(TimeRemainingColumn())
        with RichBar(*columns, console=Console(stderr=True), transient=True) as bar:  # type: ignore[arg-type]
            task_id = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task_id, n)


def auto_progress(quiet: bool = False) -> Progress:
    """Rich on an interactive terminal, silent otherwise."""
    if quiet or not sys.stderr.isatty():
        return NullProgress()
    return RichProgress()
