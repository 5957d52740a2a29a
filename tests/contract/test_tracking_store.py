"""Tracking service behaviour on every metadata backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loopml.domain.tracking import MetricPoint, RunStatus
from loopml.errors import ConflictError, InvalidFilterError, InvalidParameterError, NotFoundError
from loopml.services.tracking import TrackingService
from loopml.settings import Settings
from loopml.stores.artifacts.backends import LocalBackend
from loopml.stores.artifacts.cas import ContentStore
from loopml.stores.metadata.database import Database


@pytest.fixture
def svc(db_url: str, tmp_path: Path) -> TrackingService:
    db = Database.open(db_url)
    objects = ContentStore(LocalBackend(tmp_path / "objects"))
    objects.ensure()
    return TrackingService(db, objects, Settings(root=tmp_path, db_url=db_url, artifacts=str(tmp_path / "objects"), actor="tester"))


def test_nan_and_infinities_round_trip(svc: TrackingService) -> None:
    rid = svc.create_run("e")
    svc.log_batch(rid, metrics=[MetricPoint("n", math.nan, 0), MetricPoint("p", math.inf, 0),
                                MetricPoint("m", -math.inf, 0), MetricPoint("f", 1.5, 0)])
    run = svc.get_run(rid)
    assert math.isnan(run.metrics["n"])
    assert run.metrics["p"] == math.inf and run.metrics["m"] == -math.inf and run.metrics["f"] == 1.5
    assert math.isnan(svc.metric_history(rid, "n")[0].value)
    assert [r.id for r in svc.search_runs("metrics.p > 1e300")] == [rid]


def test_batch_id_makes_retries_idempotent_and_latest_is_highest_step(svc: TrackingService) -> None:
    rid = svc.create_run("e")
    batch = [MetricPoint("loss", 1.0, 5, 1.0), MetricPoint("loss", 2.0, 1, 2.0)]
    svc.log_batch(rid, metrics=batch, batch_id="b-1")
    svc.log_batch(rid, metrics=batch, batch_id="b-1")
    assert len(svc.metric_history(rid, "loss")) == 2
    assert svc.get_run(rid).metrics["loss"] == 1.0


def test_params_are_immutable_and_bad_input_is_rejected(svc: TrackingService) -> None:
    rid = svc.create_run("e", params={"lr": 0.1})
    svc.log_batch(rid, params={"lr": 0.1})
    with pytest.raises(ConflictError, match="lr"):
        svc.log_batch(rid, params={"lr": 0.2})
    with pytest.raises(InvalidParameterError):
        svc.log_batch(rid, metrics=[MetricPoint("acc", "high", 0)])  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        svc.log_batch(rid, metrics=[MetricPoint("x" * 300, 1.0, 0)])
    with pytest.raises(NotFoundError):
        svc.get_run("nope")


def test_search_filter_order_and_limit(svc: TrackingService) -> None:
    ids = []
    for i, (model, team) in enumerate([("rf", "a"), ("lr", "b"), ("rf", "c"), ("lr", "z")]):
        rid = svc.create_run("churn", params={"model": model}, tags={"team": team})
        svc.log_batch(rid, metrics=[MetricPoint("acc", 0.85 + i * 0.03, 0)])
        ids.append(rid)
    svc.end_run(ids[0], RunStatus.FAILED, error="x")
    found = svc.search_runs("metrics.acc > 0.87 and (params.model = 'rf' or tags.team in ('a','b'))",
                            order_by=["metrics.acc desc"], limit=20)
    assert [r.id for r in found] == [ids[2], ids[1]]
    assert [r.id for r in svc.search_runs("status = 'FAILED'")] == [ids[0]]
    assert [r.id for r in svc.search_runs(order_by=["metrics.acc"], limit=2)] == ids[:2]
    assert {r.id for r in svc.search_runs("tags.team like 'a%' or not params.model = 'rf'")} == {ids[0], ids[1], ids[3]}
    # values are bound parameters: quotes inside a value cannot change the query
    assert svc.search_runs("params.model = 'rf'' or 1=1 --'") == []
    with pytest.raises(InvalidFilterError, match="position"):
        svc.search_runs("metrics.acc >")


def test_nested_runs_soft_and_hard_delete_collect_artifacts(svc: TrackingService, tmp_path: Path) -> None:
    parent = svc.create_run("e")
    child = svc.create_run("e", parent_id=parent)
    f = tmp_path / "model.bin"
    f.write_bytes(b"weights-unique-to-this-test")
    ref = svc.log_artifact(child, f)
    svc.delete_run(parent)
    assert svc.search_runs() != [] and {r.id for r in svc.search_runs()} == {child}
    assert svc.get_run(parent).deleted
    svc.delete_run(parent, hard=True)
    with pytest.raises(NotFoundError):
        svc.get_run(child)
    assert not svc.objects.has(ref.digest)


def test_history_downsampling_keeps_extremes(svc: TrackingService) -> None:
    rid = svc.create_run("e")
    values = [0.0] * 1000
    values[537] = 99.0
    values[811] = -7.0
    svc.log_batch(rid, metrics=[MetricPoint("v", v, i) for i, v in enumerate(values)])
    pts = svc.metric_history(rid, "v", max_points=50)
    assert len(pts) <= 52
    assert max(p.value for p in pts) == 99.0 and min(p.value for p in pts) == -7.0


def test_numeric_param_comparison_skips_non_numeric_values(svc: TrackingService) -> None:
    # params are text; a numeric comparison must not fail on (PostgreSQL) or coerce (SQLite to 0)
    # values that are not numbers: those runs simply do not match
    values = {"five": 5, "neg": -2.5, "exp": "1e3", "spaced": " 7 ", "word": "rf", "empty": "",
              "nan": "nan", "dotted": "1.2.3", "zero_word": "abc0"}
    ids = {name: svc.create_run("e", name=name, params={"x": v}) for name, v in values.items()}
    svc.create_run("e", name="no_x", params={"y": 10})

    def names(flt: str) -> set[str]:
        return {r.name for r in svc.search_runs(flt) if r.name}

    assert names("params.x > 3") == {"five", "exp", "spaced"}
    assert names("params.x <= 5") == {"five", "neg"}
    assert names("params.x > -100") == {"five", "neg", "exp", "spaced"}
    assert names("params.x >= 1000 or params.x = 'rf'") == {"exp", "word"}
    assert names("not params.x > 3 and params.x < 100") == {"neg"}
    # text comparisons are untouched
    assert names("params.x = '5'") == {"five"}
    assert set(ids) - names("params.x > 3") - names("params.x <= 3") == {"word", "empty", "nan", "dotted", "zero_word"}


def test_search_conditions_on_a_key_some_runs_lack(svc: TrackingService) -> None:
    a = svc.create_run("e", params={"model": "rf"}, tags={"team": "a"})
    b = svc.create_run("e", params={"model": "lr"})
    c = svc.create_run("e")
    svc.log_batch(a, metrics=[MetricPoint("acc", 0.95, 0)])
    svc.log_batch(b, metrics=[MetricPoint("acc", 0.80, 0)])

    def found(flt: str) -> set[str]:
        return {r.id for r in svc.search_runs(flt)}

    assert found("metrics.acc > 0.9 and params.model = 'rf'") == {a}
    assert found("params.model != 'rf'") == {b}  # a run without the key does not match !=
    assert found("not params.model = 'rf'") == {b, c}
    assert found("tags.team = null") == {b, c} and found("tags.team != null") == {a}
    assert found("metrics.acc < 0.9 or tags.team in ('a')") == {a, b}
    assert found("not metrics.acc > 0.9") == {b, c}


def _migrate(db: Database, target: str) -> None:
    from alembic import command
    from alembic.config import Config

    from loopml.stores.metadata.revisions import MIGRATIONS_DIR

    with db.engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        (command.downgrade if target != "head" else command.upgrade)(cfg, target)


def test_environment_migration_keeps_environments_both_ways(svc: TrackingService) -> None:
    import json

    from sqlalchemy import inspect, text

    from loopml.stores.metadata.schema import tracking as T

    db = svc.db
    with db.engine.connect() as conn:
        insp = inspect(conn)
        for name in ("tracking_runs", "tracking_run_environments"):
            declared = {c.name for c in T.metadata.tables[name].columns}
            assert {c["name"] for c in insp.get_columns(name)} == declared, name
    env = {"python": "3.11.7", "packages": {"numpy": "2.1.0"}, "git": {"commit": "abc", "dirty": False}}
    with_env = svc.create_run("e", environment=env)
    without_env = svc.create_run("e")
    _migrate(db, "0004")
    with db.engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT id, environment FROM tracking_runs")).all())
        assert "tracking_run_environments" not in inspect(conn).get_table_names()
    decoded = {k: v if isinstance(v, dict) else json.loads(v) for k, v in stored.items()}
    assert decoded == {with_env: env, without_env: {}}
    with db.engine.begin() as conn:  # a run written by the old schema
        conn.execute(text("INSERT INTO tracking_runs (id, experiment, name, status, start_time, end_time, parent_id, "
                          "environment, error, deleted) VALUES ('old1', 'e', NULL, 'FINISHED', 1.0, 2.0, NULL, "
                          ":env, NULL, :f)"), {"env": json.dumps({"python": "3.10"}), "f": False})
    _migrate(db, "head")
    db.engine.dispose()
    assert svc.get_run(with_env).environment == env
    assert svc.get_run("old1").environment == {"python": "3.10"}
    assert svc.get_run(without_env).environment == {}
    assert {r.id for r in svc.search_runs("status = 'FINISHED'")} == {"old1"}


def test_search_within_experiments_keeps_filter_experiment_and_deleted_apart(svc: TrackingService) -> None:
    made: dict[str, str] = {}
    for exp in ("a", "b"):
        for i, model in enumerate(("rf", "rf", "lr")):
            rid = svc.create_run(exp, name=f"{exp}{i}", params={"model": model})
            svc.log_batch(rid, metrics=[MetricPoint("acc", 0.8 + i * 0.05, 0)])
            made[f"{exp}{i}"] = rid
    svc.delete_run(made["a1"])

    def names(flt: str, experiments: list[str], **kw: object) -> list[str | None]:
        return [r.name for r in svc.search_runs(flt, experiments=experiments, **kw)]  # type: ignore[arg-type]

    assert names("params.model = 'rf'", ["a"]) == ["a0"]  # a1 is deleted, b0 and b1 are elsewhere
    assert names("params.model = 'rf'", ["a"], include_deleted=True) == ["a1", "a0"]
    # equal acc: newest first
    assert names("metrics.acc > 0.8", ["a", "b"], order_by=["metrics.acc desc"]) == ["b2", "a2", "b1"]
    assert names("metrics.acc > 0.8 and params.model = 'rf'", ["b"], limit=1) == ["b1"]
    assert names("params.model = 'svm'", ["a", "b"]) == []
    assert names("params.model = 'rf'", ["c"]) == []


def test_clustered_keys_migration_keeps_params_tags_and_latest_metrics_both_ways(svc: TrackingService) -> None:
    db = svc.db
    rid = svc.create_run("e", name="kept", params={"lr": 0.1, "model": "rf"}, tags={"team": "a"})
    svc.log_batch(rid, metrics=[MetricPoint("acc", 0.9, 3), MetricPoint("acc", 0.5, 1), MetricPoint("n", math.nan, 0)])

    def check(run_id: str) -> None:
        run = svc.get_run(run_id)
        assert run.params.items() >= {"lr": "0.1", "model": "rf"}.items() and run.tags == {"team": "a"}
        assert run.metrics["acc"] == 0.9 and math.isnan(run.metrics["n"])
        assert [r.id for r in svc.search_runs("metrics.acc > 0.8 and params.model = 'rf' and tags.team = 'a'")] == [run_id]

    _migrate(db, "0005")
    db.engine.dispose()
    check(rid)
    svc.log_batch(rid, params={"seed": 1})  # written by the old schema
    _migrate(db, "head")
    db.engine.dispose()
    check(rid)
    assert svc.get_run(rid).params["seed"] == "1"
    svc.log_batch(rid, metrics=[MetricPoint("acc", 0.95, 4)], tags={"team": "b"})
    assert svc.get_run(rid).metrics["acc"] == 0.95 and svc.get_run(rid).tags == {"team": "b"}


def test_a_database_error_while_loading_runs_is_mapped_like_any_other(svc: TrackingService) -> None:
    # the load reads through the driver's cursor; its errors must still reach Database's mapping
    # (SQLite: DatabaseUnavailableError), never escape as a bare driver exception
    from sqlalchemy import Column, MetaData, String, Table
    from sqlalchemy.exc import DBAPIError

    from loopml.errors import DatabaseUnavailableError
    from loopml.services.tracking.service import rows_of_runs

    missing = Table("tracking_no_such_table", MetaData(), Column("run_id", String))
    expected = DatabaseUnavailableError if svc.db.is_sqlite else DBAPIError
    with pytest.raises(expected, match="tracking_no_such_table"), svc.db.read() as conn:
        rows_of_runs(conn, missing, ("run_id",), ["r1"])
