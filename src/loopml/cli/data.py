"""CLI commands of the data part: `loopml data …`."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import typer

from loopml.cli._context import open_workspace, progress

data_app = typer.Typer(help="Version datasets: add, ls, show, status, diff, checkout, tag, validate, push, pull, gc.",
                       no_args_is_help=True)
rules_app = typer.Typer(help="Validation rules attached to a dataset.", no_args_is_help=True)
remote_app = typer.Typer(help="Named data remotes (any fsspec URL, e.g. s3://bucket/prefix).", no_args_is_help=True)
data_app.add_typer(rules_app, name="rules")
data_app.add_typer(remote_app, name="remote")


def _when(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _version_dict(v: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(v)


@data_app.command("add")
def add_cmd(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A file or directory (CSV/Parquet files get table statistics)."),
    name: str = typer.Option(None, "--name", "-n", help="Dataset name (default: the file or directory name)."),
    tag: list[str] = typer.Option(None, "--tag", "-t", help="Tag the version (repeatable)."),
    message: str = typer.Option(None, "--message", "-m", help="What changed."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Version a file or directory; identical content gives the existing version ("unchanged")."""
    from loopml.cli._output import echo, human_bytes, print_json

    ws = open_workspace(ctx)
    result = ws.data.add_detailed(path, name or path.resolve().name, tags=tag or (), message=message,
                                  progress=progress(ctx))
    v = result.version
    if json_out:
        print_json({"version": _version_dict(v), "unchanged": result.unchanged,
                    "hashed_files": result.hashed_files, "stored_files": result.stored_files})
        return
    state = "unchanged" if result.unchanged else "added"
    status = "" if v.status == "ok" else "  VALIDATION FAILING"
    echo(f"{v.label} {state}: {v.num_files} files, {human_bytes(v.size)} (id {v.id}; hashed {result.hashed_files}, "
         f"stored {result.stored_files} new objects){status}")


@data_app.command("ls")
def ls_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="Only versions of this dataset."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """List dataset versions."""
    from loopml.cli._output import human_bytes, print_json, print_table

    versions = open_workspace(ctx).data.list_versions(name)
    if json_out:
        print_json([_version_dict(v) for v in versions])
        return
    print_table(["dataset", "version", "kind", "files", "size", "status", "tags", "created", "message"],
                [(v.name, f"v{v.version}", v.kind, v.num_files, human_bytes(v.size), v.status, ",".join(v.tags),
                  _when(v.created_at), v.message or "") for v in versions])


