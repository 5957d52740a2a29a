"""Lineage: what is upstream (datasets, steps, code, params) and downstream of an artifact or run, as text or HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select

from loopml.errors import NotFoundError
from loopml.stores.metadata.schema.pipelines import (
    pipeline_runs,
    pipeline_step_inputs,
    pipeline_step_runs,
)

MAX_NODES = 500


@dataclass
class LineageNode:
    id: str
    kind: str  # "dataset", "step", "artifact", "run"
    label: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class LineageGraph:
    """Nodes and edges (from, to, label); ``focus`` is the object asked about."""

    focus: str
    nodes: dict[str, LineageNode] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, node: LineageNode) -> None:
        self.nodes.setdefault(node.id, node)

    def link(self, a: str, b: str, label: str = "") -> None:
        if (a, b, label) not in self.edges:
            self.edges.append((a, b, label))

    def upstream_of(self, node_id: str) -> list[str]:
        return [a for a, b, _ in self.edges if b == node_id]

    def downstream_of(self, node_id: str) -> list[str]:
        return [b for a, b, _ in self.edges if a == node_id]


def _step_node(row: Any) -> LineageNode:
    kind = "dataset" if (row.func or "").startswith("dataset:") else "step"
    label = row.func.split(":", 1)[1] if kind == "dataset" else row.name
    details: dict[str, Any] = {"status": row.status, "pipeline run": row.pipeline_run_id}
    if kind == "step":
        parts = row.key_parts or {}
        details.update({"function": row.func, "code": parts.get("source", "?"), "params": row.params or {}})
        if parts.get("_git"):
            details["git"] = parts["_git"]
        if parts.get("helpers"):
            details["helpers"] = parts["helpers"]
    else:
        details["version id"] = (row.key_parts or {}).get("dataset_version")
    return LineageNode(f"step:{row.id}", kind, label, details)


def _artifact_node(digest: str, materializer: str | None) -> LineageNode:
    return LineageNode(f"artifact:{digest}", "artifact", f"{digest[:12]}…", {"materializer": materializer or "?"})


def build_lineage(db: Any, ref: str, data: Any = None) -> LineageGraph:
    """Resolve ``ref`` (artifact digest or prefix, pipeline run, step run, tracking run id, or with ``data``, the
    data part's adapter, a dataset version: ``name``, ``name@v3`` or a version id) and walk both ways."""
    ref = ref.strip()
    version = _dataset_version(data, ref) if ("@" in ref or not _looks_like_id(ref)) else None
    if version is not None:
        return _dataset_lineage(db, data, *version)
    with db.read() as conn:
        steps = conn.execute(select(pipeline_step_runs).where(or_(
            pipeline_step_runs.c.id == ref, pipeline_step_runs.c.tracking_run_id == ref))).all()
        runs = conn.execute(select(pipeline_runs).where(or_(
            pipeline_runs.c.id == ref, pipeline_runs.c.tracking_run_id == ref,
            pipeline_runs.c.id.like(f"%{ref}") if len(ref) >= 6 else pipeline_runs.c.id == ref))).all()
        digest = None
        if not steps and not runs and len(ref) >= 6:
            row = conn.execute(select(pipeline_step_runs.c.output_digest)
                               .where(pipeline_step_runs.c.output_digest.like(f"{ref}%")).limit(1)).first()
            if row is None:
                row = conn.execute(select(pipeline_step_inputs.c.digest)
                                   .where(pipeline_step_inputs.c.digest.like(f"{ref}%")).limit(1)).first()
            digest = row[0] if row else None
        if not steps and not runs and digest is None:
            version = _dataset_version(data, ref)
            if version is not None:
                return _dataset_lineage(db, data, *version)
            raise NotFoundError(
                f"Nothing called {ref!r} is known to lineage (no artifact, pipeline run, step run, tracking run "
                "or dataset version).",
                hint="Use an id from `loopml pipeline show RUN`, an artifact digest (at least 6 characters) or a "
                     "dataset version (NAME@v1).",
            )
        if runs:
            run = runs[0]
            graph = LineageGraph(f"run:{run.id}")
            graph.add(LineageNode(f"run:{run.id}", "run", f"{run.pipeline} run {run.id[-8:]}",
                                  {"target": run.target, "status": run.status, "params": run.params}))
            rows = conn.execute(select(pipeline_step_runs)
                                .where(pipeline_step_runs.c.pipeline_run_id == run.id)).all()
            for r in rows:
                _walk_up(conn, graph, r)
                graph.link(f"step:{r.id}", f"run:{run.id}", "part of")
                if r.output_digest:
                    _walk_down(conn, graph, r.output_digest, exclude_run=run.id)
            return graph
        if steps:
            r = steps[0]
            graph = LineageGraph(f"step:{r.id}")
            _walk_up(conn, graph, r)
            if r.output_digest:
                _walk_down(conn, graph, r.output_digest)
            return graph
        assert digest is not None
        graph = LineageGraph(f"artifact:{digest}")
        producer = conn.execute(select(pipeline_step_runs).where(pipeline_step_runs.c.output_digest == digest)
                                .order_by(pipeline_step_runs.c.started).limit(1)).first()
        if producer is not None:
            _walk_up(conn, graph, producer)
        else:
            graph.add(_artifact_node(digest, None))
        _walk_down(conn, graph, digest)
        return graph


def _looks_like_id(ref: str) -> bool:
    return len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref.lower())


