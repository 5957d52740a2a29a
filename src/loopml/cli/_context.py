"""State the CLI passes from the global options to each command (no globals)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from loopml.progress import Progress
    from loopml.workspace import Workspace


@dataclass
class CliState:
    debug: bool = False
    quiet: bool = False
    workspace: Path | None = None


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def open_workspace(ctx: typer.Context) -> Workspace:
    """The workspace named by --workspace, or the nearest one above the current directory.

    Closed when the command ends, so its databases are checkpointed then and not left to the
    interpreter's teardown.
    """
    from loopml.workspace import Workspace

    ws = Workspace.open(state(ctx).workspace)
    ctx.call_on_close(ws.close)
    return ws


def progress(ctx: typer.Context) -> Progress:
    from loopml.progress import auto_progress

    return auto_progress(quiet=state(ctx).quiet)
