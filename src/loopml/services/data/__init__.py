"""The data part: content-addressed dataset versions, statistics, validation, remotes, lineage."""

from loopml.services.data.versions import DataService

__all__ = ["DataService"]
