"""The data part: content-addressed dataset versions, statistics, validation, remotes, lineage."""

from __future__ import annotations

TYPE_CHECKING = False  # not `import typing`: the quick CLI path (quick.py) imports this package
if TYPE_CHECKING:
    from typing import Any

    from loopml.services.data.versions import DataService

__all__ = ["DataService"]


def __getattr__(name: str) -> Any:
    # Loaded on first use so that the stdlib-only quick path (quick.py) stays light.
    if name == "DataService":
        from loopml.services.data.versions import DataService

        return DataService
    raise AttributeError(f"module 'loopml.services.data' has no attribute {name!r}")