def _dataset_version(data: Any, ref: str) -> tuple[str, str] | None:
    """(version id, label) when ``ref`` names a dataset version the data part knows, else None."""
    if data is None or not getattr(data, "available", False):
        return None
    try:
        version: tuple[str, str] = data.resolve(ref)
        return version
    except Exception:
        return None


def _dataset_lineage(db: Any, data: Any, version_id: str, label: str) -> LineageGraph:
    """A dataset version and everything that read it: pipeline runs (and what their steps made), tracking runs."""
    focus = f"dataset:{version_id}"
    graph = LineageGraph(focus)
    graph.add(LineageNode(focus, "dataset", label, {"version id": version_id}))
    uses = data.uses(version_id)
    pipeline_run_ids = [cid for ctype, cid in uses if ctype == "pipeline_run"]
    with db.read() as conn:
        runs = {r.id: r for r in conn.execute(select(pipeline_runs)
                                              .where(pipeline_runs.c.id.in_(pipeline_run_ids)))} if uses else {}
        for rid in pipeline_run_ids:
            run = runs.get(rid)
            if run is None:
                continue
            node_id = f"run:{rid}"
            graph.add(LineageNode(node_id, "run", f"{run.pipeline} run {rid[-8:]}",
                                  {"target": run.target, "status": run.status, "params": run.params}))
            graph.link(focus, node_id, "read by")
            loaded = conn.execute(select(pipeline_step_runs).where(
                pipeline_step_runs.c.pipeline_run_id == rid, pipeline_step_runs.c.func.like("dataset:%"))).all()
            for row in loaded:
                if (row.key_parts or {}).get("dataset_version") != version_id or not row.output_digest:
                    continue
                graph.add(_artifact_node(row.output_digest, row.materializer))
                graph.link(focus, f"artifact:{row.output_digest}", "loaded as")
                _walk_down(conn, graph, row.output_digest)
    for ctype, cid in uses:
        if ctype == "pipeline_run" or cid in runs:
            continue  # a pipeline run is also a tracking run under the same id
        node_id = f"{ctype}:{cid}"
        graph.add(LineageNode(node_id, "run" if ctype == "run" else ctype, f"{ctype} {cid[-8:]}", {"id": cid}))
        graph.link(focus, node_id, "read by")
    return graph


def _walk_up(conn: Any, graph: LineageGraph, row: Any) -> None:
    stack = [row]
    while stack and len(graph.nodes) < MAX_NODES:
        r = stack.pop()
        node = _step_node(r)
        if node.id in graph.nodes:
            continue
        graph.add(node)
        if r.output_digest:
            graph.add(_artifact_node(r.output_digest, r.materializer))
            graph.link(node.id, f"artifact:{r.output_digest}", "output")
        for inp in conn.execute(select(pipeline_step_inputs).where(pipeline_step_inputs.c.step_run_id == r.id)):
            graph.add(_artifact_node(inp.digest, inp.materializer))
            graph.link(f"artifact:{inp.digest}", node.id, inp.arg)
            producers = conn.execute(select(pipeline_step_runs).where(
                pipeline_step_runs.c.pipeline_run_id == r.pipeline_run_id,
                pipeline_step_runs.c.output_digest == inp.digest)).all()
            stack.extend(producers)  # a step that passes its input through shares the digest


def _walk_down(conn: Any, graph: LineageGraph, digest: str, exclude_run: str | None = None) -> None:
    stack = [digest]
    seen: set[str] = set()
    while stack and len(graph.nodes) < MAX_NODES:
        d = stack.pop()
        if d in seen:
            continue
        seen.add(d)
        graph.add(_artifact_node(d, None))
        consumers = conn.execute(
            select(pipeline_step_runs).join(pipeline_step_inputs,
                                            pipeline_step_inputs.c.step_run_id == pipeline_step_runs.c.id)
            .where(pipeline_step_inputs.c.digest == d)).all()
        for c in consumers:
            if exclude_run and c.pipeline_run_id == exclude_run:
                continue
            node = _step_node(c)
            graph.add(node)
            graph.link(f"artifact:{d}", node.id, "input")
            if c.output_digest:
                graph.add(_artifact_node(c.output_digest, c.materializer))
                graph.link(node.id, f"artifact:{c.output_digest}", "output")
                stack.append(c.output_digest)


# -- rendering ---------------------------------------------------------------------------------

