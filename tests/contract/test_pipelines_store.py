"""Pipeline records on every metadata backend: runs, cache hits, schedules claimed once, triggers fired once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from tests.integration.pipelines_helpers import write_module

from loopml.errors import ConflictError, PipelineDefinitionError
from loopml.services.pipelines import PipelineService
from loopml.settings import Settings
from loopml.stores.artifacts.cas import open_content_store
from loopml.stores.metadata.database import Database

FLOW = """
import loopml

COUNTER = []
SEEN = []

@loopml.step(cache=False)
def tick(n: int = 1):
    COUNTER.append(n)
    return n

@loopml.step
def square(x):
    return x * x

@loopml.pipeline
def flow(n: int = 1, data: str = ""):
    SEEN.append(data)
    square(tick(n))
"""


class FakeVersion:
    def __init__(self, vid: str, name: str, version: int) -> None:
        self.id, self.name, self.version = vid, name, version


class FakeData:
    """Stands in for DataService: resolve(name) gives the latest version."""

    def __init__(self) -> None:
        self.versions: dict[str, list[FakeVersion]] = {}
        self.uses: list[tuple[str, str, str]] = []

    def add(self, name: str) -> FakeVersion:
        vs = self.versions.setdefault(name, [])
        v = FakeVersion(f"{name}-v{len(vs) + 1}", name, len(vs) + 1)
        vs.append(v)
        return v

    def resolve(self, ref: str) -> FakeVersion:
        name, _, ver = ref.partition("@")
        vs = self.versions[name]
        return vs[int(ver) - 1] if ver else vs[-1]

    def load_table(self, ref: str) -> Any:
        import pandas as pd

        v = self.resolve(ref)
        return pd.DataFrame({"x": list(range(v.version * 3))})

    def record_use(self, version_id: str, *, consumer_type: str, consumer_id: str, role: str = "input") -> None:
        self.uses.append((version_id, consumer_type, consumer_id))


@pytest.fixture
def service(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    db = Database.open(db_url)
    root = tmp_path / "root"
    (root / ".loopml").mkdir(parents=True)
    settings = Settings(root=root, db_url=db_url, artifacts=str(root / ".loopml" / "objects"), actor="tester")
    objects = open_content_store(settings.artifacts)
    objects.ensure()
    data = FakeData()
    svc = PipelineService(db, objects, settings, tracking=None, data=data)
    svc.fake_data = data  # type: ignore[attr-defined]
    yield svc
    db.dispose()


def test_runs_and_cache_hits_are_stored(service: PipelineService, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", FLOW)
    a = service.run(f"{mod}:flow", params={"n": 3})
    b = service.run(f"{mod}:flow", params={"n": 3})
    assert {s.name: str(s.status) for s in b.steps} == {"tick": "FINISHED", "square": "CACHED"}
    stored = service.get_run(b.id[-8:])
    assert stored.status == "FINISHED" and stored.params == {"n": 3}
    assert {s.name: s.inputs for s in stored.steps}["square"] == {"x": a.steps[0].output_digest}
    assert [r.id for r in service.list_runs()] == [b.id, a.id]


def test_a_schedule_slot_runs_once_even_with_two_schedulers(service: PipelineService, tmp_path: Path) -> None:
    import sys

    mod = write_module(tmp_path / "proj", FLOW)
    s = service.add_schedule("every-minute", f"{mod}:flow", "* * * * *", {"n": 2})
    now = s.created + 61
    other = PipelineService(service.db, service.objects, service.settings)  # a second scheduler (or a restart)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda svc=svc, name=name: results.extend(svc.tick(now, claimed_by=name)))
               for svc, name in ((service, "a"), (other, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[2] for r in results] == ["FINISHED"]
    assert len(sys.modules[mod].COUNTER) == 1
    # a restarted scheduler in the same minute runs nothing; the next minute runs once
    assert service.tick(now + 1) == []
    assert [r[2] for r in service.tick(now + 60)] == ["FINISHED"]
    assert len(service.slots("every-minute")) == 2


def test_schedule_input_is_checked(service: PipelineService, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", FLOW)
    with pytest.raises(PipelineDefinitionError, match="cron expression 'every day'"):
        service.add_schedule("x", f"{mod}:flow", "every day")
    with pytest.raises(PipelineDefinitionError, match="'m' does not match"):
        service.add_schedule("x", f"{mod}:flow", "0 3 * * *", {"m": 1})
    service.add_schedule("x", f"{mod}:flow", "0 3 * * *")
    with pytest.raises(ConflictError):
        service.add_schedule("x", f"{mod}:flow", "0 4 * * *")
    service.remove_schedule("x")
    assert service.list_schedules() == []


def test_trigger_runs_once_per_new_dataset_version(service: PipelineService, tmp_path: Path) -> None:
    import sys

    mod = write_module(tmp_path / "proj", FLOW)
    data = service.fake_data  # type: ignore[attr-defined]
    data.add("iris")
    service.add_trigger("retrain", f"{mod}:flow", on_dataset="iris", pass_as="data")
    assert service.tick() == []  # the version that existed at registration does not fire
    data.add("iris")
    fired = service.tick()
    assert [(w, st) for w, _, st in fired] == [("trigger retrain", "FINISHED")]
    assert service.tick() == []
    assert len(sys.modules[mod].COUNTER) == 1
    assert sys.modules[mod].SEEN[-1] == "iris@v2"  # the pipeline got the new version
    with pytest.raises(PipelineDefinitionError, match="as 'dataset', which is not a parameter of pipeline 'flow'"):
        service.add_trigger("x", f"{mod}:flow", on_dataset="iris", pass_as="dataset")


def test_alert_trigger_fires_once_per_event_key(service: PipelineService, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", FLOW)
    service.add_trigger("on-drift", f"{mod}:flow", on_alert="drift")
    assert [st for _, _, st in service.emit_event("alert", "drift", "alert-1")] == ["FINISHED"]
    assert [st for _, _, st in service.emit_event("alert", "drift", "alert-1")] == ["already fired"]
    assert service.emit_event("alert", "other", "alert-2") == []


def test_dataset_input_is_resolved_recorded_and_cached(service: PipelineService, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", """
        import loopml
        from loopml.sdk.pipelines import dataset

        @loopml.step
        def count(df):
            return len(df)

        @loopml.pipeline
        def uses_data():
            count(dataset("iris"))
    """)
    data = service.fake_data  # type: ignore[attr-defined]
    data.add("iris")
    run = service.run(f"{mod}:uses_data")
    by = {s.name: s for s in run.steps}
    assert by["dataset:iris"].func == "dataset:iris@v1" and by["count"].status == "FINISHED"
    assert data.uses == [("iris-v1", "pipeline_run", run.id)]
    again = service.run(f"{mod}:uses_data")
    assert {str(s.status) for s in again.steps} == {"CACHED"}
    data.add("iris")
    third = service.run(f"{mod}:uses_data")
    assert {s.name: str(s.status) for s in third.steps} == {"dataset:iris": "FINISHED", "count": "FINISHED"}


def test_pipelines_migration_downgrades_and_upgrades_cleanly(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect

    from loopml.stores.metadata.revisions import MIGRATIONS_DIR

    db = Database.open(db_url)
    tables = {"pipeline_runs", "pipeline_step_runs", "pipeline_step_inputs", "pipeline_schedules",
              "pipeline_schedule_slots", "pipeline_triggers", "pipeline_trigger_firings"}
    try:
        for target, present in (("0003", False), ("head", True)):
            with db.engine.begin() as conn:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
                cfg.attributes["connection"] = conn
                (command.downgrade if target == "0003" else command.upgrade)(cfg, target)
            with db.engine.connect() as conn:
                names = set(inspect(conn).get_table_names())
            assert (tables <= names) is present and (not tables & names or present)
    finally:
        db.dispose()
