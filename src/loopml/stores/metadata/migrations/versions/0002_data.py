"""data: tables of the data part

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("content_digest", sa.String(64), nullable=False),
        sa.Column("num_files", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stats", _json(), nullable=True),
        sa.Column("validation", _json(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_versions"),
        sa.UniqueConstraint("name", "version", name="uq_dataset_versions_name_version"),
    )
    op.create_index("ix_dataset_versions_content", "dataset_versions", ["name", "content_digest"])
    op.create_table(
        "dataset_files",
        sa.Column("version_id", sa.String(32), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
    )
    op.create_index("ix_dataset_files_version", "dataset_files", ["version_id"])
    op.create_table(
        "dataset_tags",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tag", sa.String(200), nullable=False),
        sa.Column("version_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("name", "tag", name="uq_dataset_tags_name_tag"),
    )
    op.create_table(
        "dataset_rules",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("rules", _json(), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_dataset_rules"),
    )
    op.create_table(
        "dataset_uses",
        sa.Column("version_id", sa.String(32), nullable=False),
        sa.Column("consumer_type", sa.String(64), nullable=False),
        sa.Column("consumer_id", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.UniqueConstraint("version_id", "consumer_type", "consumer_id", "role", name="uq_dataset_uses_key"),
    )
    op.create_index("ix_dataset_uses_consumer", "dataset_uses", ["consumer_type", "consumer_id"])
    op.create_table(
        "data_remotes",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("options", _json(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_data_remotes"),
    )


def downgrade() -> None:
    op.drop_table("data_remotes")
    op.drop_index("ix_dataset_uses_consumer", table_name="dataset_uses")
    op.drop_table("dataset_uses")
    op.drop_table("dataset_rules")
    op.drop_table("dataset_tags")
    op.drop_index("ix_dataset_files_version", table_name="dataset_files")
    op.drop_table("dataset_files")
    op.drop_index("ix_dataset_versions_content", table_name="dataset_versions")
    op.drop_table("dataset_versions")
