"""Push and pull of many packs, sent and fetched a batch at a time, over the S3-compatible server on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.helpers import wipe_local_objects

from loopml.services.data import remote
from loopml.workspace import Workspace


def test_many_packs_travel_in_batches_and_come_back_verified(workspace: Workspace, tmp_path: Path,
                                                             s3_server, s3_bucket: str,  # type: ignore[no-untyped-def]
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "PACK_TARGET", 10_000)
    monkeypatch.setattr(remote, "PACKS_IN_FLIGHT", 2)
    d = tmp_path / "many"
    d.mkdir()
    for i in range(120):
        (d / f"f{i:03}.bin").write_bytes(os.urandom(1000 + i))
    v = workspace.data.add(d, "many")
    workspace.data.add_remote("s3", f"s3://{s3_bucket}/data", options=s3_server.storage_options())
    pushed = workspace.data.push()
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    packs = sum(k.endswith(".pack") for k in keys)
    assert pushed.objects == 120 and packs >= 10 and sum(k.endswith(".idx") for k in keys) == packs
    assert workspace.data.push().skipped == 120

    wipe_local_objects(workspace)
    pulled = workspace.data.pull(["many"])
    assert pulled.objects == 120 and pulled.bytes == v.size and pulled.transfers == packs
    assert workspace.doctor(verify=True).ok
    out = workspace.data.checkout(v.label, tmp_path / "out")
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in d.iterdir())


def test_a_push_of_objects_scattered_through_a_local_pack_sends_only_what_the_remote_lacks(
        workspace: Workspace, tmp_path: Path, s3_server, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    d, half = tmp_path / "all", tmp_path / "half"
    half.mkdir()
    d.mkdir()
    for i in range(60):
        data = os.urandom(3000 + i)
        (d / f"f{i:02}.bin").write_bytes(data)
        if i % 2:
            (half / f"f{i:02}.bin").write_bytes(data)
    v_all = workspace.data.add(d, "all")
    v_half = workspace.data.add(half, "half")  # its objects lie every other one in the pack of "all"
    workspace.data.add_remote("s3", f"s3://{s3_bucket}/data", options=s3_server.storage_options())
    first = workspace.data.push(["half"])
    assert (first.objects, first.bytes) == (30, v_half.size)
    second = workspace.data.push(["all"])
    assert (second.objects, second.skipped, second.bytes) == (30, 30, v_all.size - v_half.size)

    wipe_local_objects(workspace)
    pulled = workspace.data.pull(["all"])  # every object is hashed against its digest as it arrives
    assert pulled.objects == 60 and pulled.bytes == v_all.size
    out = workspace.data.checkout(v_all.label, tmp_path / "out")
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in d.iterdir())
