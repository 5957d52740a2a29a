"""Tables of the tracking part: runs, their environments, params, tags, metric history, latest metrics, artifacts."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
)

from loopml.stores.metadata.schema.base import digest_column, id_column, json_column, metadata

KEY_LEN = 250
VALUE_LEN = 1000

runs = Table(
    "tracking_runs",
    metadata,
    id_column(primary_key=True),
    Column("experiment", String(200), nullable=False),
    Column("name", String(250)),
    Column("status", String(20), nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float),
    id_column("parent_id"),
    Column("error", Text),
    Column("deleted", Boolean, nullable=False, default=False),
    Index("ix_tracking_runs_experiment", "experiment", "start_time"),
    Index("ix_tracking_runs_parent", "parent_id"),
)

# Kept apart from ``tracking_runs`` (migration 0005): the package list makes it kilobytes per
# run, and inline it made every scan of runs (search, ordering) read it.
run_environments = Table(
    "tracking_run_environments",
    metadata,
    id_column("run_id", primary_key=True),
    json_column("environment", nullable=False),
)

# Params, tags and latest metrics are clustered by (run_id, key) on SQLite (migration 0006):
# the (key, value) index then holds the run id, so a search finds runs and loads them without a
# second lookup per row.
params = Table(
    "tracking_params",
    metadata,
    id_column("run_id", nullable=False),
    Column("key", String(KEY_LEN), nullable=False),
    Column("value", String(VALUE_LEN), nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
    Index("ix_tracking_params_key_value", "key", "value"),
    sqlite_with_rowid=False,
)

tags = Table(
    "tracking_tags",
    metadata,
    id_column("run_id", nullable=False),
    Column("key", String(KEY_LEN), nullable=False),
    Column("value", String(VALUE_LEN), nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
    Index("ix_tracking_tags_key_value", "key", "value"),
    sqlite_with_rowid=False,
)

# ``special``: 0 finite, 1 NaN, 2 +inf, 3 -inf. SQLite stores NaN as NULL, so the flag is
# the truth; ``value`` holds NULL for NaN and +/-DBL_MAX for infinities so comparisons still order.
metric_history = Table(
    "tracking_metric_history",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    id_column("run_id", nullable=False),
    Column("key", String(KEY_LEN), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("ts", Float, nullable=False),
    Column("value", Float),
    Column("special", SmallInteger, nullable=False),
    Index("ix_tracking_metric_history_run_key", "run_id", "key", "step"),
)

latest_metrics = Table(
    "tracking_latest_metrics",
    metadata,
    id_column("run_id", nullable=False),
    Column("key", String(KEY_LEN), nullable=False),
    Column("value", Float),
    Column("special", SmallInteger, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("ts", Float, nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
    Index("ix_tracking_latest_metrics_key_value", "key", "value"),
    sqlite_with_rowid=False,
)

artifacts = Table(
    "tracking_artifacts",
    metadata,
    id_column("run_id", nullable=False),
    Column("name", String(500), nullable=False),
    digest_column(nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("ts", Float, nullable=False),
    PrimaryKeyConstraint("run_id", "name"),
)

batches = Table(
    "tracking_batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    id_column("run_id", nullable=False),
    Column("ts", Float, nullable=False),
)

__all__ = ["artifacts", "batches", "latest_metrics", "metadata", "metric_history", "params", "run_environments", "runs",
           "tags"]
