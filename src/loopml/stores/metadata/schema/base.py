"""The shared MetaData and column helpers of the metadata schema."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, MetaData, String
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

ID_LEN = 32
DIGEST_LEN = 64


def id_column(name: str = "id", **kwargs: Any) -> Column[str]:
    return Column(name, String(ID_LEN), **kwargs)


def digest_column(name: str = "digest", **kwargs: Any) -> Column[str]:
    """A column holding a content-store digest; integrity checks and gc follow it."""
    return Column(name, String(DIGEST_LEN), info={"object_ref": True}, **kwargs)


class JSONDocument(TypeDecorator[Any]):
    """JSON, stored as JSONB on PostgreSQL; the PostgreSQL dialect is imported only when it is used
    (importing it up front cost every SQLite-only process ~25-80 ms of start-up)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


def json_column(name: str, **kwargs: Any) -> Column[Any]:
    return Column(name, JSONDocument(), **kwargs)
