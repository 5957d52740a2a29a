"""`loopml runs …` as a user runs it: filters, ordering, JSON, compare HTML, deletes, bad filters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml.cli.main import app


@pytest.fixture
def ws_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(app, ["init"]).exit_code == 0
    import loopml

    for i, (model, team) in enumerate([("rf", "a"), ("rf", "b"), ("lr", "a"), ("lr", "c")]):
        with loopml.start_run("churn", name=f"r{i}", params={"model": model, "depth": i},
                              tags={"team": team}) as run:
            for step in range(20):
                run.log_metric("acc", 0.5 + 0.1 * i + 0.001 * step, step=step)
    return tmp_path


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def _ids(out: str) -> list[str]:
    return [r["name"] for r in json.loads(out)]


def test_ls_filters_orders_limits_and_prints_json(ws_dir: Path) -> None:
    code, out = _run("runs", "ls", "--filter", "metrics.acc > 0.6 and (params.model = 'rf' or tags.team in ('c'))",
                     "--order-by", "metrics.acc desc", "--json")
    assert code == 0 and _ids(out) == ["r3", "r1"]
    code, out = _run("runs", "ls", "-e", "churn", "-o", "params.depth asc", "-n", "2", "--json")
    assert _ids(out) == ["r0", "r1"]
    code, out = _run("runs", "ls", "-f", "params.model like 'l%' and status = 'FINISHED'", "--json")
    assert sorted(_ids(out)) == ["r2", "r3"]
    code, out = _run("runs", "ls")
    assert code == 0 and "4 run(s)" in out and "acc" in out
    code, out = _run("runs", "experiments")
    assert code == 0 and "churn" in out


def test_show_compare_and_delete(ws_dir: Path) -> None:
    runs = json.loads(_run("runs", "ls", "-o", "params.depth asc", "--json")[1])
    a, b = runs[0]["id"], runs[1]["id"]
    code, out = _run("runs", "show", a, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["params"] == {"model": "rf", "depth": "0"} and shown["environment"]["python"]
    code, out = _run("runs", "show", a)
    assert code == 0 and "params" in out and "acc" in out
    code, out = _run("runs", "compare", a, b, "--html", "cmp.html")
    assert code == 0 and "depth" in out and "acc" in out
    html = (ws_dir / "cmp.html").read_text()
    assert "plotly" in html.lower() and "acc" in html
    assert _run("runs", "delete", a)[0] == 0
    assert a not in [r["id"] for r in json.loads(_run("runs", "ls", "--json")[1])]
    assert a in [r["id"] for r in json.loads(_run("runs", "ls", "--deleted", "--json")[1])]
    assert _run("runs", "delete", b, "--hard", "--yes")[0] == 0
    assert b not in [r["id"] for r in json.loads(_run("runs", "ls", "--deleted", "--json")[1])]


def _proc(cwd: Path, *args: str) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-m", "loopml", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def test_bad_filters_and_unknown_runs_are_one_clear_line(ws_dir: Path) -> None:
    code, out = _proc(ws_dir, "runs", "ls", "--filter", "metrics.acc >> 0.9")
    assert code == 2 and "position" in out and "Traceback" not in out
    code, out = _proc(ws_dir, "runs", "ls", "--filter", "params.x = 'a'; DROP TABLE runs")
    assert code == 2 and "Traceback" not in out
    assert len(json.loads(_proc(ws_dir, "runs", "ls", "--json")[1])) == 4  # the table is still there
    code, out = _proc(ws_dir, "runs", "show", "no-such-run")
    assert code != 0 and "no-such-run" in out and "Traceback" not in out
