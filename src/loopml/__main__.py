"""`python -m loopml` runs the CLI."""

from loopml.cli.entry import run

run()
