"""tracking: params, tags and latest metrics stored by (run_id, key) on SQLite (WITHOUT ROWID)

Revision ID: 0006
Revises: 0005

A search reads these three tables twice: through the (key, value) index to find the matching
runs, and by run id to load what it shows. In a rowid table both need a second lookup per row
(the index holds the rowid, not the run id; the primary-key index holds no value). Clustered on
the primary key, the (key, value) index carries the run id and the rows sit in run id order, so
both reads touch one b-tree. PostgreSQL is unchanged.
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _text_value() -> list[sa.Column]:
    return [sa.Column("value", sa.String(1000), nullable=False)]


def _metric_value() -> list[sa.Column]:
    return [sa.Column("value", sa.Float), sa.Column("special", sa.SmallInteger, nullable=False),
            sa.Column("step", sa.BigInteger, nullable=False), sa.Column("ts", sa.Float, nullable=False)]


_TABLES: dict[str, Callable[[], list[sa.Column]]] = {
    "tracking_params": _text_value, "tracking_tags": _text_value, "tracking_latest_metrics": _metric_value,
}


def _rebuild(table: str, value_columns: Callable[[], list[sa.Column]], *, with_rowid: bool) -> None:
    """Copy ``table`` into a new table of the same columns, with or without a rowid."""
    new = f"{table}_rebuilt"
    columns = [sa.Column("run_id", sa.String(32), nullable=False),
               sa.Column("key", sa.String(250), nullable=False), *value_columns()]
    op.create_table(new, *columns, sa.PrimaryKeyConstraint("run_id", "key", name=f"pk_{table}"),
                    sqlite_with_rowid=with_rowid)
    names = ", ".join(f'"{c.name}"' for c in columns)
    op.execute(f"INSERT INTO {new} ({names}) SELECT {names} FROM {table}")
    op.drop_table(table)  # its indexes go with it
    op.rename_table(new, table)
    op.create_index(f"ix_{table}_key_value", table, ["key", "value"])


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for table, value_columns in _TABLES.items():
        _rebuild(table, value_columns, with_rowid=False)


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for table, value_columns in _TABLES.items():
        _rebuild(table, value_columns, with_rowid=True)
