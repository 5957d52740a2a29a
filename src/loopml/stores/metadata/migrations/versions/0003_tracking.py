"""tracking: tables of the tracking part

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_BIGSEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _id(name: str = "id", **kw: object) -> sa.Column:
    return sa.Column(name, sa.String(32), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "tracking_runs",
        _id(primary_key=True),
        sa.Column("experiment", sa.String(200), nullable=False),
        sa.Column("name", sa.String(250)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float),
        _id("parent_id"),
        sa.Column("environment", _JSON, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tracking_runs"),
    )
    op.create_index("ix_tracking_runs_experiment", "tracking_runs", ["experiment", "start_time"])
    op.create_index("ix_tracking_runs_parent", "tracking_runs", ["parent_id"])
    for table in ("tracking_params", "tracking_tags"):
        op.create_table(
            table,
            _id("run_id", nullable=False),
            sa.Column("key", sa.String(250), nullable=False),
            sa.Column("value", sa.String(1000), nullable=False),
            sa.PrimaryKeyConstraint("run_id", "key", name=f"pk_{table}"),
        )
        op.create_index(f"ix_{table}_key_value", table, ["key", "value"])
    op.create_table(
        "tracking_metric_history",
        sa.Column("seq", _BIGSEQ, autoincrement=True),
        _id("run_id", nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("special", sa.SmallInteger, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_tracking_metric_history"),
    )
    op.create_index("ix_tracking_metric_history_run_key", "tracking_metric_history", ["run_id", "key", "step"])
    op.create_table(
        "tracking_latest_metrics",
        _id("run_id", nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("special", sa.SmallInteger, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_tracking_latest_metrics"),
    )
    op.create_index("ix_tracking_latest_metrics_key_value", "tracking_latest_metrics", ["key", "value"])
    op.create_table(
        "tracking_artifacts",
        _id("run_id", nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "name", name="pk_tracking_artifacts"),
    )
    op.create_table(
        "tracking_batches",
        sa.Column("batch_id", sa.String(64), nullable=False),
        _id("run_id", nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name="pk_tracking_batches"),
    )


def downgrade() -> None:
    for table in ("tracking_batches", "tracking_artifacts", "tracking_latest_metrics",
                  "tracking_metric_history", "tracking_tags", "tracking_params", "tracking_runs"):
        op.drop_table(table)
