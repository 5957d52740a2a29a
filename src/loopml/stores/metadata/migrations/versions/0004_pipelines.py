"""pipelines: tables of the pipelines part

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _id(name: str = "id", *args: object, **kw: object) -> sa.Column:
    return sa.Column(name, sa.String(32), *args, **kw)  # type: ignore[arg-type]


def _digest(name: str, **kw: object) -> sa.Column:
    return sa.Column(name, sa.String(64), info={"object_ref": True}, **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        _id(primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("executor", sa.String(50), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("ended", sa.Float),
        sa.Column("error", sa.Text),
        _id("resumed_from"),
        _id("tracking_run_id"),
    )
    op.create_index("ix_pipeline_runs_pipeline", "pipeline_runs", ["pipeline", "started"])
    op.create_table(
        "pipeline_step_runs",
        _id(primary_key=True),
        _id("pipeline_run_id", sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE",
                                             name="fk_pipeline_step_runs_pipeline_run_id_pipeline_runs"),
            nullable=False),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("func", sa.String(500), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("cache_key", sa.String(64)),
        sa.Column("key_parts", _JSON, nullable=False),
        sa.Column("params", _JSON, nullable=False),
        _digest("output_digest"),
        sa.Column("materializer", sa.String(100)),
        _id("source_step_run_id"),
        sa.Column("started", sa.Float),
        sa.Column("ended", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("stdout", sa.Text),
        sa.Column("stderr", sa.Text),
        _id("tracking_run_id"),
        sa.Column("metrics", _JSON, nullable=False),
    )
    op.create_index("ix_pipeline_step_runs_run", "pipeline_step_runs", ["pipeline_run_id"])
    op.create_index("ix_pipeline_step_runs_cache_key", "pipeline_step_runs", ["cache_key"])
    op.create_index("ix_pipeline_step_runs_output", "pipeline_step_runs", ["output_digest"])
    op.create_index("ix_pipeline_step_runs_tracking", "pipeline_step_runs", ["tracking_run_id"])
    op.create_table(
        "pipeline_step_inputs",
        _id("step_run_id", sa.ForeignKey("pipeline_step_runs.id", ondelete="CASCADE",
                                         name="fk_pipeline_step_inputs_step_run_id_pipeline_step_runs"),
            nullable=False),
        sa.Column("arg", sa.String(200), nullable=False),
        _digest("digest", nullable=False),
        sa.Column("materializer", sa.String(100), nullable=False),
        sa.Column("source", sa.String(300)),
        sa.Column("dataset_version_id", sa.String(64)),
        sa.UniqueConstraint("step_run_id", "arg", name="uq_pipeline_step_inputs_step_arg"),
    )
    op.create_index("ix_pipeline_step_inputs_digest", "pipeline_step_inputs", ["digest"])
    op.create_table(
        "pipeline_schedules",
        _id(primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.UniqueConstraint("name", name="uq_pipeline_schedules_name"),
    )
    op.create_table(
        "pipeline_schedule_slots",
        _id("schedule_id", sa.ForeignKey("pipeline_schedules.id", ondelete="CASCADE",
                                         name="fk_pipeline_schedule_slots_schedule_id_pipeline_schedules"),
            nullable=False),
        sa.Column("slot_time", sa.Float, nullable=False),
        sa.Column("claimed_at", sa.Float, nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=False),
        _id("pipeline_run_id"),
        sa.Column("status", sa.String(20), nullable=False),
        sa.UniqueConstraint("schedule_id", "slot_time", name="uq_pipeline_schedule_slots_slot"),
    )
    op.create_table(
        "pipeline_triggers",
        _id(primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("event_type", sa.String(50), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("last_event", sa.String(300)),
        sa.Column("pass_as", sa.String(200)),
        sa.UniqueConstraint("name", name="uq_pipeline_triggers_name"),
    )
    op.create_table(
        "pipeline_trigger_firings",
        _id("trigger_id", sa.ForeignKey("pipeline_triggers.id", ondelete="CASCADE",
                                        name="fk_pipeline_trigger_firings_trigger_id_pipeline_triggers"),
            nullable=False),
        sa.Column("event_key", sa.String(300), nullable=False),
        sa.Column("fired_at", sa.Float, nullable=False),
        _id("pipeline_run_id"),
        sa.Column("status", sa.String(20), nullable=False),
        sa.UniqueConstraint("trigger_id", "event_key", name="uq_pipeline_trigger_firings_event"),
    )


def downgrade() -> None:
    for name in ("pipeline_trigger_firings", "pipeline_triggers", "pipeline_schedule_slots",
                 "pipeline_schedules", "pipeline_step_inputs", "pipeline_step_runs", "pipeline_runs"):
        op.drop_table(name)
