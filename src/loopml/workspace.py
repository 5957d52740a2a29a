"""The workspace: reads settings once and wires the stores into the services."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import ConfigError, WorkspaceExistsError, WorkspaceNotFoundError
from loopml.settings import (
    DEFAULT_DB_FILENAME,
    DEFAULT_OBJECTS_DIRNAME,
    WORKSPACE_DIRNAME,
    Settings,
    resolve_settings,
    write_config_file,
)

if TYPE_CHECKING:
    from loopml.domain.events import Event
    from loopml.progress import Progress
    from loopml.services.data import DataService
    from loopml.services.maintenance import DoctorReport
    from loopml.services.pipelines import PipelineService
    from loopml.services.tracking import TrackingService
    from loopml.stores.artifacts.cas import ContentStore
    from loopml.stores.metadata.database import Database


def find_workspace_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest directory at or above ``start`` that holds ``.loopml/`` (like git)."""
    here = Path(start or os.getcwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / WORKSPACE_DIRNAME).is_dir():
            return candidate
    raise WorkspaceNotFoundError(
        f"No loopml workspace at or above {str(here)!r}.",
        hint="Run `loopml init` there first, or pass the workspace path.",
    )


class Workspace:
    """A loopml workspace: its settings, metadata database, artifact store and services.

    Stores and services are created on first use, so opening a workspace is cheap.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        return f"Workspace({str(self.settings.root)!r})"

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
    ) -> Workspace:
        """Open the workspace at ``path`` or the nearest one above the current directory."""
        root = find_workspace_root(path)
        return cls(resolve_settings(root, env))

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str] = ".",
        *,
        db_url: str | None = None,
        artifacts: str | None = None,
        s3_endpoint_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Workspace:
        """Create ``.loopml/`` with a config file, the database schema and the object store.

        Never overwrites an existing workspace; raises WorkspaceExistsError instead.
        """
        root = Path(path).resolve()
        ws_dir = root / WORKSPACE_DIRNAME
        if ws_dir.exists():
            raise WorkspaceExistsError(
                f"A loopml workspace already exists at {str(ws_dir)!r}.",
                hint="Use it as it is (loopml status), or remove that directory to start over.",
            )
        config = {"db_url": f"sqlite:///{WORKSPACE_DIRNAME}/{DEFAULT_DB_FILENAME}",
                  "artifacts": f"{WORKSPACE_DIRNAME}/{DEFAULT_OBJECTS_DIRNAME}"}
        config.update({k: v for k, v in
                       {"db_url": db_url, "artifacts": artifacts, "s3_endpoint_url": s3_endpoint_url}.items()
                       if v})
        try:
            root.mkdir(parents=True, exist_ok=True)
            ws_dir.mkdir()
        except OSError as exc:
            raise ConfigError(
                f"Cannot create the workspace directory {str(ws_dir)!r}: {exc.strerror}.",
                hint="Choose a directory you can write to.",
            ) from exc
        try:
            write_config_file(ws_dir / "config.toml", config)
            ws = cls(resolve_settings(root, env))
            ws.objects.ensure()
            _ = ws.db  # creates and migrates the schema
        except BaseException:
            # Leave nothing half-made behind; only what init itself created is removed.
            import shutil

            shutil.rmtree(ws_dir, ignore_errors=True)
            raise
        return ws

    # -- stores ------------------------------------------------------------------------

    @cached_property
    def db(self) -> Database:
        from loopml.stores.metadata.database import Database

        return Database.open(self.settings.db_url)

    @cached_property
    def objects(self) -> ContentStore:
        from loopml.stores.artifacts.backends import open_backend
        from loopml.stores.artifacts.cas import ContentStore

        return ContentStore(
            open_backend(self.settings.artifacts, self.settings.storage_options),
            staging_dir=self.settings.workspace_dir if self.settings.workspace_dir.is_dir() else None,
        )

    # -- services (each part owns its service module; constructed on first use) ----------

    @cached_property
    def data(self) -> DataService:
        from loopml.services.data import DataService

        return DataService(lambda: self.db, self.objects, self.settings)  # opened when first needed

    @cached_property
    def tracking(self) -> TrackingService:
        from loopml.services.tracking import TrackingService

        return TrackingService(self.db, self.objects, self.settings, data=lambda: self.data)  # one DataService

    @cached_property
    def pipelines(self) -> PipelineService:
        from loopml.services.pipelines import PipelineService

        # Passed as callables: the other parts load only when a run records to them or reads a dataset.
        return PipelineService(self.db, self.objects, self.settings,
                               tracking=lambda: self.tracking, data=lambda: self.data)

    # -- upkeep --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Where everything lives and how much is there."""
        from loopml.services.status import describe_workspace

        return describe_workspace(self.settings)

    def doctor(self, *, verify: bool = False, progress: Progress | None = None) -> DoctorReport:
        from loopml.services.maintenance import check_workspace

        return check_workspace(self.db, self.objects, verify=verify, progress=progress)

    def events(self, *, object_type: str | None = None, object_id: str | None = None,
               action: str | None = None, actor: str | None = None, since: float | None = None,
               limit: int | None = 100, newest_first: bool = True) -> list[Event]:
        """The audit trail: who did what to which object, newest first (see ``services.audit``)."""
        from loopml.services.audit import list_events

        return list_events(self.db, object_type=object_type, object_id=object_id, action=action, actor=actor,
                           since=since, limit=limit, newest_first=newest_first)

    def close(self) -> None:
        db = self.__dict__.pop("db", None)
        if db is not None:
            db.dispose()
        data = self.__dict__.pop("data", None)
        if data is not None:
            data.close()
        objects = self.__dict__.pop("objects", None)
        if objects is not None:
            objects.close()
