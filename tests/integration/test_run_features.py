"""Tracking features against a real workspace: autolog, dataset lineage, environment, figures."""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml.errors import InvalidParameterError


@pytest.fixture
def ws(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(workspace.settings.root)
    return workspace


def _artifact_bytes(ws: Any, run_id: str, name: str) -> bytes:
    arts = {a["name"]: a for a in ws.tracking.list_artifacts(run_id)}
    assert name in arts, sorted(arts)
    with ws.objects.open(arts[name]["digest"]) as f:
        return f.read()


def test_autolog_sklearn_logs_params_metrics_model_and_validation_score(ws: Any) -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.model_selection import GridSearchCV

    import loopml

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + 0.1 * rng.normal(size=200) > 0).astype(int)
    loopml.autolog(experiment="auto")
    try:
        clf = LogisticRegression(C=0.5).fit(X[:150], y[:150])
        val = clf.score(X[150:], y[150:])
        LinearRegression().fit(X, X[:, 0] * 2.0)
        grid = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=3).fit(X, y)
    finally:
        loopml.autolog(disable=True)
    runs = {r.name: r for r in ws.tracking.search_runs(experiments=["auto"])}
    # one run per top-level fit; the grid's inner fits are not runs of their own
    assert sorted(runs) == ["GridSearchCV", "LinearRegression", "LogisticRegression"]
    lr = runs["LogisticRegression"]
    assert lr.params["C"] == "0.5" and lr.tags["loopml.autolog"] == "sklearn"
    assert 0.8 < lr.metrics["training_accuracy"] <= 1.0 and "training_f1" in lr.metrics
    assert lr.metrics["validation_score"] == pytest.approx(val)
    model = pickle.loads(_artifact_bytes(ws, lr.id, "model.pkl"))
    assert np.array_equal(model.predict(X), clf.predict(X))
    assert runs["LinearRegression"].metrics["training_r2"] == pytest.approx(1.0)
    assert runs["GridSearchCV"].metrics["best_score"] == pytest.approx(grid.best_score_)
    # disabled: fits no longer make runs, and the original methods are back
    LogisticRegression().fit(X, y).score(X, y)
    assert len(ws.tracking.search_runs(experiments=["auto"])) == 3
    assert not hasattr(LogisticRegression.fit, "__loopml_original__")


def test_use_dataset_records_lineage_in_the_data_part(ws: Any) -> None:
    import loopml

    version = loopml.data.save(pd.DataFrame({"a": [1, 2, 3]}), "customers")
    with loopml.start_run("lineage") as run:
        vid = run.use_dataset("customers@v1")
    assert vid == version.id
    rec = loopml.get_run(run.id)
    assert rec.tags["loopml.dataset.customers"] == version.id
    uses = ws.data.consumers_of(version.id)
    assert [(u.consumer_type, u.consumer_id) for u in uses] == [("run", run.id)]
    with loopml.start_run("lineage") as run2, pytest.raises(Exception, match="customers@v9"):
        run2.use_dataset("customers@v9")


def test_environment_names_git_commit_dirty_flag_and_command(ws: Any) -> None:
    import loopml
    from loopml.services.tracking.environment import git_state

    root = Path(ws.settings.root)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    (root / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "train.py"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "first"], cwd=root, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    (root / "train.py").write_text("print(2)\n")
    git_state.cache_clear()
    with loopml.start_run("env") as run:
        pass
    env = loopml.get_run(run.id).environment
    assert env["git"]["commit"] == commit and env["git"]["dirty"] is True and env["git"]["diff_hash"]
    assert env["python"] and env["os"] and env["cpu_count"] and "numpy" in env["packages"]
    assert env["command"] and isinstance(env["command"], list)


def test_figures_dicts_and_bad_keys(ws: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    import loopml

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    with loopml.start_run("figs") as run:
        run.log_figure(fig, "curve.png")
        run.log_figure(go.Figure(go.Scatter(y=[3, 1, 2])), "curve.html")
        run.log_dict({"classes": ["a", "b"]}, "meta.json")
        with pytest.raises(InvalidParameterError, match="figure"):
            run.log_figure(object())
        for bad in ("", "a" * 300, "bad key!"):
            with pytest.raises(InvalidParameterError):
                run.log_metric(bad, 1.0)
    assert _artifact_bytes(ws, run.id, "curve.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"plotly" in _artifact_bytes(ws, run.id, "curve.html")
    assert json.loads(_artifact_bytes(ws, run.id, "meta.json")) == {"classes": ["a", "b"]}
    plt.close(fig)