def _describe(node: LineageNode) -> str:
    if node.kind == "step":
        params = node.details.get("params") or {}
        p = ", ".join(f"{k}={v}" for k, v in params.items())
        git = f" git {node.details['git']}" if node.details.get("git") else ""
        return (f"step {node.label} [{node.details.get('status')}] code {str(node.details.get('code'))[:12]}{git}"
                + (f" params({p})" if p else ""))
    if node.kind == "dataset":
        return f"dataset {node.label}"
    if node.kind == "artifact":
        return f"artifact {node.id.split(':', 1)[1][:16]}… ({node.details.get('materializer')})"
    return f"{node.kind} {node.label}"


def render_text(graph: LineageGraph) -> str:
    """Upstream as an indented tree ending at the focus, then everything downstream."""
    lines = [f"Lineage of {_describe(graph.nodes[graph.focus])}" if graph.focus in graph.nodes
             else f"Lineage of {graph.focus}"]
    lines.append("Upstream:")

    def up(node_id: str, depth: int, seen: set[str]) -> None:
        for parent in graph.upstream_of(node_id):
            if parent in seen:
                continue
            seen.add(parent)
            lines.append("  " * depth + "<- " + _describe(graph.nodes[parent]))
            up(parent, depth + 1, seen)

    up(graph.focus, 1, set())
    if len(lines) == 2:
        lines.append("  (nothing recorded)")
    lines.append("Downstream:")
    n = len(lines)

    def down(node_id: str, depth: int, seen: set[str]) -> None:
        for child in graph.downstream_of(node_id):
            if child in seen or child == graph.focus:
                continue
            seen.add(child)
            lines.append("  " * depth + "-> " + _describe(graph.nodes[child]))
            down(child, depth + 1, seen)

    down(graph.focus, 1, set())
    if len(lines) == n:
        lines.append("  (nothing uses it yet)")
    return "\n".join(lines)


_COLORS = {"dataset": "#cfe8ff", "step": "#e2f5d8", "artifact": "#fff2cc", "run": "#f0d9ff"}


def render_html(title: str, nodes: dict[str, LineageNode], edges: list[tuple[str, str, str]]) -> str:
    """A self-contained HTML page with an SVG layered graph (no network, no JavaScript libraries)."""
    depth: dict[str, int] = {}
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b, _ in edges:
        if a in nodes and b in nodes:
            parents[b].append(a)

    def level(n: str, trail: frozenset[str] = frozenset()) -> int:
        if n in depth:
            return depth[n]
        if n in trail:
            return 0
        d = 1 + max((level(p, trail | {n}) for p in parents[n]), default=-1)
        depth[n] = d
        return d

    for n in nodes:
        level(n)
    columns: dict[int, list[str]] = {}
    for n, d in sorted(depth.items(), key=lambda kv: (kv[1], nodes[kv[0]].label)):
        columns.setdefault(d, []).append(n)
    w, h, gx, gy = 210, 44, 60, 22
    pos = {n: (20 + d * (w + gx), 20 + i * (h + gy)) for d, col in columns.items() for i, n in enumerate(col)}
    width = 40 + (max(columns, default=0) + 1) * (w + gx)
    height = 40 + max((len(c) for c in columns.values()), default=1) * (h + gy)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             'font-size="12"><defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
             'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for a, b, label in edges:
        if a not in pos or b not in pos:
            continue
        (x1, y1), (x2, y2) = pos[a], pos[b]
        parts.append(f'<line x1="{x1 + w}" y1="{y1 + h / 2}" x2="{x2}" y2="{y2 + h / 2}" stroke="#555" '
                     f'marker-end="url(#a)"><title>{html.escape(label)}</title></line>')
    for n, (x, y) in pos.items():
        node = nodes[n]
        tip = html.escape("\n".join(f"{k}: {v}" for k, v in node.details.items()))
        parts.append(f'<g><title>{tip}</title><rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" '
                     f'fill="{_COLORS.get(node.kind, "#eee")}" stroke="#333"/>'
                     f'<text x="{x + 8}" y="{y + 18}" font-weight="bold">{html.escape(node.kind)}</text>'
                     f'<text x="{x + 8}" y="{y + 34}">{html.escape(node.label[:30])}</text></g>')
    parts.append("</svg>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title></head>"
            "<body style='font-family:sans-serif'><h2>" + html.escape(title) + "</h2>"
            "<p>Hover a box for its details (code hash, params, status).</p>" + "".join(parts) + "</body></html>")


def render_dot(nodes: dict[str, LineageNode], edges: list[tuple[str, str, str]]) -> str:
    lines = ["digraph lineage {", "  rankdir=LR; node [shape=box, style=rounded];"]
    for n, node in nodes.items():
        lines.append(f'  "{n}" [label="{node.kind}\\n{node.label}"];')
    for a, b, label in edges:
        lines.append(f'  "{a}" -> "{b}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines)
