"""Pipelines with the real data and tracking parts, on SQLite and PostgreSQL: runs, nested runs, lineage, triggers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.integration.pipelines_helpers import write_module
from typer.testing import CliRunner

import loopml
from loopml.cli.main import app
from loopml.errors import StepFailedError
from loopml.workspace import Workspace

FLOW = """
import sys
import time

import loopml
from loopml.sdk.pipelines import dataset, log_metrics

@loopml.step
def featurize(df, scale: float = 2.0):
    print(f"featurizing {len(df)} rows")
    print("a warning on stderr", file=sys.stderr)
    time.sleep(0.2)
    return df * scale

@loopml.step
def train(feats, lr: float = 0.1):
    log_metrics(loss=1.0 - lr, rows=len(feats))
    return {"total": float(feats.to_numpy().sum()), "lr": lr}

@loopml.step
def check(model, fail: bool = False):
    if fail:
        print("checking before the failure")
        raise ValueError("the model is not good enough")
    return model["total"] > 0

@loopml.pipeline
def training(data: str = "iris", fail: bool = False):
    check(train(featurize(dataset(data))), fail)
"""


@pytest.fixture
def ws(db_url: str, tmp_path: Path) -> Iterator[Workspace]:
    """A workspace whose metadata lives on each backend (SQLite file, PostgreSQL database)."""
    w = Workspace.init(tmp_path / "ws", db_url=db_url)
    yield w
    w.close()


def _save(ws: Workspace, rows: int) -> Any:
    return loopml.data.save(pd.DataFrame({"x": list(range(1, rows + 1))}), "iris", workspace=ws.settings.root)


def _cli(ws: Workspace, *args: str) -> str:
    result = CliRunner().invoke(app, ["-w", str(ws.settings.root), *args])
    assert result.exit_code == 0, result.output
    return str(result.output)


def test_pipeline_run_is_a_tracking_run_with_nested_step_runs(ws: Workspace, tmp_path: Path) -> None:
    v1 = _save(ws, 3)
    mod = write_module(tmp_path / "proj", FLOW)
    run = ws.pipelines.run(f"{mod}:training", params={"featurize.scale": 3, "train.lr": 0.25})

    parent = ws.tracking.get_run(run.id)
    assert run.tracking_run_id == run.id
    assert parent.experiment == "pipeline:training" and parent.status == "FINISHED" and parent.parent_id is None
    assert parent.params == {"featurize.scale": "3", "train.lr": "0.25"}
    assert parent.tags["loopml.dataset.iris"] == v1.id and parent.tags["loopml.target"] == f"{mod}:training"
    kids = ws.tracking.search_runs(experiments=["pipeline:training"])
    kids = [r for r in kids if r.parent_id == run.id]
    assert sorted(r.name for r in kids) == ["check", "dataset:iris", "featurize", "train"]
    by = {r.name: r for r in kids}
    steps = {s.name: s for s in run.steps}
    for name, tr in by.items():
        s = steps[name]
        assert tr.id == s.id == s.tracking_run_id
        assert tr.status == "FINISHED" and tr.tags["loopml.status"] == "FINISHED"
        assert tr.tags["loopml.cached"] == "false" and tr.tags["loopml.output"] == s.output_digest
    assert by["featurize"].params == {"scale": "3"} and by["train"].params == {"lr": "0.25"}
    assert by["train"].metrics["loss"] == pytest.approx(0.75) and by["train"].metrics["rows"] == 3
    # timings: the nested run spans the step itself (opened when it started, closed when it ended)
    f, ft = steps["featurize"], by["featurize"]
    assert ft.metrics["duration_s"] >= 0.2
    assert ft.end_time is not None and ft.end_time - ft.start_time >= 0.2
    assert abs(ft.start_time - (f.started or 0)) < 0.1 and abs(ft.end_time - (f.ended or 0)) < 0.1
    assert parent.start_time <= ft.start_time and ft.end_time <= (parent.end_time or 0)
    # captured stdout/stderr are artifacts of the step's run
    arts = {a["name"]: a for a in ws.tracking.list_artifacts(ft.id)}
    assert ws.objects.read_bytes(arts["stdout.txt"]["digest"]) == b"featurizing 3 rows\n"
    assert ws.objects.read_bytes(arts["stderr.txt"]["digest"]) == b"a warning on stderr\n"

    # a second run: every step cached, still one nested run each, marked cached
    again = ws.pipelines.run(f"{mod}:training", params={"featurize.scale": 3, "train.lr": 0.25})
    cached = [ws.tracking.get_run(s.tracking_run_id or "") for s in again.steps]
    assert {r.tags["loopml.cached"] for r in cached} == {"true"} and {r.parent_id for r in cached} == {again.id}


def test_a_failing_step_is_a_failed_nested_run_with_its_error_and_output(ws: Workspace, tmp_path: Path) -> None:
    _save(ws, 3)
    mod = write_module(tmp_path / "proj", FLOW)
    with pytest.raises(StepFailedError) as err:
        ws.pipelines.run(f"{mod}:training", params={"fail": True})
    run_id = err.value.run_id  # type: ignore[attr-defined]
    parent = ws.tracking.get_run(run_id)
    assert parent.status == "FAILED" and "not good enough" in (parent.error or "")
    failed = ws.tracking.get_run(ws.pipelines.step_run(run_id, "check").id)
    assert failed.status == "FAILED" and failed.parent_id == run_id
    assert "ValueError: the model is not good enough" in (failed.error or "")
    assert "loopml/services" not in (failed.error or "")  # the user's frames, not the framework's
    arts = {a["name"]: a["digest"] for a in ws.tracking.list_artifacts(failed.id)}
    assert ws.objects.read_bytes(arts["stdout.txt"]) == b"checking before the failure\n"


def test_dataset_use_is_recorded_by_the_data_part_and_shown_by_lineage(ws: Workspace, tmp_path: Path) -> None:
    v1 = _save(ws, 3)
    mod = write_module(tmp_path / "proj", FLOW)
    run = ws.pipelines.run(f"{mod}:training", params={"featurize.scale": 2.5})
    # "run X read dataset version V", recorded through DataService.record_use
    uses = {(u.consumer_type, u.consumer_id) for u in ws.data.consumers_of(v1.id)}
    assert uses == {("pipeline_run", run.id), ("run", run.id)}
    assert [v.id for v in ws.data.inputs_of("run", run.id)] == [v1.id]
    steps = {s.name: s for s in run.steps}
    assert steps["dataset:iris"].func == f"dataset:{v1.label}"

    # upstream of a step output: the dataset version, the step with its params; downstream: who used it
    out = _cli(ws, "lineage", (steps["featurize"].output_digest or "")[:16])
    up, down = out.split("Downstream:")
    assert f"dataset {v1.label}" in up and "step featurize" in up and "params(scale=2.5)" in up
    assert "step train" in down and "step check" in down and "dataset" not in down

    # the dataset version itself: which pipeline runs read it and what their steps made of it
    out = _cli(ws, "lineage", v1.label)
    assert out.startswith(f"Lineage of dataset {v1.label}")
    down = out.split("Downstream:")[1]
    assert f"training run {run.id[-8:]}" in down and "step featurize" in down and "step check" in down
    html = tmp_path / "lineage.html"
    _cli(ws, "lineage", v1.id, "--html", str(html))
    assert "featurize" in html.read_text() and v1.label in html.read_text()

    # a plain tracking run that read the same version shows up downstream too
    other = ws.tracking.create_run("analysis")
    ws.tracking.use_dataset(other, v1.label)
    assert f"run {other[-8:]}" in _cli(ws, "lineage", "iris@v1").split("Downstream:")[1]


def test_a_new_dataset_version_fires_the_trigger_once(ws: Workspace, tmp_path: Path) -> None:
    v1 = _save(ws, 3)
    mod = write_module(tmp_path / "proj", FLOW)
    _cli(ws, "trigger", "add", "retrain", "--pipeline", f"{mod}:training", "--on-dataset", "iris",
         "--pass-as", "data")
    assert ws.pipelines.tick() == []  # the version present when the trigger was added does not fire
    v2 = _save(ws, 5)
    assert v2.id != v1.id and v2.version == 2
    fired = ws.pipelines.tick()
    assert [(what, status) for what, _, status in fired] == [("trigger retrain", "FINISHED")]
    run = ws.pipelines.get_run(fired[0][1] or "")
    assert run.params == {"data": v2.label}
    steps = {s.name: s for s in run.steps}
    assert steps["dataset:iris"].func == f"dataset:{v2.label}" and steps["featurize"].status == "FINISHED"
    assert ("pipeline_run", run.id) in {(u.consumer_type, u.consumer_id) for u in ws.data.consumers_of(v2.id)}
    assert ws.tracking.get_run(run.id).tags["loopml.dataset.iris"] == v2.id
    assert ws.pipelines.tick() == []  # once per version
    assert _cli(ws, "scheduler", "--once").strip() == ""  # the CLI scheduler agrees: nothing is due
    _save(ws, 3)  # identical content to v1: the data part returns v1, no new version, no firing
    assert ws.pipelines.tick() == []
