"""The pipelines part: plain-Python steps, content-based caching, executors, lineage, schedules and triggers.

``PipelineService`` loads on first use, so user modules importing ``loopml.step`` stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.services.pipelines.service import (
        PipelineService,
        load_params_file,
        parse_param_pairs,
    )

__all__ = ["PipelineService", "load_params_file", "parse_param_pairs"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from loopml.services.pipelines import service

        return getattr(service, name)
    raise AttributeError(f"module 'loopml.services.pipelines' has no attribute {name!r}")
