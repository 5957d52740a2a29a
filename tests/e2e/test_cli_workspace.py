"""`loopml init`, `status`, `doctor` and error handling, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def loopml(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "loopml", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_init_status_doctor(tmp_path: Path) -> None:
    r = loopml("init", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Initialized loopml workspace" in r.stdout
    r = loopml("status", cwd=tmp_path)
    assert r.returncode == 0 and "schema" in r.stdout and "(current)" in r.stdout
    info = json.loads(loopml("status", "--json", cwd=tmp_path).stdout)
    assert info["database"].endswith(".loopml/loopml.db") and info["objects"] == 0
    r = loopml("doctor", "--verify", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK")


def test_status_hides_the_database_password(tmp_path: Path, postgres_server) -> None:  # type: ignore[no-untyped-def]
    postgres_server.create_database("pwtest")
    url = f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{postgres_server.port}/pwtest"
    assert loopml("init", "--db-url", url, cwd=tmp_path).returncode == 0
    r = loopml("status", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "hunter2" not in r.stdout and "***" in r.stdout


def test_doctor_lists_a_corrupt_object_and_fails(tmp_path: Path) -> None:
    assert loopml("init", cwd=tmp_path).returncode == 0
    obj_dir = tmp_path / ".loopml" / "objects" / "ab"
    obj_dir.mkdir(parents=True)
    (obj_dir / ("c" * 62)).write_bytes(b"does not hash to its name")
    r = loopml("doctor", "--verify", cwd=tmp_path)
    assert r.returncode == 1
    assert "CORRUPT" in r.stdout and "ab" + "c" * 62 in r.stdout


def test_user_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    r = loopml("status", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: No loopml workspace")
    assert "Traceback" not in r.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = loopml("--debug", "status", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_env_overrides_config_in_the_cli(tmp_path: Path) -> None:
    assert loopml("init", cwd=tmp_path).returncode == 0
    r = loopml("status", "--json", cwd=tmp_path, env={"LOOPML_ARTIFACTS": str(tmp_path / "alt")})
    info = json.loads(r.stdout)
    assert info["artifacts"] == str(tmp_path / "alt")
    assert info["sources"]["artifacts"] == "env LOOPML_ARTIFACTS"


def test_workspace_option_and_nested_directory(tmp_path: Path) -> None:
    assert loopml("init", str(tmp_path / "ws"), cwd=tmp_path).returncode == 0
    nested = tmp_path / "ws" / "src" / "deep"
    nested.mkdir(parents=True)
    assert loopml("status", cwd=nested).returncode == 0
    assert loopml("-w", str(tmp_path / "ws"), "status", cwd=tmp_path).returncode == 0


def test_help_explains_every_command(tmp_path: Path) -> None:
    r = loopml("--help", cwd=tmp_path)
    assert r.returncode == 0
    for command in ("init", "status", "doctor", "data", "runs", "pipeline", "server"):
        assert command in r.stdout
    from loopml import __version__

    r = loopml("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"loopml {__version__}"


def test_doctor_lists_an_object_a_dataset_needs_but_the_store_lost(tmp_path: Path) -> None:
    assert loopml("init", cwd=tmp_path).returncode == 0
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("alpha\n")
    (tmp_path / "d" / "b.txt").write_text("beta\n")
    r = loopml("data", "add", "d", "--name", "docs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    from loopml.stores.artifacts.hashing import hash_bytes

    lost = hash_bytes(b"beta\n")
    # Small objects live in pack files: the disk loses the pack that holds this one.
    packs = list((tmp_path / ".loopml" / "objects" / "packs").glob("*.pack"))
    assert len(packs) == 1
    packs[0].unlink()
    r = loopml("doctor", "--verify", cwd=tmp_path)
    assert r.returncode == 1
    assert "MISSING" in r.stdout and lost in r.stdout
