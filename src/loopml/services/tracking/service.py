"""The tracking service: runs, params, tags, metric history, artifacts, search, deletion."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.domain.ids import new_id
from loopml.domain.tracking import MetricPoint, Run, RunStatus
from loopml.errors import ConflictError, InvalidParameterError, NotFoundError
from loopml.services.tracking.validation import check_key, check_step, check_value, param_text

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from loopml.settings import Settings
    from loopml.stores.artifacts.cas import ContentStore, ObjectRef
    from loopml.stores.metadata.database import Database

_DBL_MAX = 1.7976931348623157e308
_CHUNK = 2000  # ids per IN list when loading runs: one query per table for most searches


def encode_value(v: float) -> tuple[float | None, int]:
    """(stored value, special flag): NaN -> (NULL, 1), +inf -> (+DBL_MAX, 2), -inf -> (-DBL_MAX, 3)."""
    if math.isnan(v):
        return None, 1
    if v == math.inf:
        return _DBL_MAX, 2
    if v == -math.inf:
        return -_DBL_MAX, 3
    return v, 0


def decode_value(value: float | None, special: int) -> float:
    if special == 1:
        return math.nan
    if special == 2:
        return math.inf
    if special == 3:
        return -math.inf
    return float(value) if value is not None else math.nan


_HISTORY_COLUMNS = ("run_id", "key", "step", "ts", "value", "special")
_INF = math.inf


def _metric_rows(run_id: str, metrics: Sequence[MetricPoint],
                 now: float) -> tuple[list[tuple[Any, ...]], dict[str, tuple[Any, ...]]]:
    """History rows (in ``_HISTORY_COLUMNS`` order) and the latest row per key; checks every point.

    The hot path of ingest: a key is checked once per batch and plain floats and ints skip
    the general checks.
    """
    rows: list[tuple[Any, ...]] = []
    latest: dict[str, tuple[Any, ...]] = {}
    checked: set[str] = set()
    for p in metrics:
        key = p.key
        if type(key) is not str or key not in checked:
            checked.add(check_key(key))
        value = p.value
        if type(value) is not float:
            value = check_value(key, value)
        step = p.step
        if type(step) is not int:
            step = check_step(step)
        ts = float(p.ts) if p.ts else now
        if value != value or value == _INF or value == -_INF:
            stored, special = encode_value(value)
            row: tuple[Any, ...] = (run_id, key, step, ts, stored, special)
        else:
            row = (run_id, key, step, ts, value, 0)
        rows.append(row)
        cur = latest.get(key)
        if cur is None or step > cur[2] or (step == cur[2] and ts >= cur[3]):
            latest[key] = row
    return rows, latest


def rows_of_runs(conn: Connection, table: Any, columns: tuple[str, ...], run_ids: list[str]) -> list[tuple[Any, ...]]:
    """``SELECT columns FROM table WHERE run_id IN run_ids``, as plain tuples from the driver's cursor.

    Loading a search's runs spends most of its time here; SQLAlchemy's expanding IN binds
    each id through its coercion machinery, which doubled the cost for hundreds of ids, and
    its result rows cost another fifth. The caller's transaction has begun (it read the runs).
    A driver error is raised as SQLAlchemy would have raised it, so ``Database`` maps it.
    """
    from sqlalchemy.exc import DBAPIError

    cols = ", ".join(f'"{c}"' for c in columns)
    args: Any
    if conn.dialect.name == "postgresql":
        sql, args = f'SELECT {cols} FROM {table.name} WHERE run_id = ANY(%(ids)s)', {"ids": list(run_ids)}
    else:
        sql, args = f'SELECT {cols} FROM {table.name} WHERE run_id IN ({",".join("?" * len(run_ids))})', run_ids
    driver_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, args)
        return list(cursor.fetchall())
    except driver_error as exc:
        raise DBAPIError.instance(sql, args, exc, driver_error, dialect=conn.dialect) from exc
    finally:
        cursor.close()


def _run_columns() -> tuple[Any, ...]:
    """The columns of ``tracking_runs`` that make a Run, in the order ``TrackingService._load`` unpacks them."""
    from loopml.stores.metadata.schema.tracking import runs

    c = runs.c
    return c.id, c.experiment, c.name, c.status, c.start_time, c.end_time, c.parent_id, c.error, c.deleted


class TrackingService:
    """Runs and everything logged to them, in the metadata store and the content store."""

    def __init__(self, db: Database, objects: ContentStore, settings: Settings, *, data: Any = None) -> None:
        self.db = db
        self.objects = objects
        self.settings = settings
        self._data = data  # the DataService, or a callable giving it (the workspace shares its own)

    # -- writing -------------------------------------------------------------------

    def create_run(self, experiment: str, *, name: str | None = None, parent_id: str | None = None,
                   params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None,
                   environment: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        from sqlalchemy import insert, select

        from loopml.stores.metadata.database import append_event
        from loopml.stores.metadata.schema.tracking import params as params_t
        from loopml.stores.metadata.schema.tracking import run_environments, runs
        from loopml.stores.metadata.schema.tracking import tags as tags_t

        if not isinstance(experiment, str) or not experiment.strip() or len(experiment) > 200:
            raise InvalidParameterError("experiment", "create_run", "a non-empty string of at most 200 characters",
                                        experiment)
        if name is not None and (not isinstance(name, str) or len(name) > 250):
            raise InvalidParameterError("name", "create_run", "a string of at most 250 characters", name)
        if run_id is not None and (not isinstance(run_id, str) or not run_id or len(run_id) > 32):
            raise InvalidParameterError("run_id", "create_run", "a string of 1 to 32 characters", run_id)
        param_rows = self._param_rows(params or {}, "param")
        tag_rows = self._param_rows(tags or {}, "tag")
        rid = run_id or new_id()
        with self.db.write() as conn:
            if parent_id is not None:
                self._require(conn, parent_id)
            if run_id is not None and conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first():
                raise ConflictError(f"A run with id {run_id!r} already exists.", hint="Use another id or none.")
            conn.execute(insert(runs).values(
                id=rid, experiment=experiment, name=name, status=RunStatus.RUNNING.value, start_time=time.time(),
                end_time=None, parent_id=parent_id, error=None, deleted=False))
            if environment:
                conn.execute(insert(run_environments).values(run_id=rid, environment=dict(environment)))
            if param_rows:
                conn.execute(insert(params_t), [{"run_id": rid, "key": k, "value": v} for k, v in param_rows.items()])
            if tag_rows:
                conn.execute(insert(tags_t), [{"run_id": rid, "key": k, "value": v} for k, v in tag_rows.items()])
            append_event(conn, actor=self.settings.actor, action="run.create", object_type="run", object_id=rid,
                         details={"experiment": experiment, "parent_id": parent_id})
        return rid

    @staticmethod
    def _param_rows(values: Mapping[str, Any], what: str) -> dict[str, str]:
        if not isinstance(values, Mapping):
            raise InvalidParameterError(f"{what}s", f"log_{what}s", "a mapping of key to value", values)
        return {check_key(k, what): param_text(k, v, what) for k, v in values.items()}

    def _require(self, conn: Connection, run_id: str, *, whole: bool = False) -> Any:
        """The run's row (only its id unless ``whole``); NotFoundError if none."""
        from sqlalchemy import select

        from loopml.stores.metadata.schema.tracking import runs

        row = conn.execute(select(*(_run_columns() if whole else (runs.c.id,))).where(runs.c.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"No run with id {run_id!r}.", hint="List runs with `loopml runs ls`.")
        return row

    def log_batch(self, run_id: str, *, metrics: Sequence[MetricPoint] = (), params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, str] | None = None, batch_id: str | None = None) -> None:
        """Log metrics, params and tags in one transaction; a ``batch_id`` already applied is a no-op."""
        from sqlalchemy import insert, select

        from loopml.stores.metadata.database import insert_rows
        from loopml.stores.metadata.schema.tracking import batches, metric_history
        from loopml.stores.metadata.schema.tracking import params as params_t

        now = time.time()
        rows, latest = _metric_rows(run_id, metrics, now)
        param_rows = self._param_rows(params or {}, "param")
        tag_rows = self._param_rows(tags or {}, "tag")
        with self.db.write() as conn:
            if batch_id is not None:
                if conn.execute(select(batches.c.batch_id).where(batches.c.batch_id == batch_id)).first():
                    return
                conn.execute(insert(batches).values(batch_id=batch_id, run_id=run_id, ts=now))
            self._require(conn, run_id)
            if param_rows:
                existing = dict(conn.execute(select(params_t.c.key, params_t.c.value).where(
                    params_t.c.run_id == run_id, params_t.c.key.in_(list(param_rows)))).all())
                for k, v in param_rows.items():
                    if k in existing and existing[k] != v:
                        raise ConflictError(
                            f"Param {k!r} of run {run_id!r} is already {existing[k]!r}; got {v!r}.",
                            hint="Params are immutable; log a new key or start a new run.")
                new = [{"run_id": run_id, "key": k, "value": v} for k, v in param_rows.items() if k not in existing]
                if new:
                    conn.execute(insert(params_t), new)
            if tag_rows:
                self._upsert_tags(conn, run_id, tag_rows)
            if rows:
                insert_rows(conn, metric_history, _HISTORY_COLUMNS, rows)
                self._upsert_latest(conn, [dict(zip(_HISTORY_COLUMNS, r, strict=True)) for r in latest.values()])

    def _dialect_insert(self, conn: Connection, table: Any) -> Any:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def _upsert_tags(self, conn: Connection, run_id: str, tag_rows: dict[str, str]) -> None:
        from loopml.stores.metadata.schema.tracking import tags as tags_t

        stmt = self._dialect_insert(conn, tags_t)
        stmt = stmt.on_conflict_do_update(index_elements=["run_id", "key"], set_={"value": stmt.excluded.value})
        conn.execute(stmt, [{"run_id": run_id, "key": k, "value": v} for k, v in tag_rows.items()])

    def _upsert_latest(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        from sqlalchemy import and_, or_

        from loopml.stores.metadata.schema.tracking import latest_metrics as t

        stmt = self._dialect_insert(conn, t)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "key"],
            set_={"value": ex.value, "special": ex.special, "step": ex.step, "ts": ex.ts},
            where=or_(ex.step > t.c.step, and_(ex.step == t.c.step, ex.ts >= t.c.ts)),
        )
        conn.execute(stmt, rows)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.log_batch(run_id, tags=tags)

    def log_artifact(self, run_id: str, path: str | Path, name: str | None = None) -> ObjectRef:
        from sqlalchemy import delete, insert

        from loopml.stores.metadata.database import append_event
        from loopml.stores.metadata.schema.tracking import artifacts

        p = Path(path)
        if not p.is_file():
            raise NotFoundError(f"No file at {str(p)!r} to log as an artifact.", hint="Check the path.")
        with self.db.read() as conn:
            self._require(conn, run_id)
        ref = self.objects.put_file(p)
        art_name = name or p.name
        with self.db.write() as conn:
            conn.execute(delete(artifacts).where(artifacts.c.run_id == run_id, artifacts.c.name == art_name))
            conn.execute(insert(artifacts).values(run_id=run_id, name=art_name, digest=ref.digest, size=ref.size,
                                                  ts=time.time()))
            append_event(conn, actor=self.settings.actor, action="run.log_artifact", object_type="run",
                         object_id=run_id, details={"name": art_name, "digest": ref.digest})
        return ref

    def log_artifact_bytes(self, run_id: str, data: bytes, name: str) -> ObjectRef:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / Path(name).name
            p.write_bytes(data)
            return self.log_artifact(run_id, p, name=name)

    def list_artifacts(self, run_id: str) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.tracking import artifacts

        with self.db.read() as conn:
            rows = conn.execute(select(artifacts).where(artifacts.c.run_id == run_id).order_by(artifacts.c.name))
            return [dict(r._mapping) for r in rows]

    def end_run(self, run_id: str, status: RunStatus | str = RunStatus.FINISHED, error: str | None = None) -> None:
        from sqlalchemy import update

        from loopml.stores.metadata.database import append_event
        from loopml.stores.metadata.schema.tracking import runs

        try:
            st = RunStatus(str(status).upper())
        except ValueError:
            raise InvalidParameterError("status", "end_run", f"one of {[s.value for s in RunStatus]}",
                                        status) from None
        with self.db.write() as conn:
            self._require(conn, run_id)
            conn.execute(update(runs).where(runs.c.id == run_id).values(
                status=st.value, end_time=time.time(), error=error))
            append_event(conn, actor=self.settings.actor, action="run.end", object_type="run", object_id=run_id,
                         details={"status": st.value})

    # -- reading -------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        with self.db.read() as conn:
            row = self._require(conn, run_id, whole=True)
            return self._load(conn, [row])[0]

    def _load(self, conn: Connection, rows: Sequence[Any], *, environment: bool = True) -> list[Run]:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.tracking import (
            latest_metrics,
            params,
            run_environments,
            tags,
        )

        out: dict[str, Run] = {}
        # unpacked by position (the rows hold ``_run_columns()``): a Row's attribute access cost
        # more than building the Run
        for run_id, experiment, name, status, start_time, end_time, parent_id, error, deleted in rows:
            out[run_id] = Run(id=run_id, experiment=experiment, name=name, status=RunStatus(status),
                              start_time=start_time, end_time=end_time, parent_id=parent_id, error=error,
                              deleted=bool(deleted))
        ids = list(out)
        params_of = {r.id: r.params for r in out.values()}
        tags_of = {r.id: r.tags for r in out.values()}
        metrics_of = {r.id: r.metrics for r in out.values()}
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            if environment:
                e = run_environments
                for run_id, env in conn.execute(
                        select(e.c.run_id, e.c.environment).where(e.c.run_id.in_(chunk))).all():
                    out[run_id].environment = dict(env or {})
            for t, of in ((params, params_of), (tags, tags_of)):
                for run_id, key, value in rows_of_runs(conn, t, ("run_id", "key", "value"), chunk):
                    of[run_id][key] = value
            for run_id, key, value, special in rows_of_runs(
                    conn, latest_metrics, ("run_id", "key", "value", "special"), chunk):
                metrics_of[run_id][key] = decode_value(value, special) if special else value
        return list(out.values())

    def search_runs(self, filter: str | None = None, *, experiments: Sequence[str] | None = None,
                    order_by: Sequence[str] | None = None, limit: int | None = None,
                    include_deleted: bool = False, include_environment: bool = True) -> list[Run]:
        """Runs matching ``filter`` (the search language), newest first unless ``order_by`` says otherwise.

        ``include_environment=False`` leaves each run's ``environment`` empty: it is the largest
        part of a run (the package list) and listing or comparing runs does not need it.
        """
        from sqlalchemy import func, literal_column, select

        from loopml.services.tracking.search import compile_filter, parse_filter, parse_order_by
        from loopml.stores.metadata.schema.tracking import latest_metrics, params, runs, tags

        if isinstance(experiments, str):
            experiments = [experiments]
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InvalidParameterError("limit", "search_runs", "a positive integer", limit)
        stmt = select(*_run_columns())
        if filter and filter.strip():
            stmt = stmt.where(compile_filter(parse_filter(filter)))
        if experiments:
            in_experiments: Any = runs.c.experiment.in_(list(experiments))
            if self.db.is_sqlite and filter and filter.strip():
                # SQLite keeps no statistics and takes an equality on an indexed column for a
                # selective one: it scanned every run of the experiment and probed the filter's
                # matches for each. Marked as likely true, it starts from the matches instead.
                # Both plans build the filter's match lists in full; starting from them adds one
                # lookup per match (a 10-run experiment beside 10,000 runs, many matching: 3 -> 6 ms),
                # while the experiment scan grew with the experiment (an experiment of 10,000 runs:
                # 6 -> 3 ms; larger ones without bound).
                in_experiments = func.likelihood(in_experiments, literal_column("0.9"))
            stmt = stmt.where(in_experiments)
        if not include_deleted:
            stmt = stmt.where(runs.c.deleted.is_(False))
        orders: list[Any] = []
        for item in order_by or ():
            kind, key, desc = parse_order_by(item)
            col: Any
            if kind == "attribute":
                col = runs.c.id if key == "run_id" else (
                    (runs.c.end_time - runs.c.start_time) if key == "duration" else runs.c[key])
            else:
                t = latest_metrics if kind == "metrics" else params if kind == "params" else tags
                col = select(t.c.value).where(t.c.run_id == runs.c.id, t.c.key == key).scalar_subquery()
            orders.append((col.desc() if desc else col.asc()).nulls_last())
        orders += [runs.c.start_time.desc(), runs.c.id]
        stmt = stmt.order_by(*orders)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
            return self._load(conn, rows, environment=include_environment)

    def metric_history(self, run_id: str, key: str, *, max_points: int | None = None) -> list[MetricPoint]:
        """All points of a metric by step; with ``max_points``, downsampled keeping each bucket's min and max."""
        from sqlalchemy import select

        from loopml.stores.metadata.schema.tracking import metric_history as h

        with self.db.read() as conn:
            self._require(conn, run_id)
            rows = conn.execute(select(h.c.step, h.c.ts, h.c.value, h.c.special).where(
                h.c.run_id == run_id, h.c.key == key).order_by(h.c.step, h.c.ts, h.c.seq)).all()
        points = [MetricPoint(key, decode_value(v, s), int(step), float(ts)) for step, ts, v, s in rows]
        if max_points is None or len(points) <= max_points:
            return points
        if max_points < 2:
            raise InvalidParameterError("max_points", "metric_history", "an integer >= 2", max_points)
        return downsample(points, max_points)

    def list_experiments(self) -> list[str]:
        from sqlalchemy import select

        from loopml.stores.metadata.schema.tracking import runs

        with self.db.read() as conn:
            return [r[0] for r in conn.execute(select(runs.c.experiment).distinct().order_by(runs.c.experiment))]

    def delete_run(self, run_id: str, *, hard: bool = False) -> None:
        """Soft delete hides the run from search; hard delete removes its rows and unreferenced artifacts."""
        from sqlalchemy import delete, select, update

        from loopml.stores.metadata.database import append_event
        from loopml.stores.metadata.schema import tracking as T

        with self.db.write() as conn:
            self._require(conn, run_id)
            if not hard:
                conn.execute(update(T.runs).where(T.runs.c.id == run_id).values(deleted=True))
                append_event(conn, actor=self.settings.actor, action="run.delete", object_type="run",
                             object_id=run_id, details={"hard": False})
                return
            # children go too, so nothing is left pointing at a missing parent
            ids = [run_id]
            frontier = [run_id]
            while frontier:
                kids = [r[0] for r in conn.execute(select(T.runs.c.id).where(T.runs.c.parent_id.in_(frontier)))]
                ids += kids
                frontier = kids
            digests = {r[0] for r in conn.execute(select(T.artifacts.c.digest).where(T.artifacts.c.run_id.in_(ids)))}
            for t in (T.params, T.tags, T.metric_history, T.latest_metrics, T.artifacts, T.batches,
                      T.run_environments):
                conn.execute(delete(t).where(t.c.run_id.in_(ids)))
            conn.execute(delete(T.runs).where(T.runs.c.id.in_(ids)))
            append_event(conn, actor=self.settings.actor, action="run.delete", object_type="run",
                         object_id=run_id, details={"hard": True, "runs": ids})
        if digests:
            still = self.db.referenced_digests()
            for d in digests - still:
                self.objects.delete(d)

    def use_dataset(self, run_id: str, ref: str) -> str:
        """Record that the run used dataset version ``ref``; returns the version id."""
        if self._data is None:
            from loopml.services.data import DataService

            self._data = DataService(self.db, self.objects, self.settings)
        data = self._data() if callable(self._data) else self._data
        with self.db.read() as conn:
            self._require(conn, run_id)
        version = data.resolve(ref)
        version_id = str(getattr(version, "id", version))
        data.record_use(version_id, consumer_type="run", consumer_id=run_id)
        self.log_batch(run_id, tags={f"loopml.dataset.{ref.split('@')[0]}": version_id})
        return version_id


def downsample(points: list[MetricPoint], max_points: int) -> list[MetricPoint]:
    """Keep first and last, and the min and max of each bucket, so spikes survive."""
    buckets = max(1, (max_points - 2) // 2)
    inner = points[1:-1]
    size = math.ceil(len(inner) / buckets)
    out = [points[0]]
    for i in range(0, len(inner), size):
        chunk = inner[i:i + size]
        finite = [p for p in chunk if not math.isnan(p.value)] or chunk
        lo = min(finite, key=lambda p: p.value)
        hi = max(finite, key=lambda p: p.value)
        out += sorted({id(lo): lo, id(hi): hi}.values(), key=lambda p: (p.step, p.ts))
    out.append(points[-1])
    return out
