"""Tables of the tracking part (filled in by the tracking part's issue)."""

from __future__ import annotations

from loopml.stores.metadata.schema.base import metadata

__all__ = ["metadata"]
