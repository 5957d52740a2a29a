"""Core tables: the audit trail every part writes to."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table

from loopml.stores.metadata.schema.base import id_column, json_column, metadata

events = Table(
    "events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    id_column(nullable=False, unique=True),
    Column("ts", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("object_type", String(50), nullable=False),
    Column("object_id", String(200), nullable=False),
    json_column("details", nullable=False),
    Index("ix_events_object", "object_type", "object_id"),
)
