"""Tables of the data part (filled in by the data part's issue)."""

from __future__ import annotations

from loopml.stores.metadata.schema.base import metadata

__all__ = ["metadata"]
