"""Progress reporting for long work: a Rich bar on a terminal, silence otherwise.

Services take a ``Progress`` and call ``task(...)``; only the edges (CLI, SDK) choose which.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

Advance = Callable[[int], None]


class Progress(Protocol):
    """Gives a context manager per long task; inside, call ``advance(n)`` as work completes."""

    def task(
        self, description: str, total: int | None, *, unit: str = "items"
    ) -> AbstractContextManager[Advance]: ...


def _ignore(n: int = 1) -> None:
    return None


class NullProgress:
    """Reports nothing (not a terminal, or asked to be quiet)."""

    @contextmanager
    def task(self, description: str, total: int | None, *, unit: str = "items") -> Iterator[Advance]:
        yield _ignore


class RichProgress:
    """A Rich progress bar on stderr; bytes are shown as sizes and speeds."""

    @contextmanager
    def task(self, description: str, total: int | None, *, unit: str = "items") -> Iterator[Advance]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import (
            Progress as RichBar,
        )

        columns: list[object] = [TextColumn("{task.description}"), BarColumn()]
        if unit == "bytes":
            columns += [DownloadColumn(), TransferSpeedColumn()]
        else:
            columns += [MofNCompleteColumn()]
        columns.append(TimeRemainingColumn())
        with RichBar(*columns, console=Console(stderr=True), transient=True) as bar:  # type: ignore[arg-type]
            task_id = bar.add_task(description, total=total)
            def advance(n: int = 1) -> None:
                bar.advance(task_id, n)

            yield advance


def auto_progress(quiet: bool = False) -> Progress:
    """Rich on an interactive terminal, silent otherwise."""
    if quiet or not sys.stderr.isatty():
        return NullProgress()
    return RichProgress()
