"""The tracking part: runs, metrics, params, tags, artifacts, search and comparison."""

from loopml.services.tracking.service import TrackingService

__all__ = ["TrackingService"]
