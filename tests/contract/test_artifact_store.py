"""The artifact-store contract: every byte backend (local directory, S3 server) passes the same tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopml.errors import InvalidParameterError, ObjectNotFoundError
from loopml.stores.artifacts import ContentStore, FsspecBackend, LocalBackend, hash_bytes, hash_file
from loopml.stores.artifacts.hashing import object_key


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ContentStore:
    if request.param == "local":
        backend = LocalBackend(tmp_path / "objects")
    else:
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        backend = FsspecBackend(f"s3://{bucket}/objects", server.storage_options())
    cs = ContentStore(backend, staging_dir=tmp_path)
    cs.ensure()
    return cs


def test_put_bytes_is_content_addressed_and_deduplicated(store: ContentStore) -> None:
    a = store.put_bytes(b"hello")
    b = store.put_bytes(b"hello")
    assert a == b
    assert a.digest == hash_bytes(b"hello") and a.size == 5
    assert [o.digest for o in store.iter_objects()] == [a.digest]
    assert store.read_bytes(a.digest) == b"hello"


def test_put_file_and_stream_agree(store: ContentStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    ref = store.put_file(src)
    assert ref.digest == hash_file(src) and ref.size == len(data)
    ref2 = store.put_stream(iter([data[:1000], data[1000:]]))
    assert ref2 == ref
    with store.open(ref.digest) as fh:
        assert fh.read() == data


def test_empty_object(store: ContentStore, tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    ref = store.put_file(tmp_path / "empty")
    assert ref.size == 0 and store.read_bytes(ref.digest) == b""


def test_missing_reports_only_absent_digests(store: ContentStore) -> None:
    present = [store.put_bytes(f"obj{i}".encode()).digest for i in range(40)]
    absent = [hash_bytes(f"nope{i}".encode()) for i in range(3)]
    assert store.missing(present + absent) == set(absent)
    assert store.has(present[0]) and not store.has(absent[0])


def test_export_copies_bytes_out(store: ContentStore, tmp_path: Path) -> None:
    ref = store.put_bytes(b"payload")
    dest = tmp_path / "out" / "file.txt"
    mode = store.export(ref.digest, dest)
    assert dest.read_bytes() == b"payload"
    assert mode in ("copy", "reflink")


def test_verify_detects_corruption_and_absence(store: ContentStore) -> None:
    ref = store.put_bytes(b"original")
    assert store.verify(ref.digest).status == "ok"
    store.backend.put_chunks(object_key(ref.digest), [b"tampered"])
    check = store.verify(ref.digest)
    assert check.status == "corrupt" and check.actual == hash_bytes(b"tampered")
    store.delete(ref.digest)
    assert store.verify(ref.digest).status == "missing"


def test_reading_an_absent_object_raises_not_found(store: ContentStore) -> None:
    with pytest.raises(ObjectNotFoundError):
        store.read_bytes(hash_bytes(b"never stored"))


def test_bad_digest_is_rejected_with_the_value(store: ContentStore) -> None:
    with pytest.raises(InvalidParameterError, match=r"'\.\./etc/passwd'"):
        store.read_bytes("../etc/passwd")


def test_batch_transfer_between_stores(store: ContentStore, tmp_path: Path) -> None:
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    files = []
    for i in range(50):
        p = src_dir / f"f{i}"
        p.write_bytes(f"small file {i}".encode())
        files.append((p, object_key(hash_file(p))))
    store.backend.put_files(files)
    digests = [k.replace("/", "") for _, k in files]
    assert store.missing(digests) == set()
    dests = [(k, tmp_path / f"back{i}") for i, (_, k) in enumerate(files)]
    store.backend.get_files(dests)
    assert all(d.read_bytes() == f"small file {i}".encode() for i, (_, d) in enumerate(dests))
