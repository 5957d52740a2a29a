"""loopml: the machine-learning lifecycle as one closed loop.

The public API is listed in ``__all__``; names load on first use so that
``import loopml`` stays fast and does no I/O.
"""

from __future__ import annotations

import importlib

from loopml.errors import LoopmlError

__version__ = "0.1.0"

# public name -> "module" (the module itself) or "module:attribute"
_LAZY: dict[str, str] = {
    "Workspace": "loopml.workspace:Workspace",
    "autolog": "loopml.sdk.tracking:autolog",
    "data": "loopml.sdk.data",
    "get_run": "loopml.sdk.tracking:get_run",
    "pipeline": "loopml.sdk.pipelines:pipeline",
    "run_pipeline": "loopml.sdk.pipelines:run_pipeline",
    "search_runs": "loopml.sdk.tracking:search_runs",
    "start_run": "loopml.sdk.tracking:start_run",
    "step": "loopml.sdk.pipelines:step",
}

__all__ = [
    "LoopmlError",
    "Workspace",
    "__version__",
    "autolog",
    "data",
    "get_run",
    "pipeline",
    "run_pipeline",
    "search_runs",
    "start_run",
    "step",
]

# Not `import typing`: it costs milliseconds at every CLI start (mypy treats this name as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from loopml.workspace import Workspace


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'loopml' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
