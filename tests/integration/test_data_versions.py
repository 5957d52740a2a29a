"""Dataset versions on SQLite and PostgreSQL: add, dedup, status, tags, tables, rules, lineage, checkout, gc."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert

from loopml.errors import DataInputError, InvalidParameterError, NotFoundError, TableParseError
from loopml.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    w = Workspace.init(tmp_path / "ws", db_url=db_url)
    yield w
    w.close()


def _tree(root: Path, n: int = 5) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    for i in range(n):
        (root / ("sub" if i % 2 else "") / f"f{i}.bin").write_bytes(os.urandom(100 + i))
    return root


def test_same_content_gives_same_version_and_one_copy(ws: Workspace, tmp_path: Path) -> None:
    d = _tree(tmp_path / "d")
    first = ws.data.add_detailed(d, "raw")
    assert first.version.version == 1 and first.version.num_files == 5 and not first.unchanged
    again = ws.data.add_detailed(d, "raw")
    assert again.unchanged and again.version.id == first.version.id and again.hashed_files == 0
    objects_before = sum(1 for _ in ws.objects.iter_objects())
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in d.rglob("*.bin"):
        (copy / f.relative_to(d)).parent.mkdir(parents=True, exist_ok=True)
        (copy / f.relative_to(d)).write_bytes(f.read_bytes())
    same = ws.data.add_detailed(copy, "raw")
    assert same.unchanged and same.version.id == first.version.id
    assert sum(1 for _ in ws.objects.iter_objects()) == objects_before


def test_readd_after_one_change_rehashes_only_that_file(ws: Workspace, tmp_path: Path) -> None:
    d = _tree(tmp_path / "d", 20)
    ws.data.add(d, "raw")
    (d / "f4.bin").write_bytes(b"changed")
    status = ws.data.status(d, "raw")
    assert status.modified == ["f4.bin"] and status.hashed_files == 1
    r = ws.data.add_detailed(d, "raw")
    assert r.version.version == 2 and r.hashed_files == 0 and r.stored_files == 1
    assert ws.data.status(d, "raw").clean


def test_resolve_forms_tags_and_not_found(ws: Workspace, tmp_path: Path) -> None:
    d = _tree(tmp_path / "d")
    v1 = ws.data.add(d, "raw", tags=["gold"])
    (d / "new.txt").write_text("x")
    v2 = ws.data.add(d, "raw", message="more")
    assert ws.data.resolve("raw").id == v2.id
    assert ws.data.resolve("raw@v1").id == ws.data.resolve("raw@1").id == v1.id
    assert ws.data.resolve("raw@gold").id == v1.id
    assert ws.data.resolve(v2.id).version == 2
    ws.data.tag("raw@v2", "gold")
    assert ws.data.resolve("raw@gold").id == v2.id
    with pytest.raises(NotFoundError, match="raw@v9"):
        ws.data.resolve("raw@v9")
    with pytest.raises(InvalidParameterError):
        ws.data.tag("raw", "v3")
    diff = ws.data.diff("raw@v1", "raw@v2")
    assert diff.added == ["new.txt"] and not diff.removed and not diff.modified


def test_table_statistics_load_and_diff(ws: Workspace) -> None:
    df = pd.DataFrame({"age": [20, 30, None, 50], "city": ["a", "b", "a", "a"]})
    v = ws.data.save_table(df, "people")
    assert v.kind == "table"
    assert v.stats is not None
    age = v.stats["columns"]["age"]
    assert v.stats["rows"] == 4 and age["null_count"] == 1 and age["min"] == 20 and age["max"] == 50
    assert age["quantiles"]["0.5"] == 30
    assert v.stats["columns"]["city"]["top"][0] == ["a", 3]
    back = ws.data.load_table("people@v1")
    assert list(back["city"]) == ["a", "b", "a", "a"]
    df2 = pd.DataFrame({"age": [20, 30, 40, 50, 60], "zip": ["1"] * 5})
    ws.data.save_table(df2, "people")
    d = ws.data.diff("people@v1", "people@v2")
    assert d.rows == (4, 5)
    assert any(c.startswith("- city") for c in d.schema_changes)
    assert any(c.startswith("+ zip") for c in d.schema_changes)
    assert d.stat_changes["age"]["null_count"] == (1, 0)


def test_attached_rules_mark_failing_versions(ws: Workspace) -> None:
    ws.data.set_rules("people", {"columns": {"age": {"not_null": True, "min": 0}}, "rows": {"min": 2}})
    ok = ws.data.save_table(pd.DataFrame({"age": [1, 2]}), "people")
    bad = ws.data.save_table(pd.DataFrame({"age": [1, -5, None]}), "people")
    assert ok.status == "ok" and bad.status == "failing"
    report = ws.data.validate("people@v2")
    assert not report.passed
    failed = {c.rule for c in report.checks if not c.passed}
    assert failed == {"age: not null", "age >= 0"}
    assert ws.data.validate("people@v1").passed


def test_lineage_hook(ws: Workspace) -> None:
    v = ws.data.save_table(pd.DataFrame({"x": [1]}), "t")
    ws.data.record_use(v.id, consumer_type="run", consumer_id="run-1")
    ws.data.record_use(v.id, consumer_type="run", consumer_id="run-1")  # idempotent
    ws.data.record_use(v.id, consumer_type="pipeline_run", consumer_id="p-1")
    assert [(u.consumer_type, u.consumer_id) for u in ws.data.consumers_of(v.id)] == [
        ("run", "run-1"), ("pipeline_run", "p-1")]
    assert [x.id for x in ws.data.inputs_of("run", "run-1")] == [v.id]
    with pytest.raises(NotFoundError):
        ws.data.record_use("0" * 32, consumer_type="run", consumer_id="r")


def test_checkout_writes_files_and_refuses_escaping_paths(ws: Workspace, tmp_path: Path) -> None:
    d = _tree(tmp_path / "d")
    v = ws.data.add(d, "raw")
    out = ws.data.checkout("raw@v1", tmp_path / "out")
    for f in d.rglob("*.bin"):
        assert (out / f.relative_to(d)).read_bytes() == f.read_bytes()
    assert ws.data.local_path("raw").is_dir()
    # A manifest row pointing outside the target (as a tampered database might hold).
    from loopml.stores.metadata.schema.data import dataset_files

    digest = ws.data.files(v)[0].digest
    with ws.db.write() as conn:
        conn.execute(insert(dataset_files).values(version_id=v.id, path="../evil", size=1, digest=digest))
    with pytest.raises(DataInputError, match=r"\.\./evil"):
        ws.data.checkout("raw@v1", tmp_path / "out2")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out2").exists()


def test_bad_inputs_name_the_path(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(DataInputError, match="nope"):
        ws.data.add(tmp_path / "nope", "x")
    loop = tmp_path / "loopdir"
    loop.mkdir()
    (loop / "self").symlink_to(loop)
    with pytest.raises(DataInputError, match="symlink loop"):
        ws.data.add(loop, "x")
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(DataInputError, match="symlink loop"):
        ws.data.add(a, "x")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(TableParseError, match="bad.parquet"):
        ws.data.add(bad, "x")
    assert ws.data.list_versions() == []


def test_gc_removes_only_unreferenced_objects(ws: Workspace, tmp_path: Path) -> None:
    d = _tree(tmp_path / "d")
    ws.data.add(d, "raw")
    orphan = ws.objects.put_bytes(b"orphan bytes")
    count, size = ws.data.gc(dry_run=True, grace_seconds=0)
    assert (count, size) == (1, len(b"orphan bytes"))
    assert ws.objects.has(orphan.digest)
    assert ws.data.gc(grace_seconds=3600) == (0, 0)  # too young: a concurrent add may need it
    assert ws.events(action="data.gc") == []  # neither a dry run nor a gc that removed nothing is an action
    ws.data.gc(grace_seconds=0)
    assert not ws.objects.has(orphan.digest)
    assert ws.doctor(verify=True).ok
    (event,) = ws.events(action="data.gc")
    assert event.object_type == "object_store" and event.details["objects"] == 1
    assert event.details["bytes"] == len(b"orphan bytes")