@data_app.command("show")
def show_cmd(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME@v3 or NAME@TAG."),
    files: bool = typer.Option(False, "--files", help="List the files too."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Show one version: manifest summary, and for tables schema and column statistics."""
    from loopml.cli._output import echo, human_bytes, print_json, print_kv, print_table

    svc = open_workspace(ctx).data
    v = svc.resolve(ref)
    if json_out:
        out = _version_dict(v)
        if files:
            out["files"] = [{"path": f.path, "size": f.size, "digest": f.digest} for f in svc.files(v)]
        print_json(out)
        return
    print_kv([("version", v.label), ("id", v.id), ("kind", v.kind), ("files", v.num_files),
              ("size", human_bytes(v.size)), ("status", v.status), ("tags", ", ".join(v.tags)),
              ("created", f"{_when(v.created_at)} by {v.created_by}"), ("message", v.message or ""),
              ("source", v.source or "")])
    if v.stats:
        echo(f"\n{v.stats['rows']} rows")
        rows = []
        for col, s in v.stats["columns"].items():
            top = ", ".join(f"{k}:{n}" for k, n in s.get("top", [])[:3])
            rows.append((col, s["dtype"], s["null_count"], s["distinct"], s.get("min", ""), s.get("max", ""),
                         s.get("quantiles", {}).get("0.5", ""), top))
        print_table(["column", "dtype", "nulls", "distinct", "min", "max", "median", "top"], rows)
    if v.validation:
        echo(f"\nvalidation: {'PASS' if v.validation['passed'] else 'FAIL'}")
    if files:
        print_table(["path", "size", "digest"], [(f.path, human_bytes(f.size), f.digest[:16]) for f in svc.files(v)])


@data_app.command("status")
def status_cmd(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="The working copy (file or directory)."),
    name: str = typer.Option(None, "--name", "-n", help="Dataset name (default: the path's name)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """What changed in PATH since the latest version (only files whose stat changed are rehashed)."""
    import dataclasses

    from loopml.cli._output import echo, print_json

    rep = open_workspace(ctx).data.status(path, name or path.resolve().name)
    if json_out:
        print_json({**dataclasses.asdict(rep), "clean": rep.clean})
        return
    if rep.base is None:
        echo(f"{rep.name}: no version yet ({len(rep.added)} files would be added)")
        return
    if rep.clean:
        echo(f"{rep.name}: unchanged since {rep.base} (hashed {rep.hashed_files} files)")
        return
    echo(f"{rep.name}: changed since {rep.base} (hashed {rep.hashed_files} files)")
    for label, items in (("added", rep.added), ("removed", rep.removed), ("modified", rep.modified)):
        for p in items:
            echo(f"  {label:9} {p}")


@data_app.command("diff")
def diff_cmd(
    ctx: typer.Context,
    a: str = typer.Argument(..., help="First version (NAME@v1)."),
    b: str = typer.Argument(..., help="Second version (NAME@v2)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Files added, removed, modified; for tables row counts, schema and column statistic changes."""
    from loopml.cli._output import echo, print_json, print_table

    d = open_workspace(ctx).data.diff(a, b)
    if json_out:
        print_json(d.to_dict())
        return
    echo(f"{d.a} -> {d.b}: {len(d.added)} added, {len(d.removed)} removed, {len(d.modified)} modified")
    for label, items in (("+", d.added), ("-", d.removed), ("~", d.modified)):
        for p in items:
            echo(f"  {label} {p}")
    if d.rows:
        echo(f"rows: {d.rows[0]} -> {d.rows[1]} ({d.rows[1] - d.rows[0]:+d})")
    for change in d.schema_changes:
        echo(f"schema: {change}")
    if d.stat_changes:
        print_table(["column", "statistic", d.a, d.b],
                    [(c, k, v[0], v[1]) for c, ch in d.stat_changes.items() for k, v in ch.items()])


@data_app.command("checkout")
def checkout_cmd(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@V"),
    dest: Path = typer.Argument(None, help="Target directory (default ./NAME)."),
    link: str = typer.Option("copy", "--link", help="copy (default), reflink, hardlink (shares bytes with the store: do not edit) or auto. Objects under 1 MB kept in pack files are always copied."),
) -> None:
    """Write a version's files into DIR."""
    from loopml.cli._output import echo
    from loopml.errors import InvalidParameterError

    if link not in ("copy", "hardlink", "reflink", "auto"):
        raise InvalidParameterError("link", "data checkout", "one of copy, hardlink, reflink, auto", link)
    out = open_workspace(ctx).data.checkout(ref, dest, link=link, progress=progress(ctx))  # type: ignore[arg-type]
    echo(f"{ref} checked out to {out}")


@data_app.command("tag")
def tag_cmd(ctx: typer.Context, ref: str = typer.Argument(...), tag: str = typer.Argument(...)) -> None:
    """Tag a version (moves the tag if it was on another version)."""
    from loopml.cli._output import echo

    v = open_workspace(ctx).data.tag(ref, tag)
    echo(f"{v.name}@{tag} -> {v.label}")


@data_app.command("validate")
def validate_cmd(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@V of a table."),
    rules: Path = typer.Option(None, "--rules", "-r", help="YAML or .py rules file (default: the dataset's rules)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Check a table version against rules; exits 1 when any check fails."""
    from loopml.cli._output import echo, print_json, print_table
    from loopml.services.data.validation import load_rules

    report = open_workspace(ctx).data.validate(ref, load_rules(rules) if rules else None)
    if json_out:
        print_json(report.to_dict())
    else:
        print_table(["check", "result", "detail"],
                    [(c.rule, "pass" if c.passed else "FAIL", c.detail) for c in report.checks])
        failed = sum(not c.passed for c in report.checks)
        echo(f"{report.target}: {'PASS' if report.passed else 'FAIL'} "
             f"({len(report.checks) - failed} passed, {failed} failed)")
    if not report.passed:
        raise typer.Exit(1)


@rules_app.command("set")
def rules_set_cmd(ctx: typer.Context, name: str = typer.Argument(...), file: Path = typer.Argument(...)) -> None:
    """Attach rules to a dataset; they run on every new version."""
    from loopml.cli._output import echo
    from loopml.services.data.validation import load_rules

    open_workspace(ctx).data.set_rules(name, load_rules(file))
    echo(f"rules attached to {name}")


@rules_app.command("show")
def rules_show_cmd(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    from loopml.cli._output import print_json

    print_json(open_workspace(ctx).data.get_rules(name))


@remote_app.command("add")
def remote_add_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    url: str = typer.Argument(..., help="fsspec URL, e.g. s3://bucket/prefix or /mnt/backup/loopml"),
    endpoint_url: str = typer.Option(None, "--endpoint-url", help="S3-compatible endpoint."),
) -> None:
    """Add (or replace) a named remote."""
    from loopml.cli._output import echo

    open_workspace(ctx).data.add_remote(name, url, endpoint_url=endpoint_url)
    echo(f"remote {name} -> {url}")


@remote_app.command("ls")
def remote_ls_cmd(ctx: typer.Context) -> None:
    from loopml.cli._output import print_table

    print_table(["name", "url"], [(r[0], r[1]) for r in open_workspace(ctx).data.list_remotes()])


@data_app.command("push")
def push_cmd(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(None, help="Versions to push (default: all)."),
    remote: str = typer.Option(None, "--remote", "-r", help="Remote name or URL (default: the only remote)."),
) -> None:
    """Upload objects the remote lacks, packing small files."""
    from loopml.cli._memory import keep_freed_memory
    from loopml.cli._output import echo, human_bytes

    keep_freed_memory()
    r = open_workspace(ctx).data.push(refs or None, remote=remote, progress=progress(ctx))
    echo(f"pushed {r.objects} objects ({human_bytes(r.bytes)}) in {r.transfers} transfers; "
         f"{r.skipped} already there")


@data_app.command("pull")
def pull_cmd(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(None, help="Versions to pull (default: all)."),
    remote: str = typer.Option(None, "--remote", "-r"),
) -> None:
    """Download objects the local store lacks; every object's hash is verified."""
    from loopml.cli._memory import keep_freed_memory
    from loopml.cli._output import echo, human_bytes

    keep_freed_memory()
    r = open_workspace(ctx).data.pull(refs or None, remote=remote, progress=progress(ctx))
    echo(f"pulled {r.objects} objects ({human_bytes(r.bytes)}) in {r.transfers} transfers; "
         f"{r.skipped} already local")


@data_app.command("gc")
def gc_cmd(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be deleted."),
    grace: float = typer.Option(3600.0, "--grace", help="Keep unreferenced objects younger than this (seconds)."),
) -> None:
    """Delete objects no version of anything references."""
    from loopml.cli._output import echo, human_bytes

    count, size = open_workspace(ctx).data.gc(dry_run=dry_run, grace_seconds=grace)
    echo(f"{'would delete' if dry_run else 'deleted'} {count} objects ({human_bytes(size)})")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the top-level app."""
    app.add_typer(data_app, name="data")
