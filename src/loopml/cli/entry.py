"""The `loopml` console entry: a few read-only answers before Typer is imported, then the full CLI.

`loopml data status` and an unchanged `loopml data add` on the embedded SQLite
workspace are answered by ``data_quick`` with the standard library alone (about
a tenth of the start-up of the full CLI); whenever that path cannot answer with
certainty it returns None and ``cli.main`` runs as usual.
"""

from __future__ import annotations

import sys


def run() -> None:
    argv = sys.argv[1:]
    if "data" in argv and "--debug" not in argv:
        from loopml.cli.data_quick import quick_data_command

        out = quick_data_command(argv)
        if out is not None:
            sys.stdout.write(out)
            sys.stdout.flush()
            return
    from loopml.cli.main import run as run_full

    run_full()


if __name__ == "__main__":
    run()
