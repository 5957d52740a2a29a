"""The `loopml` command line: thin commands over the workspace and its services."""
