"""The metadata-store contract: SQLite and PostgreSQL pass the same tests."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from loopml.errors import SchemaVersionError
from loopml.stores.metadata.database import Database, append_event
from loopml.stores.metadata.revisions import head_revision
from loopml.stores.metadata.schema.core import events


def test_open_creates_schema_at_head(db_url: str) -> None:
    db = Database.open(db_url)
    try:
        assert db.schema_version() == head_revision()
        assert "events" in db.table_counts()
    finally:
        db.dispose()


def test_open_twice_is_a_no_op(db_url: str) -> None:
    Database.open(db_url).dispose()
    db = Database.open(db_url)
    assert db.schema_version() == head_revision()
    db.dispose()


def test_write_commits_and_rolls_back(db_url: str) -> None:
    db = Database.open(db_url)
    with db.write() as conn:
        append_event(conn, actor="me", action="test", object_type="thing", object_id="1", details={"a": 1})
    with pytest.raises(RuntimeError), db.write() as conn:
        append_event(conn, actor="me", action="test", object_type="thing", object_id="2")
        raise RuntimeError("boom")
    with db.read() as conn:
        rows = conn.execute(select(events.c.object_id, events.c.details)).all()
    assert [(r.object_id, r.details) for r in rows] == [("1", {"a": 1})]
    db.dispose()


def test_newer_schema_refuses_to_open_and_changes_nothing(db_url: str) -> None:
    db = Database.open(db_url)
    with db.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    db.dispose()
    with pytest.raises(SchemaVersionError, match="9999"):
        Database.open(db_url)
    db = Database(db_url)
    assert db.schema_version() == "9999"
    db.dispose()


def test_older_schema_is_upgraded(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from loopml.stores.metadata.revisions import MIGRATIONS_DIR

    db = Database(db_url)
    with db.engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    assert db.schema_version() == "0001"
    db.dispose()
    db = Database.open(db_url)
    assert db.schema_version() == head_revision()
    db.dispose()


def test_referenced_digests_follow_object_ref_columns(db_url: str) -> None:
    db = Database.open(db_url)
    assert db.referenced_digests() == set()
    db.dispose()
