"""The SQL schema of the metadata store: one MetaData, one module per part.

Each part (data, tracking, pipelines …) declares its tables in its own module
so parts evolve independently; all share this MetaData and one Alembic history.
A column whose values are artifact-store digests carries ``info={"object_ref": True}``
so integrity checks and garbage collection find every reference generically.
"""

from loopml.stores.metadata.schema import core, data, pipelines, tracking
from loopml.stores.metadata.schema.base import metadata

__all__ = ["core", "data", "metadata", "pipelines", "tracking"]
