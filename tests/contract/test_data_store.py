"""The data part's schema on every metadata backend: migration matches the schema module, downgrades cleanly."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from loopml.stores.metadata.database import Database
from loopml.stores.metadata.revisions import MIGRATIONS_DIR
from loopml.stores.metadata.schema import data as data_schema

TABLES = {"dataset_versions", "dataset_files", "dataset_tags", "dataset_rules", "dataset_uses", "data_remotes"}


def test_migrated_tables_match_the_schema_module(db_url: str) -> None:
    db = Database.open(db_url)
    try:
        with db.engine.connect() as conn:
            insp = inspect(conn)
            for name in TABLES:
                declared = {c.name for c in data_schema.metadata.tables[name].columns}
                assert {c["name"] for c in insp.get_columns(name)} == declared, name
    finally:
        db.dispose()


def test_data_migration_downgrades_and_upgrades_cleanly(db_url: str) -> None:
    db = Database.open(db_url)
    try:
        for target, present in (("0001", False), ("head", True)):
            with db.engine.begin() as conn:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
                cfg.attributes["connection"] = conn
                (command.downgrade if target == "0001" else command.upgrade)(cfg, target)
            with db.engine.connect() as conn:
                names = set(inspect(conn).get_table_names())
            assert (names >= TABLES) is present and (not TABLES & names or present)
    finally:
        db.dispose()
