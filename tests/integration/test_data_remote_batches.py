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
