"""CLI commands of the tracking part: ``loopml runs ls|show|compare|delete|experiments``."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import typer

from loopml.cli._context import open_workspace

runs_app = typer.Typer(help="Tracked runs: list and search, show, compare, delete.", no_args_is_help=True)


def _service(ctx: typer.Context) -> Any:
    from loopml.sdk._remote import remote_service_from_env

    remote = remote_service_from_env(os.environ)
    if remote is not None:
        return remote
    return open_workspace(ctx).tracking


def _when(ts: float | None) -> str:
    return "" if ts is None else _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _num(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


@runs_app.command("ls")
def ls_cmd(
    ctx: typer.Context,
    filter: str | None = typer.Option(None, "--filter", "-f", help="e.g. \"metrics.acc > 0.9 and params.model = 'rf'\""),
    experiment: list[str] | None = typer.Option(None, "--experiment", "-e", help="Only these experiments."),
    order_by: list[str] | None = typer.Option(None, "--order-by", "-o", help="e.g. \"metrics.acc desc\""),
    limit: int | None = typer.Option(50, "--limit", "-n", help="At most this many runs."),
    deleted: bool = typer.Option(False, "--deleted", help="Include soft-deleted runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List runs matching a filter, best first by --order-by."""
    from loopml.cli._output import print_json, print_table

    runs = _service(ctx).search_runs(filter, experiments=experiment or None, order_by=order_by or None,
                                     limit=limit, include_deleted=deleted,
                                     include_environment=False)  # neither the table nor --json shows it
    if as_json:
        print_json([{"id": r.id, "experiment": r.experiment, "name": r.name, "status": r.status.value,
                     "start_time": r.start_time, "end_time": r.end_time, "params": r.params,
                     "metrics": {k: (None if v != v else v) for k, v in r.metrics.items()}, "tags": r.tags}
                    for r in runs])
        return
    mkeys = sorted({k for r in runs for k in r.metrics})[:6]
    rows = [[r.id, r.experiment, r.name or "", r.status.value, _when(r.start_time),
             *[_num(r.metrics.get(k)) for k in mkeys]] for r in runs]
    print_table(["id", "experiment", "name", "status", "started", *mkeys], rows, title=f"{len(runs)} run(s)")


@runs_app.command("show")
def show_cmd(ctx: typer.Context, run_id: str = typer.Argument(..., help="Run id."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Everything about one run: status, params, latest metrics, tags, artifacts, environment."""
    from loopml.cli._output import echo, human_bytes, print_json, print_kv, print_table

    svc = _service(ctx)
    r = svc.get_run(run_id)
    arts = svc.list_artifacts(run_id) if hasattr(svc, "list_artifacts") else []
    if as_json:
        print_json({"id": r.id, "experiment": r.experiment, "name": r.name, "status": r.status.value,
                    "start_time": r.start_time, "end_time": r.end_time, "parent_id": r.parent_id, "error": r.error,
                    "params": r.params, "tags": r.tags, "environment": r.environment,
                    "metrics": {k: (None if v != v else v) for k, v in r.metrics.items()},
                    "artifacts": [{"name": a["name"], "digest": a["digest"], "size": a["size"]} for a in arts]})
        return
    git = r.environment.get("git") or {}
    print_kv([("id", r.id), ("experiment", r.experiment), ("name", r.name or ""), ("status", r.status.value),
              ("started", _when(r.start_time)), ("ended", _when(r.end_time)),
              ("duration", "" if r.duration is None else f"{r.duration:.2f} s"), ("parent", r.parent_id or ""),
              ("error", r.error or ""), ("git", f"{git.get('commit', '')[:12]}{' (dirty)' if git.get('dirty') else ''}"),
              ("python", r.environment.get("python", "")), ("deleted", "yes" if r.deleted else "no")])
    if r.params:
        print_table(["param", "value"], sorted(r.params.items()), title="params")
    if r.metrics:
        print_table(["metric", "latest"], [(k, _num(v)) for k, v in sorted(r.metrics.items())], title="metrics")
    if r.tags:
        print_table(["tag", "value"], sorted(r.tags.items()), title="tags")
    if arts:
        print_table(["artifact", "size", "digest"], [(a["name"], human_bytes(a["size"]), a["digest"][:16]) for a in arts],
                    title="artifacts")
    if not (r.params or r.metrics or r.tags or arts):
        echo("Nothing logged yet.")


@runs_app.command("compare")
def compare_cmd(ctx: typer.Context, run_ids: list[str] = typer.Argument(..., help="Two or more run ids."),
                html: Path = typer.Option(Path("compare.html"), "--html", help="Where to write the plotted series.")
                ) -> None:
    """Param differences and metrics side by side; metric series plotted to an HTML file."""
    from loopml.cli._output import echo, print_table
    from loopml.services.tracking.compare import compare_runs, write_html

    svc = _service(ctx)
    runs = [svc.get_run(r) for r in run_ids]
    cmp = compare_runs(runs)
    heads = [r.name or r.id[-8:] for r in runs]
    if cmp.param_diff:
        print_table(["param", *heads], [[k, *[v or "" for v in vals]] for k, vals in cmp.param_diff],
                    title="params that differ")
    else:
        echo("Params: identical.")
    if cmp.metrics:
        print_table(["metric", *heads], [[k, *[_num(v) for v in vals]] for k, vals in cmp.metrics], title="metrics")
    out = write_html(svc, cmp, html)
    echo(f"Metric series plotted to {out}")


@runs_app.command("delete")
def delete_cmd(ctx: typer.Context, run_ids: list[str] = typer.Argument(..., help="Run ids."),
               hard: bool = typer.Option(False, "--hard", help="Remove rows and garbage-collect artifacts."),
               yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before a hard delete.")) -> None:
    """Soft-delete runs (hidden from search), or --hard delete them with their artifacts."""
    from loopml.cli._output import echo

    if hard and not yes:
        typer.confirm(f"Permanently delete {len(run_ids)} run(s) and their unreferenced artifacts?", abort=True)
    svc = _service(ctx)
    for rid in run_ids:
        svc.delete_run(rid, hard=hard)
        echo(f"{'Deleted' if hard else 'Soft-deleted'} run {rid}")


@runs_app.command("experiments")
def experiments_cmd(ctx: typer.Context) -> None:
    """List experiment names."""
    from loopml.cli._output import echo

    for name in _service(ctx).list_experiments():
        echo(name)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the top-level app."""
    app.add_typer(runs_app, name="runs")
