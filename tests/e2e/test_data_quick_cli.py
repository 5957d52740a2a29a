"""The quick `data status` / unchanged `data add` path gives exactly what the full CLI gives, or steps aside."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml.cli.data_quick import quick_data_command
from loopml.cli.main import app


@pytest.fixture
def ws_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOOPML_WORKSPACE", raising=False)
    monkeypatch.delenv("LOOPML_DB_URL", raising=False)
    assert CliRunner().invoke(app, ["init"]).exit_code == 0
    d = tmp_path / "data"
    for i in range(30):
        (d / f"sub{i % 3}").mkdir(parents=True, exist_ok=True)
        (d / f"sub{i % 3}" / f"f{i}.txt").write_text(f"row {i}\n" * (i + 1))
    (tmp_path / "t.csv").write_text("x,y\n1,a\n2,b\n")
    return tmp_path


def full(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def quick(*args: str) -> str | None:
    return quick_data_command(list(args), env={})


@pytest.mark.parametrize("args", [
    ("data", "status", "data", "--name", "d"),
    ("--quiet", "data", "status", "data", "--name", "d", "--json"),
    ("data", "add", "data", "--name", "d"),
    ("-q", "data", "add", "--json", "data", "-n", "d"),
    ("data", "add", "t.csv", "--name", "t", "--json"),
    ("data", "status", "t.csv", "--name=t"),
    ("data", "add", "data/"),
])
def test_quick_output_is_identical_to_the_full_cli(ws_dir: Path, args: tuple[str, ...]) -> None:
    full("data", "add", "data", "--name", "d", "--tag", "first", "-m", "hello")
    full("data", "add", "data")
    full("data", "add", "t.csv", "--name", "t")
    expected = full(*args)
    assert "unchanged" in expected or json.loads(expected)["clean"]
    assert quick(*args) == expected


def test_quick_path_steps_aside_when_anything_changed(ws_dir: Path) -> None:
    full("data", "add", "data", "--name", "d")
    assert quick("data", "status", "data", "--name", "d") is not None
    (ws_dir / "data" / "sub1" / "f1.txt").write_text("changed, longer than before\n")
    assert quick("data", "status", "data", "--name", "d") is None
    assert quick("data", "add", "data", "--name", "d") is None
    out = full("data", "status", "data", "--name", "d", "--json")
    assert json.loads(out)["modified"] == ["sub1/f1.txt"] and json.loads(out)["hashed_files"] == 1
    # The full status recorded the new state; the content still differs from v1, so no quick answer.
    assert quick("data", "status", "data", "--name", "d") is None
    (ws_dir / "data" / "new.txt").write_text("new\n")
    assert quick("data", "add", "data", "--name", "d") is None
    assert "d@v2 added" in full("data", "add", "data", "--name", "d")
    assert quick("data", "add", "data", "--name", "d") == full("data", "add", "data", "--name", "d")
    os.unlink(ws_dir / "data" / "new.txt")
    assert quick("data", "status", "data", "--name", "d") is None


@pytest.mark.parametrize("args", [
    ("data", "add", "data", "--name", "d", "--tag", "x"),
    ("data", "add", "data", "--name", "d", "-m", "msg"),
    ("data", "status", "data", "--name", "d", "--help"),
    ("--debug", "data", "status", "data", "--name", "d"),
    ("data", "status", "data", "--name", "other"),
    ("data", "status", "data", "--name", "bad name"),
    ("data", "status", "missing-dir", "--name", "d"),
    ("data", "ls"),
    ("data", "status"),
])
def test_quick_path_leaves_other_forms_to_the_full_cli(ws_dir: Path, args: tuple[str, ...]) -> None:
    full("data", "add", "data", "--name", "d")
    full("data", "status", "data", "--name", "d")
    assert quick(*args) is None


def test_quick_path_needs_embedded_sqlite_at_the_head_revision(ws_dir: Path) -> None:
    full("data", "add", "data", "--name", "d")
    args = ("data", "status", "data", "--name", "d")
    assert quick(*args) is not None
    assert quick_data_command(list(args), env={"LOOPML_DB_URL": "postgresql+psycopg://u@127.0.0.1:1/x"}) is None
    conn = sqlite3.connect(ws_dir / ".loopml" / "loopml.db")
    (rev,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    conn.execute("UPDATE alembic_version SET version_num = '0000'")
    conn.commit()
    assert quick(*args) is None
    conn.execute("UPDATE alembic_version SET version_num = ?", (rev,))
    conn.commit()
    conn.close()
    assert quick(*args) is not None
    (ws_dir / ".loopml" / "hash-state.db").unlink()
    assert quick(*args) is None  # no record of the last hash: the full path rehashes
    assert "hashed 30 files" in full(*args)
    assert quick(*args) is not None


def test_console_entry_answers_quickly_and_falls_back(ws_dir: Path) -> None:
    """The installed entry (python -m loopml) prints the same through either path, without Typer when quick."""
    def proc(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
        return subprocess.run([sys.executable, "-X", "importtime", "-m", "loopml", *args], cwd=ws_dir, env=env,
                              capture_output=True, text=True)

    first = proc("data", "add", "data", "--name", "d")
    assert first.returncode == 0 and "d@v1 added" in first.stdout and "sqlalchemy" in first.stderr
    again = proc("data", "add", "data", "--name", "d")
    assert again.returncode == 0 and "d@v1 unchanged" in again.stdout
    assert "typer" not in again.stderr and "sqlalchemy" not in again.stderr
    st = proc("data", "status", "data", "--name", "d", "--json")
    assert st.returncode == 0 and json.loads(st.stdout)["clean"] and "sqlalchemy" not in st.stderr
    missing = proc("data", "status", "nope", "--name", "d")
    assert missing.returncode != 0 and "nope" in missing.stderr and "does not exist" in missing.stderr


@pytest.mark.parametrize("text", [
    '# loopml workspace settings\n[loopml]\nartifacts = ".loopml/objects"\ndb_url = "sqlite:///.loopml/loopml.db"\n',
    '[loopml]\ndb_url = "sqlite:////abs/path/x.db"\n',
    '[loopml]\ndb_url = "sqlite:///a\\"b.db"\n',
    '[loopml]\ndb_url = "sqlite:///a\\\\b.db"\n',
    '[loopml]\ndb_url = \'sqlite:///x.db\'\n',
    'db_url = "sqlite:///x.db"\n',
    '[loopml]\ndb_url="sqlite:///x.db"\n',
    '[other]\nx = "1"\n',
    '',
])
def test_the_simple_config_reader_agrees_with_toml_or_defers(text: str) -> None:
    import tomllib

    from loopml.services.data.quick import _simple_config

    mine = _simple_config(text.encode())
    if mine is not None:
        data = tomllib.loads(text)
        assert mine == data.get("loopml", data)


def test_a_workspace_with_its_own_database_path_is_read_like_the_full_cli(ws_dir: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    other = ws_dir / "elsewhere"
    r = CliRunner().invoke(app, ["init", str(other), "--db-url", "sqlite:///.loopml/custom.db"])
    assert r.exit_code == 0, r.output
    assert (other / ".loopml" / "custom.db").is_file()
    monkeypatch.chdir(other)
    (other / "data").mkdir()
    (other / "data" / "a.txt").write_text("a\n")
    full("data", "add", "data", "--name", "d")
    assert quick("data", "status", "data", "--name", "d") == full("data", "status", "data", "--name", "d")
    monkeypatch.chdir(ws_dir)  # the other workspace, named by --workspace, from outside it
    args = ("-w", str(other), "data", "add", str(other / "data"), "--name", "d", "--json")
    assert quick(*args) == full(*args)
