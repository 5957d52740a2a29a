"""CLI commands of the pipelines part: `loopml pipeline …`, `loopml scheduler`, `loopml lineage`, `loopml trigger …`."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import typer

from loopml.cli._context import open_workspace, progress

pipeline_app = typer.Typer(help="Run, inspect, explain, resume and schedule pipelines.", no_args_is_help=True)
trigger_app = typer.Typer(help="Run pipelines on events: a new dataset version, an alert.", no_args_is_help=True)

_PARAM_HELP = "Parameter NAME=VALUE (pipeline argument) or STEP.ARG=VALUE; repeatable; values read as YAML."


def _params(pairs: list[str] | None, params_file: Path | None) -> dict[str, Any]:
    from loopml.services.pipelines import load_params_file, parse_param_pairs

    out: dict[str, Any] = dict(load_params_file(params_file)) if params_file else {}
    out.update(parse_param_pairs(pairs or []))
    return out


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _secs(value: float | None) -> str:
    return "" if value is None else (f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s")


def _show(run: Any) -> None:
    from loopml.cli._output import echo, print_table

    echo(f"pipeline run {run.id}  {run.pipeline}  {run.status}  ({run.executor}, {_secs(run.duration)})")
    rows = [(s.name, s.status, "yes" if s.status in ("CACHED", "REUSED") else "no", _secs(s.duration),
             s.attempts or "", (s.output_digest or "")[:12]) for s in run.steps]
    print_table(["step", "status", "cached", "duration", "attempts", "output"], rows)


@pipeline_app.command("run")
def run_cmd(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="The pipeline as module:function (or path/file.py:function)."),
    param: list[str] = typer.Option(None, "--param", "-p", help=_PARAM_HELP),
    params_file: Path = typer.Option(None, "--params-file", "-f", help="YAML file of parameters."),
    executor: str = typer.Option("inline", "--executor", "-e", help="inline (default), process or dask."),
    workers: int = typer.Option(None, "--workers", "-j", help="Worker processes (process) or LocalCluster workers (dask)."),
    scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler address tcp://HOST:PORT (dask)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every step even if a cached result exists."),
    json_out: bool = typer.Option(False, "--json", help="Print the run as JSON."),
) -> None:
    """Run a pipeline; steps whose cache key matches an earlier run are skipped."""
    from loopml.cli._output import print_json

    started: Any = None
    if executor == "dask":  # start the cluster now, so it comes up while the workspace and pipeline load
        from loopml.services.pipelines.executors import make_executor

        started = make_executor("dask", None, workers=workers, scheduler=scheduler)
    try:
        ws = open_workspace(ctx)
        run = ws.pipelines.run(target, params=_params(param, params_file), executor=started or executor,
                               workers=workers, scheduler=scheduler, no_cache=no_cache, progress=progress(ctx))
    finally:
        if started is not None:
            from loopml.services.pipelines.executors import stop_forkserver

            started.close()
            stop_forkserver()  # this process is about to exit; do not make a caller wait for it
    if json_out:
        print_json(_run_json(run))
    else:
        _show(run)


def _run_json(run: Any) -> dict[str, Any]:
    return {"id": run.id, "pipeline": run.pipeline, "status": str(run.status), "duration": run.duration,
            "params": run.params, "steps": [{"name": s.name, "status": str(s.status), "duration": s.duration,
                                             "output": s.output_digest, "cache_key": s.cache_key}
                                            for s in run.steps]}


@pipeline_app.command("ls")
def ls_cmd(
    ctx: typer.Context,
    pipeline: str = typer.Option(None, "--pipeline", help="Only runs of this pipeline."),
    limit: int = typer.Option(20, "--limit", "-n"),
) -> None:
    """List recent pipeline runs, newest first."""
    from loopml.cli._output import print_table

    runs = open_workspace(ctx).pipelines.list_runs(pipeline, limit)
    print_table(["run", "pipeline", "status", "started", "duration", "executor"],
                [(r.id[-8:], r.pipeline, r.status, _when(r.started), _secs(r.duration), r.executor) for r in runs])


@pipeline_app.command("show")
def show_cmd(ctx: typer.Context, run: str = typer.Argument(..., help="Run id (or its last 8 characters)."),
             json_out: bool = typer.Option(False, "--json")) -> None:
    """One run: each step with status, cached or not, and duration."""
    from loopml.cli._output import echo, print_json

    r = open_workspace(ctx).pipelines.get_run(run)
    if json_out:
        print_json(_run_json(r))
        return
    _show(r)
    if r.error:
        echo("")
        echo(r.error)


@pipeline_app.command("explain")
def explain_cmd(ctx: typer.Context, run: str = typer.Argument(...), step: str = typer.Argument(...)) -> None:
    """Why STEP of RUN was, or was not, taken from the cache."""
    from loopml.cli._output import echo

    for line in open_workspace(ctx).pipelines.explain(run, step):
        echo(line)


@pipeline_app.command("resume")
def resume_cmd(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="A failed run."),
    executor: str = typer.Option(None, "--executor", "-e"),
    workers: int = typer.Option(None, "--workers", "-j"),
    scheduler: str = typer.Option(None, "--scheduler"),
) -> None:
    """Rerun a failed run from its failed step, reusing the steps that finished."""
    r = open_workspace(ctx).pipelines.resume(run, executor=executor, workers=workers, scheduler=scheduler,
                                             progress=progress(ctx))
    _show(r)


@pipeline_app.command("graph")
def graph_cmd(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="module:function, or a run id."),
    param: list[str] = typer.Option(None, "--param", "-p", help=_PARAM_HELP),
    fmt: str = typer.Option("text", "--format", help="text, dot or html."),
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """The DAG of a pipeline (traced, nothing runs) or of a past run."""
    from loopml.cli._output import echo
    from loopml.services.pipelines.lineage import LineageNode, render_dot, render_html

    ws = open_workspace(ctx)
    nodes: dict[str, LineageNode] = {}
    edges: list[tuple[str, str, str]] = []
    if ":" in target:
        dag = ws.pipelines.plan(target, _params(param, None))
        title = f"pipeline {dag.pipeline_name}"
        for node in dag.topological():
            nodes[node.name] = LineageNode(node.name, "dataset" if node.dataset else "step", node.name,
                                           {"function": node.func_ref, "params": node.params})
        edges = [(a, b, arg) for a, b, arg in dag.edges()]
    else:
        run = ws.pipelines.get_run(target)
        title = f"pipeline {run.pipeline} run {run.id[-8:]}"
        producers = {s.output_digest: s.name for s in run.steps if s.output_digest}
        for s in run.steps:
            nodes[s.name] = LineageNode(s.name, "dataset" if s.func.startswith("dataset:") else "step", s.name,
                                        {"status": s.status, "duration": _secs(s.duration)})
            edges += [(producers[d], s.name, arg) for arg, d in s.inputs.items() if d in producers]
    if fmt == "html":
        text = render_html(title, nodes, edges)
    elif fmt == "dot":
        text = render_dot(nodes, edges)
    else:
        ups: dict[str, list[str]] = {n: [] for n in nodes}
        for a, b, arg in edges:
            ups[b].append(f"{a} ({arg})")
        text = "\n".join(f"{n}" + (f"  <- {', '.join(ups[n])}" if ups[n] else "") for n in nodes)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        echo(f"Wrote {output}")
    else:
        echo(text)


@pipeline_app.command("schedule")
def schedule_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for the schedule."),
    cron: str = typer.Option(..., "--cron", help='Cron expression, e.g. "0 3 * * *".'),
    target: str = typer.Option(..., "--pipeline", "--target", help="The pipeline as module:function."),
    param: list[str] = typer.Option(None, "--param", "-p", help=_PARAM_HELP),
    params_file: Path = typer.Option(None, "--params-file", "-f"),
) -> None:
    """Store a cron schedule; `loopml scheduler` runs it."""
    from loopml.cli._output import echo

    s = open_workspace(ctx).pipelines.add_schedule(name, target, cron, _params(param, params_file))
    echo(f"Scheduled {s.name!r}: {s.target} at {s.cron!r}. Run `loopml scheduler` to execute schedules.")


@pipeline_app.command("schedules")
def schedules_cmd(ctx: typer.Context) -> None:
    """List schedules."""
    from loopml.cli._output import print_table

    rows = [(s.name, s.cron, s.target, s.params or "", "yes" if s.enabled else "no")
            for s in open_workspace(ctx).pipelines.list_schedules()]
    print_table(["name", "cron", "pipeline", "params", "enabled"], rows)


@pipeline_app.command("unschedule")
def unschedule_cmd(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Remove a schedule."""
    from loopml.cli._output import echo

    open_workspace(ctx).pipelines.remove_schedule(name)
    echo(f"Removed schedule {name!r}.")


