"""The Python SDK: module-level conveniences over a Workspace (loopml.data, loopml.start_run …)."""
