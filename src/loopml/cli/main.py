"""The `loopml` entry point: global options, command groups, and the one place errors become exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from loopml.cli import workspace as workspace_commands
from loopml.cli._context import CliState

app = typer.Typer(
    name="loopml",
    help="loopml: the machine-learning lifecycle as one closed loop "
    "(data, pipelines, tracking, registry, serving, monitoring).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: importing rich for --help costs ~0.1 s of start-up
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from loopml import __version__

        typer.echo(f"loopml {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", "-V", help="Print the version and exit.",
                                 callback=_print_version, is_eager=True),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print less; no progress bars."),
    workspace: Path = typer.Option(
        None, "--workspace", "-w", help="Workspace directory (default: nearest .loopml/ above here).",
        envvar="LOOPML_WORKSPACE",
    ),
) -> None:
    ctx.obj = CliState(debug=debug, quiet=quiet, workspace=workspace)


workspace_commands.register(app)

# Each part adds its commands in its own module; a module without `register` is skipped.
for _name in ("data", "tracking", "pipelines", "server"):
    _module = __import__(f"loopml.cli.{_name}", fromlist=["register"])
    _module.register(app)


def run() -> None:
    """Console-script entry: map LoopmlError to one clear line and an exit code."""
    from loopml.errors import LoopmlError

    debug = "--debug" in sys.argv[1:] or os.environ.get("LOOPML_DEBUG") == "1"
    try:
        app()
    except LoopmlError as exc:
        if debug:
            raise
        from loopml.cli._output import error

        error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)


if __name__ == "__main__":
    run()
