"""Tables of the pipelines part: pipeline runs, step runs and their inputs, schedules, triggers."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from loopml.stores.metadata.schema.base import (
    ID_LEN,
    digest_column,
    id_column,
    json_column,
    metadata,
)

pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    id_column(primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("target", String(500), nullable=False),
    Column("status", String(20), nullable=False),
    json_column("params", nullable=False),
    Column("executor", String(50), nullable=False),
    Column("started", Float, nullable=False),
    Column("ended", Float),
    Column("error", Text),
    id_column("resumed_from"),
    id_column("tracking_run_id"),
    Index("ix_pipeline_runs_pipeline", "pipeline", "started"),
)

pipeline_step_runs = Table(
    "pipeline_step_runs",
    metadata,
    id_column(primary_key=True),
    Column("pipeline_run_id", String(ID_LEN), ForeignKey("pipeline_runs.id", ondelete="CASCADE"), nullable=False),
    Column("pipeline", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("func", String(500), nullable=False),
    Column("status", String(20), nullable=False),
    Column("cache_key", String(64)),
    json_column("key_parts", nullable=False),
    json_column("params", nullable=False),
    digest_column("output_digest"),
    Column("materializer", String(100)),
    id_column("source_step_run_id"),
    Column("started", Float),
    Column("ended", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("stdout", Text),
    Column("stderr", Text),
    id_column("tracking_run_id"),
    json_column("metrics", nullable=False),
    Index("ix_pipeline_step_runs_run", "pipeline_run_id"),
    Index("ix_pipeline_step_runs_cache_key", "cache_key"),
    Index("ix_pipeline_step_runs_output", "output_digest"),
    Index("ix_pipeline_step_runs_tracking", "tracking_run_id"),
)

pipeline_step_inputs = Table(
    "pipeline_step_inputs",
    metadata,
    Column("step_run_id", String(ID_LEN), ForeignKey("pipeline_step_runs.id", ondelete="CASCADE"), nullable=False),
    Column("arg", String(200), nullable=False),
    digest_column("digest", nullable=False),
    Column("materializer", String(100), nullable=False),
    Column("source", String(300)),  # upstream step name, or "dataset:<name>@<version>"
    Column("dataset_version_id", String(64)),
    UniqueConstraint("step_run_id", "arg", name="uq_pipeline_step_inputs_step_arg"),
    Index("ix_pipeline_step_inputs_digest", "digest"),
)

pipeline_schedules = Table(
    "pipeline_schedules",
    metadata,
    id_column(primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("target", String(500), nullable=False),
    Column("cron", String(100), nullable=False),
    json_column("params", nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created", Float, nullable=False),
)

pipeline_schedule_slots = Table(
    "pipeline_schedule_slots",
    metadata,
    Column("schedule_id", String(ID_LEN), ForeignKey("pipeline_schedules.id", ondelete="CASCADE"), nullable=False),
    Column("slot_time", Float, nullable=False),
    Column("claimed_at", Float, nullable=False),
    Column("claimed_by", String(200), nullable=False),
    id_column("pipeline_run_id"),
    Column("status", String(20), nullable=False),
    UniqueConstraint("schedule_id", "slot_time", name="uq_pipeline_schedule_slots_slot"),
)

pipeline_triggers = Table(
    "pipeline_triggers",
    metadata,
    id_column(primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("target", String(500), nullable=False),
    Column("event_type", String(50), nullable=False),
    Column("source", String(300), nullable=False),
    json_column("params", nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created", Float, nullable=False),
    Column("last_event", String(300)),
    Column("pass_as", String(200)),  # pipeline parameter that receives the event (dataset ref, alert key)
)

pipeline_trigger_firings = Table(
    "pipeline_trigger_firings",
    metadata,
    Column("trigger_id", String(ID_LEN), ForeignKey("pipeline_triggers.id", ondelete="CASCADE"), nullable=False),
    Column("event_key", String(300), nullable=False),
    Column("fired_at", Float, nullable=False),
    id_column("pipeline_run_id"),
    Column("status", String(20), nullable=False),
    UniqueConstraint("trigger_id", "event_key", name="uq_pipeline_trigger_firings_event"),
)

__all__ = [
    "metadata",
    "pipeline_runs",
    "pipeline_schedule_slots",
    "pipeline_schedules",
    "pipeline_step_inputs",
    "pipeline_step_runs",
    "pipeline_trigger_firings",
    "pipeline_triggers",
]
