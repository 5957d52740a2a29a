"""`loopml data status` and an unchanged `loopml data add`, answered without importing Typer or SQLAlchemy.

Only the plain forms are recognised (global ``--quiet``/``--workspace``, then
``data status|add PATH [--name N] [--json]``). The output is byte for byte what
``cli/data.py`` prints for the same answer; anything else returns None and the
full CLI runs.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not `import typing`: start-up is what this module saves
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def _parse(argv: Sequence[str]) -> tuple[str | None, str, str, str | None, bool] | None:
    """(workspace, command, path, name, json) for the recognised forms, else None."""
    workspace = os.environ.get("LOOPML_WORKSPACE") or None
    i = 0
    while i < len(argv) and argv[i] != "data":
        a = argv[i]
        if a in ("--quiet", "-q"):
            i += 1
        elif a in ("--workspace", "-w") and i + 1 < len(argv):
            workspace = argv[i + 1]
            i += 2
        elif a.startswith("--workspace="):
            workspace = a.split("=", 1)[1]
            i += 1
        else:
            return None
    rest = list(argv[i + 1:])
    if i >= len(argv) or not rest or rest[0] not in ("status", "add"):
        return None
    command, rest = rest[0], rest[1:]
    path: str | None = None
    name: str | None = None
    json_out = False
    j = 0
    while j < len(rest):
        a = rest[j]
        if a == "--json":
            json_out = True
            j += 1
        elif a in ("--name", "-n") and j + 1 < len(rest):
            name = rest[j + 1]
            j += 2
        elif a.startswith("--name="):
            name = a.split("=", 1)[1]
            j += 1
        elif a.startswith("-") or path is not None or not a:
            return None  # --tag, --message, --help, a second path …: the full CLI handles it
        else:
            path = a
            j += 1
    if path is None:
        return None
    return workspace, command, path, name, json_out


def quick_data_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str | None:
    """The exact stdout of the command, or None when the full CLI must run it."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    from loopml.services.data import quick

    workspace, command, path, name, json_out = parsed
    root = quick.find_workspace(workspace)
    if root is None:
        return None
    db_path = quick.embedded_db_path(root, os.environ if env is None else env)
    if db_path is None:
        return None
    name = name or os.path.basename(os.path.realpath(path))
    if command == "status":
        report = quick.quick_status(root, db_path, path, name)
        if report is None:
            return None
        if json_out:
            # What print_json prints for this report, without importing json (and re): a dataset name
            # holds only [A-Za-z0-9._/-], which JSON writes as they are.
            return (f'{{\n  "name": "{name}",\n  "base": "{report["base"]}",\n  "added": [],\n  "removed": [],\n'
                    f'  "modified": [],\n  "hashed_files": 0,\n  "clean": true\n}}\n')
        return f"{name}: unchanged since {report['base']} (hashed 0 files)\n"
    version = quick.quick_unchanged_add(root, db_path, path, name)
    if version is None:
        return None
    if json_out:
        return _json({"version": version, "unchanged": True, "hashed_files": 0, "stored_files": 0})
    from loopml.cli._output import human_bytes

    status = "" if version["status"] == "ok" else "  VALIDATION FAILING"
    return (f"{version['name']}@v{version['version']} unchanged: {version['num_files']} files, "
            f"{human_bytes(version['size'])} (id {version['id']}; hashed 0, stored 0 new objects){status}\n")


def _json(obj: object) -> str:
    import json

    # The same call as cli._output.print_json.
    return json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n"
