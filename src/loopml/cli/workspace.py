"""`loopml init`, `status` and `doctor`."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli._context import open_workspace, progress, state
from loopml.cli._output import echo, human_bytes, print_json, print_kv


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("status")(status)
    app.command("doctor")(doctor)
    app.command("events")(events)


def init(
    ctx: typer.Context,
    path: Path = typer.Argument(Path("."), help="Directory to make a workspace (created if missing)."),
    db_url: str = typer.Option(None, "--db-url", help="Metadata database URL (default: SQLite in .loopml/)."),
    artifacts: str = typer.Option(None, "--artifacts", help="Artifact location: a path or fsspec URL such as s3://bucket/prefix."),
) -> None:
    """Create a workspace: .loopml/ with a config file, the metadata database and the object store."""
    from loopml.workspace import Workspace

    ws = Workspace.init(path, db_url=db_url, artifacts=artifacts)
    try:
        s = ws.settings
        echo(f"Initialized loopml workspace in {s.workspace_dir}")
        if not state(ctx).quiet:
            print_kv([("database", ws.db.display_url), ("artifacts", s.artifacts), ("config", str(s.config_path))])
    finally:
        ws.close()


def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Show where the workspace keeps things (password hidden), its schema version and counts."""
    ws = open_workspace(ctx)
    info = ws.status()
    if as_json:
        print_json(info)
        return
    version = info["schema_version"]
    schema = f"{version} (current)" if version == info["schema_head"] else f"{version} (code expects {info['schema_head']}; upgraded on next write)"
    pairs: list[tuple[str, object]] = [
        ("workspace", info["root"]),
        ("database", f"{info['database']}  [{info['sources'].get('db_url', 'default')}]"),
        ("schema", schema),
        ("artifacts", f"{info['artifacts']}  [{info['sources'].get('artifacts', 'default')}]"),
    ]
    if "objects" in info:
        pairs.append(("objects", f"{info['objects']} ({human_bytes(info['object_bytes'])})"))
    counts = {k: v for k, v in info["counts"].items() if v}
    pairs.append(("records", ", ".join(f"{k}={v}" for k, v in counts.items()) or "none yet"))
    print_kv(pairs)


def doctor(
    ctx: typer.Context,
    verify: bool = typer.Option(False, "--verify", help="Rehash every stored object and find missing ones."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Check the database schema and, with --verify, the integrity of every stored object.

    Exits 1 when something is wrong, listing each corrupt or missing object.
    """
    ws = open_workspace(ctx)
    try:
        report = ws.doctor(verify=verify, progress=progress(ctx))
    finally:
        ws.close()
    if as_json:
        print_json({**report.__dict__, "ok": report.ok})
    else:
        mark = "ok" if report.schema_version == report.schema_head else "OUT OF DATE"
        echo(f"schema      {report.schema_version} (head {report.schema_head}) {mark}")
        if report.verified:
            echo(f"objects     {report.objects_checked} verified ({human_bytes(report.bytes_checked)})")
            for digest, actual in report.corrupt:
                echo(f"CORRUPT     {digest} (bytes hash to {actual})")
            for digest in report.missing:
                echo(f"MISSING     {digest} (referenced but not stored)")
        else:
            echo("objects     not verified (use --verify to rehash every object)")
        if report.stray_temp_files:
            echo(f"temp files  {report.stray_temp_files} left by interrupted writes (harmless)")
        echo("OK" if report.ok else "PROBLEMS FOUND")
    if not report.ok:
        raise typer.Exit(1)


def events(
    ctx: typer.Context,
    object_ref: str = typer.Option(None, "--object", "-o", help="Only this object: TYPE or TYPE:ID (e.g. run:01ab...)."),
    action: str = typer.Option(None, "--action", "-a", help="Only this action; a trailing * matches a prefix (run.*)."),
    actor: str = typer.Option(None, "--actor", help="Only actions by this actor."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many events."),
    oldest_first: bool = typer.Option(False, "--oldest-first", help="Oldest first instead of newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """The audit trail: who did what to which object, and when."""
    import time

    from loopml.cli._output import print_table

    object_type, _, object_id = (object_ref or "").partition(":")
    ws = open_workspace(ctx)
    try:
        found = ws.events(object_type=object_type or None, object_id=object_id or None, action=action,
                          actor=actor, limit=limit, newest_first=not oldest_first)
    finally:
        ws.close()
    if as_json:
        print_json([e.__dict__ for e in found])
        return
    rows = [[time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts)), e.actor, e.action,
             f"{e.object_type}:{e.object_id}", ", ".join(f"{k}={v}" for k, v in sorted(e.details.items()))[:80]]
            for e in found]
    print_table(["when", "actor", "action", "object", "details"], rows, title=f"{len(found)} event(s)")
