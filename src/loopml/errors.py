"""The one tree of errors a loopml user can see."""

from __future__ import annotations

# Not `import typing`: it costs milliseconds at every CLI start (mypy treats this name as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class LoopmlError(Exception):
    """Base of every error a user can see: what was wrong, the value, what to do.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code``; the
    server maps ``http_status``. Nothing else maps errors.
    """

    exit_code: int = 1
    http_status: int = 400

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} {hint}")


class InvalidParameterError(LoopmlError, ValueError):
    """A parameter had the wrong type or value (scikit-learn's template)."""

    exit_code = 2

    def __init__(self, name: str, where: str, expected: str, got: Any) -> None:
        self.name = name
        self.got = got
        super().__init__(f"The {name!r} parameter of {where} must be {expected}; got {got!r}.")


class ConfigError(LoopmlError):
    """A setting could not be read or has a bad value."""

    exit_code = 2


class WorkspaceNotFoundError(LoopmlError):
    """No ``.loopml/`` directory at or above the given path."""

    exit_code = 2
    http_status = 404


class WorkspaceExistsError(LoopmlError):
    """``init`` found a workspace already there."""

    exit_code = 2
    http_status = 409


class NotFoundError(LoopmlError):
    """A named object (dataset, run, object, pipeline …) does not exist."""

    http_status = 404


class ConflictError(LoopmlError):
    """The request contradicts what is stored (e.g. re-logging a param)."""

    http_status = 409


class StoreError(LoopmlError):
    """A store could not be reached or read."""

    exit_code = 3
    http_status = 503


class DatabaseUnavailableError(StoreError):
    """The metadata database could not be opened or reached."""


class SchemaVersionError(StoreError):
    """The database schema is newer than this version of loopml."""


class ArtifactStoreError(StoreError):
    """The artifact store could not be reached, read or written."""


class ObjectNotFoundError(NotFoundError):
    """A content-addressed object is missing from the artifact store."""


class CorruptObjectError(StoreError):
    """An object's bytes no longer match its content hash."""


class ValidationFailedError(LoopmlError):
    """Data or input failed the rules set for it."""

    exit_code = 1
    http_status = 422


class OptionalDependencyError(LoopmlError):
    """A feature needs an extra that is not installed."""

    exit_code = 2
    http_status = 501

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the {package!r} package, which is not installed.",
            hint=f"Install it with: pip install 'loopml[{extra}]'",
        )


class PipelineDefinitionError(LoopmlError):
    """A pipeline or step is defined or called wrongly (cycle, bad params, missing function)."""

    exit_code = 2


class StepFailedError(LoopmlError):
    """A pipeline step raised, timed out or returned an unstorable value; names the step."""

    def __init__(self, step: str, message: str, *, hint: str | None = None) -> None:
        self.step = step
        super().__init__(message, hint=hint)


class StepTimeoutError(StepFailedError):
    """A pipeline step ran past its ``timeout=``."""


class UnmaterializableError(StepFailedError):
    """A step returned a value no materializer can store."""


class DataInputError(LoopmlError):
    """A path given to the data part cannot be used (missing, unreadable, symlink loop, escapes its root)."""

    exit_code = 2


class TableParseError(LoopmlError):
    """A CSV or Parquet file could not be parsed as a table."""

    exit_code = 2
    http_status = 422


class RemoteUnavailableError(StoreError):
    """A data remote could not be reached, read or written."""


class InvalidFilterError(LoopmlError):
    """A run-search filter could not be parsed; the message points at the position."""

    exit_code = 2
