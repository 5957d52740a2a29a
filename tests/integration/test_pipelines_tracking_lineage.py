"""Pipeline runs recorded as tracking runs (nested per step), and lineage as text and HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.pipelines_helpers import write_module

from loopml.services.pipelines import PipelineService
from loopml.services.pipelines.lineage import render_html, render_text

FLOW = """
import loopml
from loopml.sdk.pipelines import log_metrics

@loopml.step
def prepare(n: int = 3):
    print("preparing")
    return list(range(n))

@loopml.step
def train(xs, lr: float = 0.1):
    log_metrics(loss=1.0 - lr)
    return {"w": sum(xs) * lr}

@loopml.step
def evaluate(model):
    return {"score": model["w"]}

@loopml.pipeline
def training(n: int = 3):
    evaluate(train(prepare(n)))
"""


class FakeTracking:
    """Records calls the way TrackingService would be called."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}

    def create_run(self, experiment: str, *, name: str | None = None, parent_id: str | None = None,
                   params: dict[str, str] | None = None, tags: dict[str, str] | None = None,
                   run_id: str | None = None, **_: Any) -> str:
        rid = run_id or f"t{len(self.runs)}"
        self.runs[rid] = {"experiment": experiment, "name": name, "parent": parent_id, "params": params or {},
                          "tags": tags or {}, "metrics": {}, "artifacts": {}, "status": "RUNNING"}
        return rid

    def log_batch(self, run_id: str, *, metrics: Any = (), tags: dict[str, str] | None = None, **_: Any) -> None:
        for m in metrics:
            self.runs[run_id]["metrics"][m.key] = m.value
        self.runs[run_id]["tags"].update(tags or {})

    def log_artifact_bytes(self, run_id: str, data: bytes, name: str) -> None:
        self.runs[run_id]["artifacts"][name] = data.decode()

    def end_run(self, run_id: str, status: Any = "FINISHED", error: str | None = None) -> None:
        self.runs[run_id]["status"] = str(status)


def test_each_step_run_is_a_nested_tracking_run(workspace: Any, tmp_path: Path) -> None:
    tracking = FakeTracking()
    svc = PipelineService(workspace.db, workspace.objects, workspace.settings, tracking=tracking)
    mod = write_module(tmp_path / "proj", FLOW)
    run = svc.run(f"{mod}:training", params={"train.lr": 0.25})
    parent = tracking.runs[run.tracking_run_id]
    assert parent["experiment"] == "pipeline:training" and parent["status"] == "FINISHED"
    children = {r["name"]: r for r in tracking.runs.values() if r["parent"] == run.tracking_run_id}
    assert set(children) == {"prepare", "train", "evaluate"}
    assert children["train"]["params"] == {"lr": "0.25"}
    assert children["train"]["metrics"]["loss"] == 0.75 and "duration_s" in children["train"]["metrics"]
    assert children["prepare"]["artifacts"]["stdout.txt"] == "preparing\n"
    assert children["evaluate"]["tags"]["loopml.cached"] == "false"
    stored = svc.get_run(run.id)
    assert run.tracking_run_id == run.id  # one id for the pipeline run and its tracking run
    assert all(s.tracking_run_id == s.id for s in stored.steps)
    again = svc.run(f"{mod}:training", params={"train.lr": 0.25})
    kids = [r for r in tracking.runs.values() if r["parent"] == again.tracking_run_id]
    assert {r["tags"]["loopml.cached"] for r in kids} == {"true"}


def test_lineage_of_an_artifact_shows_upstream_and_downstream(workspace: Any, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", FLOW)
    run = workspace.pipelines.run(f"{mod}:training", params={"n": 4, "train.lr": 0.5})
    by = {s.name: s for s in run.steps}
    graph = workspace.pipelines.lineage(by["train"].output_digest[:12])
    text = render_text(graph)
    up, down = text.split("Downstream:")
    assert "step train" in up and "params(lr=0.5)" in up and "step prepare" in up and "params(n=4)" in up
    assert "step evaluate" in down
    # the same answer from the step run id and the pipeline run id
    assert "step prepare" in render_text(workspace.pipelines.lineage(by["evaluate"].id))
    assert "step evaluate" in render_text(workspace.pipelines.lineage(run.id))
    page = render_html("lineage", graph.nodes, graph.edges)
    assert page.startswith("<!doctype html>") and "<svg" in page and "train" in page and "http" not in page.split("<svg", 1)[0]


def test_lineage_names_the_git_commit_of_the_pipeline_code(workspace: Any, tmp_path: Path) -> None:
    import subprocess

    proj = tmp_path / "gitproj"
    mod = write_module(proj, FLOW)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=proj, check=True)
    subprocess.run([*git, "add", "."], cwd=proj, check=True)
    subprocess.run([*git, "commit", "-qm", "flow"], cwd=proj, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=proj, capture_output=True, text=True).stdout[:12]
    run = workspace.pipelines.run(f"{mod}:training")
    text = render_text(workspace.pipelines.lineage(run.steps[-1].output_digest))
    assert f"git {head}" in text and "+dirty" not in text


def test_sdk_schedule_trigger_alert_and_lineage(workspace: Any, tmp_path: Path) -> None:
    from loopml.sdk import pipelines as sdk

    mod = write_module(tmp_path / "proj", FLOW)
    root = workspace.settings.root
    run = sdk.run_pipeline(f"{mod}:training", workspace=root)
    assert "step prepare" in sdk.lineage(run.id, workspace=root)
    assert sdk.schedule("nightly", f"{mod}:training", "0 3 * * *", workspace=root).cron == "0 3 * * *"
    sdk.add_trigger("on-drift", f"{mod}:training", on_alert="drift", workspace=root)
    assert [st for _, _, st in sdk.emit_alert("drift", "a1", workspace=root)] == ["FINISHED"]
