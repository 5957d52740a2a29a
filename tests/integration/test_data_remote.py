"""Push and pull against the real S3-compatible server on loopback: packs, batched checks, verification."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tests.helpers import RecordingProgress, random_files, wipe_local_objects

from loopml.errors import CorruptObjectError, RemoteUnavailableError
from loopml.workspace import Workspace


def test_push_packs_small_files_and_pull_restores_them(workspace: Workspace, tmp_path: Path,
                                                       s3_server, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "many"
    random_files(d, [200 + i for i in range(300)], "f{i:03}.bin")
    (d / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    v = workspace.data.add(d, "many")
    workspace.data.add_remote("s3", f"s3://{s3_bucket}/data", options=s3_server.storage_options())
    shown = RecordingProgress()
    pushed = workspace.data.push(progress=shown)
    assert pushed.objects == 301
    size = sum(f.size for f in workspace.data.files(v))
    assert [(t[0], t[1], sum(t[2])) for t in shown.tasks] == [("Pushing", size, size)]  # a bar with its total
    assert pushed.transfers <= 3  # one pack + its index + the big object, not 301 requests
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert len(keys) == 3 and sum(k.endswith(".idx") for k in keys) == 1
    again = workspace.data.push()
    assert again.objects == 0 and again.skipped == 301

    wipe_local_objects(workspace)
    assert len(workspace.objects.missing([f.digest for f in workspace.data.files(v)])) == 301
    shown = RecordingProgress()
    pulled = workspace.data.pull(["many"], progress=shown)
    assert pulled.objects == 301
    assert [(t[0], t[1], sum(t[2])) for t in shown.tasks] == [("Pulling", size, size)]
    assert workspace.doctor(verify=True).ok
    # The 300 small objects landed in one local pack, not 300 files; the big one in a file of its own.
    assert len(list((Path(workspace.objects.url) / "packs").glob("*.pack"))) == 1
    files = {f.path: f.digest for f in workspace.data.files(v)}
    assert workspace.objects.local_path(files["f000.bin"]) is None
    assert workspace.objects.local_path(files["big.bin"]) is not None
    out = workspace.data.checkout(v.label, tmp_path / "out")
    assert (out / "big.bin").read_bytes() == (d / "big.bin").read_bytes()
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in d.iterdir())


def test_pull_rejects_a_corrupt_pack(workspace: Workspace, tmp_path: Path, s3_server, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_bytes(b"hello world")
    workspace.data.add(d, "d")
    workspace.data.add_remote("s3", f"s3://{s3_bucket}/r", options=s3_server.storage_options())
    workspace.data.push()
    client = s3_server.client()
    pack = next(o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"] if o["Key"].endswith(".pack"))
    client.put_object(Bucket=s3_bucket, Key=pack, Body=b"HELLO WORLD")
    wipe_local_objects(workspace)
    with pytest.raises(CorruptObjectError, match="corrupt"):
        workspace.data.pull()
    assert list(workspace.objects.iter_objects()) == []


def test_unreachable_remote_is_a_clear_error(workspace: Workspace, tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_text("x")
    workspace.data.add(d, "d")
    from tests.servers import free_port

    port = free_port()
    workspace.data.add_remote("gone", "s3://nobucket/x", options={
        "key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}, "retries": 1})
    start = time.monotonic()
    with pytest.raises(RemoteUnavailableError, match="s3://nobucket/x"):
        workspace.data.push(remote="gone")
    assert time.monotonic() - start < 60


def test_push_and_pull_through_a_directory_remote(workspace: Workspace, tmp_path: Path) -> None:
    # A plain directory (fsspec "file") has no atomic put: objects land under a temporary name first.
    d = tmp_path / "d"
    random_files(d, [100 + i for i in range(20)])
    (d / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    v = workspace.data.add(d, "d")
    remote_dir = tmp_path / "remote"
    workspace.data.add_remote("disk", remote_dir.as_uri())
    assert workspace.data.push().objects == 21
    assert workspace.data.push().objects == 0  # nothing moved: not recorded
    (pushed,) = workspace.events(action="data.pushed")
    assert (pushed.object_type, pushed.object_id, pushed.details["objects"]) == ("data_remote", "disk", 21)
    stored = [p for p in remote_dir.rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if p.name.endswith(".part")]
    wipe_local_objects(workspace)
    assert workspace.data.pull(["d"]).objects == 21
    assert workspace.doctor(verify=True).ok
    (pulled,) = workspace.events(action="data.pulled")
    assert pulled.details["refs"] == ["d"] and pulled.details["bytes"] == sum(f.size for f in workspace.data.files(v))
    assert (workspace.data.checkout(v.label, tmp_path / "out") / "big.bin").read_bytes() == (d / "big.bin").read_bytes()


def test_a_push_of_big_objects_only_sends_no_pack(workspace: Workspace, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    workspace.data.add(big, "big")
    remote_dir = tmp_path / "remote"
    workspace.data.add_remote("disk", remote_dir.as_uri())
    pushed = workspace.data.push(["big"])
    assert (pushed.objects, pushed.transfers) == (1, 1)  # the object itself; no (empty) pack, no index
    assert [p.name for p in remote_dir.rglob("*") if p.is_file()] == [p.name for p in remote_dir.rglob("objects/*/*")]
    assert not list(remote_dir.rglob("*.pack")) and not list(remote_dir.rglob("*.idx"))
