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
    import gc

    from loopml.cli.main import run as run_full

    # The objects made by the imports live as long as the process: collections need not walk them
    # again (freeze), and neither does the interpreter's teardown walk what the command built (the
    # workspace is closed when the command ends; a full collection over, say, the 10,000 entries of
    # a `data add` took 0.15-0.25 s at exit).
    gc.freeze()
    try:
        run_full()
    finally:
        gc.freeze()


if __name__ == "__main__":
    run()
