"""Tables of the pipelines part (filled in by the pipelines part's issue)."""

from __future__ import annotations

from loopml.stores.metadata.schema.base import metadata

__all__ = ["metadata"]
