"""tracking: run environments move out of tracking_runs into their own table

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "tracking_run_environments",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("environment", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_tracking_run_environments"),
    )
    op.execute("INSERT INTO tracking_run_environments (run_id, environment) "
               "SELECT id, environment FROM tracking_runs")
    # SQLite cannot drop a column in place: batch mode copies the table (indexes included)
    with op.batch_alter_table("tracking_runs") as batch:
        batch.drop_column("environment")


def downgrade() -> None:
    with op.batch_alter_table("tracking_runs") as batch:
        batch.add_column(sa.Column("environment", _JSON, nullable=True))
    op.execute("UPDATE tracking_runs SET environment = (SELECT e.environment FROM tracking_run_environments e "
               "WHERE e.run_id = tracking_runs.id)")
    op.execute("UPDATE tracking_runs SET environment = '{}' WHERE environment IS NULL")
    with op.batch_alter_table("tracking_runs") as batch:
        batch.alter_column("environment", existing_type=_JSON, nullable=False)
    op.drop_table("tracking_run_environments")
