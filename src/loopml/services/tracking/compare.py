"""Run comparison: param differences, metrics side by side, and an offline HTML plot of metric series."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.domain.tracking import Run


@dataclass
class Comparison:
    runs: list[Run]
    param_diff: list[tuple[str, list[str | None]]]  # only keys whose values differ
    metrics: list[tuple[str, list[float | None]]]


def compare_runs(runs: list[Run]) -> Comparison:
    keys = sorted({k for r in runs for k in r.params})
    diff = [(k, [r.params.get(k) for r in runs]) for k in keys if len({r.params.get(k) for r in runs}) > 1]
    mkeys = sorted({k for r in runs for k in r.metrics})
    return Comparison(runs, diff, [(k, [r.metrics.get(k) for r in runs]) for k in mkeys])


def write_html(service: Any, comparison: Comparison, dest: str | Path, *, max_points: int = 2000) -> Path:
    """One chart per metric key with a line per run; plotly.js is inlined so it opens offline."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    keys = [k for k, _ in comparison.metrics]
    fig = make_subplots(rows=max(1, len(keys)), cols=1, subplot_titles=keys or ["no metrics"])
    for row, key in enumerate(keys, start=1):
        for run in comparison.runs:
            if key not in run.metrics:
                continue
            pts = service.metric_history(run.id, key, max_points=max_points)
            fig.add_trace(go.Scatter(x=[p.step for p in pts], y=[p.value for p in pts], mode="lines+markers",
                                     name=f"{run.name or run.id[-8:]} {key}", legendgroup=run.id), row=row, col=1)
    fig.update_layout(height=320 * max(1, len(keys)), title="loopml run comparison")
    table = "".join(
        f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in vals) + "</tr>"
        for k, vals in comparison.param_diff)
    head = "".join(f"<th>{html.escape(r.name or r.id)}</th>" for r in comparison.runs)
    body = fig.to_html(include_plotlyjs=True, full_html=False)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>loopml compare</title></head><body>"
            f"<h2>Param differences</h2><table border='1'><tr><th>param</th>{head}</tr>{table}</table>"
            f"{body}</body></html>")
    out = Path(dest)
    out.write_text(page, encoding="utf-8")
    return out
