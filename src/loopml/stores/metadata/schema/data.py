"""Tables of the data part: dataset versions, their file manifests, tags, rules, lineage uses, remotes."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from loopml.stores.metadata.schema.base import digest_column, id_column, json_column, metadata

dataset_versions = Table(
    "dataset_versions",
    metadata,
    id_column("id", primary_key=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("content_digest", String(64), nullable=False),
    Column("num_files", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("message", Text, nullable=True),
    Column("source", Text, nullable=True),
    Column("status", String(16), nullable=False),
    json_column("stats", nullable=True),
    json_column("validation", nullable=True),
    UniqueConstraint("name", "version", name="uq_dataset_versions_name_version"),
    Index("ix_dataset_versions_content", "name", "content_digest"),
)

dataset_files = Table(
    "dataset_files",
    metadata,
    id_column("version_id", nullable=False),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    digest_column("digest", nullable=False),
    Index("ix_dataset_files_version", "version_id"),
)

dataset_tags = Table(
    "dataset_tags",
    metadata,
    Column("name", String(200), nullable=False),
    Column("tag", String(200), nullable=False),
    id_column("version_id", nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("name", "tag", name="uq_dataset_tags_name_tag"),
)

dataset_rules = Table(
    "dataset_rules",
    metadata,
    Column("name", String(200), primary_key=True),
    json_column("rules", nullable=False),
    Column("updated_at", Float, nullable=False),
)

dataset_uses = Table(
    "dataset_uses",
    metadata,
    id_column("version_id", nullable=False),
    Column("consumer_type", String(64), nullable=False),
    Column("consumer_id", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("ts", Float, nullable=False),
    UniqueConstraint("version_id", "consumer_type", "consumer_id", "role", name="uq_dataset_uses_key"),
    Index("ix_dataset_uses_consumer", "consumer_type", "consumer_id"),
)

data_remotes = Table(
    "data_remotes",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("url", Text, nullable=False),
    json_column("options", nullable=False),
)

__all__ = ["data_remotes", "dataset_files", "dataset_rules", "dataset_tags", "dataset_uses",
           "dataset_versions", "metadata"]