def scheduler_cmd(
    ctx: typer.Context,
    interval: float = typer.Option(30.0, "--interval", help="Seconds between checks."),
    once: bool = typer.Option(False, "--once", help="Check once, run what is due, and exit."),
) -> None:
    """Run due schedules and triggers until stopped (Ctrl-C); a restart never runs a slot twice."""
    import os
    import socket

    from loopml.cli._output import echo

    ws = open_workspace(ctx)
    me = f"{socket.gethostname()}:{os.getpid()}"

    def report(result: tuple[str, str | None, str]) -> None:
        what, run_id, status = result
        import sys
        import time

        echo(f"{_when(time.time())}  {what}: run {run_id[-8:] if run_id else '-'} {status}")
        sys.stdout.flush()

    if once:
        for result in ws.pipelines.tick(claimed_by=me):
            report(result)
        return
    echo(f"loopml scheduler ({me}) checking every {interval:g} s; Ctrl-C to stop.")
    ws.pipelines.run_scheduler(interval=interval, on_result=report, claimed_by=me)


def lineage_cmd(
    ctx: typer.Context,
    obj: str = typer.Argument(..., metavar="OBJECT", help="Artifact digest (prefix), pipeline run, step run or tracking run id."),
    html_out: Path = typer.Option(None, "--html", help="Also write the graph as a self-contained HTML file."),
    dot_out: Path = typer.Option(None, "--dot", help="Also write the graph in Graphviz DOT."),
) -> None:
    """What is upstream (datasets, steps, code, params) and downstream of an object."""
    from loopml.cli._output import echo
    from loopml.services.pipelines.lineage import render_dot, render_html, render_text

    graph = open_workspace(ctx).pipelines.lineage(obj)
    echo(render_text(graph))
    if html_out:
        html_out.write_text(render_html(f"lineage of {obj}", graph.nodes, graph.edges), encoding="utf-8")
        echo(f"Wrote {html_out}")
    if dot_out:
        dot_out.write_text(render_dot(graph.nodes, graph.edges), encoding="utf-8")
        echo(f"Wrote {dot_out}")


