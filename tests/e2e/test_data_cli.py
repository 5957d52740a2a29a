"""`loopml data …` as a user runs it: output, JSON, exit codes for failures and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from loopml.cli.main import app


@pytest.fixture
def ws_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(app, ["init"]).exit_code == 0
    return tmp_path


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def test_add_show_validate_diff_checkout(ws_dir: Path) -> None:
    pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "a"]}).to_csv(ws_dir / "t.csv", index=False)
    code, out = _run("data", "add", "t.csv", "--name", "t", "--tag", "first")
    assert code == 0 and "t@v1 added" in out
    code, out = _run("data", "add", "t.csv", "--name", "t")
    assert code == 0 and "unchanged" in out
    code, out = _run("data", "show", "t@first", "--json")
    shown = json.loads(out)
    assert shown["stats"]["rows"] == 3 and shown["kind"] == "table"
    (ws_dir / "rules.yaml").write_text("columns:\n  x: {max: 2}\n")
    code, out = _run("data", "validate", "t@v1", "--rules", "rules.yaml")
    assert code == 1 and "FAIL" in out and "x <= 2" in out
    (ws_dir / "ok.yaml").write_text("columns:\n  x: {max: 5}\nrows: {min: 1}\n")
    code, out = _run("data", "validate", "t@v1", "--rules", "ok.yaml")
    assert code == 0 and "PASS" in out
    pd.DataFrame({"x": [1, 2, 3, 4]}).to_csv(ws_dir / "t.csv", index=False)
    code, out = _run("data", "status", "t.csv", "--name", "t")
    assert code == 0 and "modified" in out
    _run("data", "add", "t.csv", "--name", "t")
    code, out = _run("data", "diff", "t@v1", "t@v2", "--json")
    d = json.loads(out)
    assert d["rows"] == [3, 4] and d["modified"] == ["t.csv"]
    code, out = _run("data", "checkout", "t@v1", "old")
    assert code == 0 and (ws_dir / "old" / "t.csv").read_text().startswith("x,y")


def _proc(cwd: Path, *args: str) -> tuple[int, str]:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "loopml", *args], cwd=cwd, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def test_bad_input_is_one_line_and_nonzero(ws_dir: Path) -> None:
    code, out = _proc(ws_dir, "data", "add", "missing-dir", "--name", "m")
    assert code == 2 and "missing-dir" in out and "Traceback" not in out
    code, out = _proc(ws_dir, "data", "show", "nothing@v3")
    assert code != 0 and "nothing@v3" in out
    (ws_dir / "broken.csv").write_bytes(b'a,b\n1,"2\n')
    code, out = _proc(ws_dir, "data", "add", "broken.csv", "--name", "b")
    assert code == 2 and "broken.csv" in out
    code, out = _proc(ws_dir, "data", "checkout", "x@v1", "out", "--link", "teleport")
    assert code == 2 and "teleport" in out


def test_sdk_save_and_get(ws_dir: Path) -> None:
    import loopml

    v = loopml.data.save(pd.DataFrame({"a": [1, 2]}), "frame")
    assert v.label == "frame@v1"
    assert list(loopml.data.get("frame@v1")["a"]) == [1, 2]
    assert loopml.data.get("frame", as_path=True).suffix == ".parquet"
    (ws_dir / "dir").mkdir()
    (ws_dir / "dir" / "f.txt").write_text("hi")
    loopml.data.add(ws_dir / "dir", "files")
    assert (loopml.data.get("files@v1") / "f.txt").read_text() == "hi"


def test_every_data_command_has_a_python_function(ws_dir: Path, tmp_path: Path) -> None:
    import loopml

    d = ws_dir / "files"
    d.mkdir()
    (d / "a.txt").write_text("a")
    v1 = loopml.data.add(d, "files")
    assert loopml.data.status(d).hashed_files == 0 and loopml.data.status(d, "files").base == "files@v1"
    (d / "b.txt").write_text("b")
    assert loopml.data.status(d).added == ["b.txt"]
    v2 = loopml.data.add(d)
    assert loopml.data.diff(v1.label, v2.label).added == ["b.txt"]
    assert "gold" in loopml.data.tag("files@v1", "gold").tags and loopml.data.show("files@gold").id == v1.id
    loopml.data.save(pd.DataFrame({"x": [1, 2, None]}), "t")
    report = loopml.data.validate("t@v1", {"columns": {"x": {"not_null": True}}})
    assert not report.passed
    ws = loopml.Workspace.open(ws_dir)
    ws.data.add_remote("disk", (tmp_path / "remote").as_uri())
    ws.close()
    assert loopml.data.push(["files"]).objects == 2
    assert loopml.data.pull(["files"]).skipped == 2
    assert loopml.data.gc(dry_run=True, grace_seconds=0) == (0, 0)


def test_a_command_closes_its_databases_before_the_process_ends(ws_dir: Path) -> None:
    # The CLI skips the interpreter's exit-time collection (gc.freeze); the workspace is closed when the
    # command ends instead, so every SQLite file is checkpointed and no write-ahead log is left behind.
    from tests.helpers import random_files

    random_files(ws_dir / "d", [3000 + i for i in range(40)])
    code, out = _proc(ws_dir, "data", "add", "d", "--name", "d")
    assert code == 0, out
    dot = ws_dir / ".loopml"
    assert (dot / "objects" / "packs" / "index.sqlite").is_file() and (dot / "hash-state.db").is_file()
    assert sorted(p.name for p in dot.rglob("*-wal")) == []
    code, out = _proc(ws_dir, "data", "status", "d", "--name", "d")
    assert code == 0 and "unchanged" in out
