"""The workspace on real stores: init, open, settings, migrations under concurrency, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loopml.errors import (
    ArtifactStoreError,
    ConfigError,
    DatabaseUnavailableError,
    SchemaVersionError,
    WorkspaceExistsError,
    WorkspaceNotFoundError,
)
from loopml.stores.metadata.revisions import head_revision
from loopml.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


def test_init_creates_config_database_and_object_store(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "proj")
    d = tmp_path / "proj" / ".loopml"
    assert (d / "config.toml").is_file() and (d / "loopml.db").is_file() and (d / "objects").is_dir()
    assert ws.db.schema_version() == head_revision()
    info = ws.status()
    assert info["schema_version"] == head_revision() and info["objects"] == 0
    ws.close()


def test_init_refuses_to_overwrite_an_existing_workspace(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path)
    ref = ws.objects.put_bytes(b"keep me")
    ws.close()
    with pytest.raises(WorkspaceExistsError, match=str(tmp_path / ".loopml")):
        Workspace.init(tmp_path)
    with Workspace.open(tmp_path) as again:
        assert again.objects.read_bytes(ref.digest) == b"keep me"


def test_open_finds_the_nearest_workspace_above(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Workspace.init(tmp_path).close()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    with Workspace.open() as ws:
        assert ws.settings.root == tmp_path.resolve()


def test_open_without_a_workspace_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceNotFoundError, match="loopml init"):
        Workspace.open(tmp_path)


def test_unwritable_directory_gives_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permissions; a path under a regular file is unwritable for everyone
        target = tmp_path / "file"
        target.write_text("x")
        target = target / "ws"
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        target = ro / "ws"
    with pytest.raises(ConfigError, match="Cannot create the workspace directory"):
        Workspace.init(target)


def test_corrupted_database_file_is_named_and_left_untouched(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    db_file = tmp_path / ".loopml" / "loopml.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    garbage = b"this is not a database" * 100
    db_file.write_bytes(garbage)
    ws = Workspace.open(tmp_path)
    with pytest.raises(DatabaseUnavailableError, match="loopml.db"):
        _ = ws.db
    with pytest.raises(DatabaseUnavailableError, match="loopml.db"):
        ws.status()
    assert db_file.read_bytes() == garbage


def test_unreachable_postgres_names_the_url_without_password(tmp_path: Path) -> None:
    from tests.servers import free_port

    url = f"postgresql+psycopg://user:s3cret@127.0.0.1:{free_port()}/nope"
    with pytest.raises(DatabaseUnavailableError) as info:
        Workspace.init(tmp_path, db_url=url)
    assert "127.0.0.1" in str(info.value) and "s3cret" not in str(info.value)
    assert not (tmp_path / ".loopml").exists(), "a failed init leaves nothing behind"


def test_malformed_database_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sqlite:///PATH"):
        Workspace.init(tmp_path, db_url="postgresql+psycopg://u@h:notaport/db")


def test_newer_schema_refuses_to_open(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path)
    from sqlalchemy import text

    with ws.db.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    ws.close()
    with pytest.raises(SchemaVersionError, match="newer than this loopml"):
        _ = Workspace.open(tmp_path).db


def test_workspace_on_postgres_and_s3(tmp_path: Path, postgres_url: str, s3_server, s3_bucket: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LOOPML_DB_URL", postgres_url)
    monkeypatch.setenv("LOOPML_ARTIFACTS", f"s3://{s3_bucket}/loopml")
    monkeypatch.setenv("LOOPML_S3_ENDPOINT_URL", s3_server.endpoint_url)
    ws = Workspace.init(tmp_path)
    ref = ws.objects.put_bytes(b"remote bytes")
    assert ws.objects.read_bytes(ref.digest) == b"remote bytes"
    assert ws.db.display_url.startswith("postgresql+psycopg://postgres@127.0.0.1")
    report = ws.doctor(verify=True)
    assert report.ok and report.objects_checked == 1
    ws.close()


def test_missing_bucket_is_reported(tmp_path: Path, s3_server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LOOPML_ARTIFACTS", "s3://no-such-bucket-here/x")
    monkeypatch.setenv("LOOPML_S3_ENDPOINT_URL", s3_server.endpoint_url)
    with pytest.raises(ArtifactStoreError, match="no-such-bucket-here"):
        Workspace.init(tmp_path)


def test_doctor_verify_finds_a_corrupt_object(workspace: Workspace) -> None:
    ref = workspace.objects.put_bytes(b"good bytes")
    path = workspace.objects.local_path(ref.digest)
    assert path is not None
    path.write_bytes(b"rotten bytes")
    report = workspace.doctor(verify=True)
    assert not report.ok
    assert [d for d, _ in report.corrupt] == [ref.digest]
    assert path.read_bytes() == b"rotten bytes", "doctor reports; it never deletes"


_OPEN_NEW = """
import sys
from loopml.stores.metadata.database import Database
db = Database.open(sys.argv[1])
print(db.schema_version())
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_many_processes_opening_a_new_database_at_once(backend: str, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_NEW, url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO) for _ in range(8)]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == head_revision()
    from loopml.stores.metadata.database import Database

    db = Database.open(url)
    with db.read() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    db.dispose()


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from loopml.stores.artifacts import ContentStore, LocalBackend

class Slow:
    def __iter__(self):
        for _ in range(10_000):
            yield b"x" * 65536
            time.sleep(0.001)

store = ContentStore(LocalBackend(sys.argv[1]))
store.ensure()
print("writing", flush=True)
store.put_stream(Slow())
"""


def test_kill_during_write_leaves_no_partial_object(tmp_path: Path) -> None:
    import signal
    import time

    objects = tmp_path / "objects"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(objects)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    from loopml.stores.artifacts import ContentStore, LocalBackend

    store = ContentStore(LocalBackend(objects))
    assert list(store.iter_objects()) == [], "nothing appears under a final name"
    assert store.backend.count_temp_files() == 1  # type: ignore[attr-defined]