@trigger_app.command("add")
def trigger_add(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    target: str = typer.Option(..., "--pipeline", "--target", help="The pipeline as module:function."),
    on_dataset: str = typer.Option(None, "--on-dataset", help="Run when this dataset gets a new version."),
    on_alert: str = typer.Option(None, "--on-alert", help="Run when this alert fires."),
    param: list[str] = typer.Option(None, "--param", "-p", help=_PARAM_HELP),
    pass_as: str = typer.Option(None, "--pass-as", help="Pipeline parameter that receives the new dataset "
                                "version (name@version) or the alert key."),
) -> None:
    """Register a trigger; `loopml scheduler` watches for the event."""
    from loopml.cli._output import echo

    t = open_workspace(ctx).pipelines.add_trigger(name, target, on_dataset=on_dataset, on_alert=on_alert,
                                                  params=_params(param, None), pass_as=pass_as)
    echo(f"Trigger {t.name!r}: {t.target} on {t.event_type} {t.source!r}.")


@trigger_app.command("ls")
def trigger_ls(ctx: typer.Context) -> None:
    """List triggers."""
    from loopml.cli._output import print_table

    rows = [(t.name, f"{t.event_type}:{t.source}", t.target, t.last_event or "", "yes" if t.enabled else "no")
            for t in open_workspace(ctx).pipelines.list_triggers()]
    print_table(["name", "on", "pipeline", "last event", "enabled"], rows)


@trigger_app.command("rm")
def trigger_rm(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Remove a trigger."""
    from loopml.cli._output import echo

    open_workspace(ctx).pipelines.remove_trigger(name)
    echo(f"Removed trigger {name!r}.")


@trigger_app.command("fire")
def trigger_fire(
    ctx: typer.Context,
    alert: str = typer.Argument(..., help="The alert name triggers listen to."),
    key: str = typer.Option(..., "--key", help="A unique id of this event (runs once per key)."),
) -> None:
    """Emit an alert event now (monitoring does this itself)."""
    from loopml.cli._output import echo

    for name, run_id, status in open_workspace(ctx).pipelines.emit_event("alert", alert, key, progress=progress(ctx)):
        echo(f"trigger {name}: run {run_id[-8:] if run_id else '-'} {status}")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the top-level app."""
    app.add_typer(pipeline_app, name="pipeline")
    app.add_typer(trigger_app, name="trigger")
    app.command("scheduler")(scheduler_cmd)
    app.command("lineage")(lineage_cmd)
