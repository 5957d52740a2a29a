"""Tracking routes: runs, batched metrics, artifacts, search over REST."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from loopml.domain.tracking import MetricPoint, Run
from loopml.server.schemas import (
    CreateRunRequest,
    EndRunRequest,
    LogBatchRequest,
    SearchRequest,
    SetTagsRequest,
    UseDatasetRequest,
)

MAX_ARTIFACT_BYTES = 2 * 1024**3


def _num(v: float) -> Any:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def run_to_json(run: Run) -> dict[str, Any]:
    d = dataclasses.asdict(run)
    d["status"] = str(run.status)
    d["metrics"] = {k: _num(v) for k, v in run.metrics.items()}
    return d


def build_router(service_factory: Any) -> APIRouter:
    """Routes calling ``service_factory()`` (a TrackingService) for each request."""
    r = APIRouter(prefix="/api/tracking", tags=["tracking"])

    @r.post("/runs")
    def create_run(req: CreateRunRequest) -> dict[str, str]:
        rid = service_factory().create_run(req.experiment, name=req.name, parent_id=req.parent_id,
                                           params=req.params, tags=req.tags, environment=req.environment,
                                           run_id=req.run_id)
        return {"run_id": rid}

    @r.post("/runs/{run_id}/batch")
    def log_batch(run_id: str, req: LogBatchRequest) -> dict[str, int]:
        pts = [MetricPoint(k, v, s, t) for k, v, s, t in req.metrics]
        service_factory().log_batch(run_id, metrics=pts, params=req.params, tags=req.tags,
                                    batch_id=req.batch_id)
        return {"metrics": len(pts)}

    @r.post("/runs/{run_id}/tags")
    def set_tags(run_id: str, req: SetTagsRequest) -> dict[str, bool]:
        service_factory().set_tags(run_id, req.tags)
        return {"ok": True}

    @r.post("/runs/{run_id}/end")
    def end_run(run_id: str, req: EndRunRequest) -> dict[str, bool]:
        service_factory().end_run(run_id, req.status, req.error)
        return {"ok": True}

    @r.get("/runs/{run_id}")
    def get_run(run_id: str) -> Response:
        return JSONResponse(run_to_json(service_factory().get_run(run_id)))

    @r.delete("/runs/{run_id}")
    def delete_run(run_id: str, hard: bool = False) -> dict[str, bool]:
        service_factory().delete_run(run_id, hard=hard)
        return {"ok": True}

    @r.post("/runs/search")
    def search_runs(req: SearchRequest) -> Response:
        runs = service_factory().search_runs(req.filter, experiments=req.experiments, order_by=req.order_by,
                                             limit=req.limit, include_deleted=req.include_deleted,
                                             include_environment=req.include_environment)
        return JSONResponse({"runs": [run_to_json(x) for x in runs]})

    @r.get("/runs/{run_id}/metrics/{key}")
    def metric_history(run_id: str, key: str, max_points: int | None = None) -> Response:
        pts = service_factory().metric_history(run_id, key, max_points=max_points)
        return JSONResponse({"points": [[p.key, _num(p.value), p.step, p.ts] for p in pts]})

    @r.get("/experiments")
    def list_experiments() -> dict[str, list[str]]:
        return {"experiments": service_factory().list_experiments()}

    @r.post("/runs/{run_id}/datasets")
    def use_dataset(run_id: str, req: UseDatasetRequest) -> dict[str, str]:
        return {"version": service_factory().use_dataset(run_id, req.ref)}

    @r.put("/runs/{run_id}/artifacts/{name:path}")
    async def log_artifact(run_id: str, name: str, request: Request) -> dict[str, Any]:
        from fastapi.concurrency import run_in_threadpool

        data = await request.body()
        if len(data) > MAX_ARTIFACT_BYTES:
            from loopml.errors import InvalidParameterError

            raise InvalidParameterError("body", "PUT artifacts", "at most 2 GiB", len(data))
        ref = await run_in_threadpool(service_factory().log_artifact_bytes, run_id, data, name)
        return {"digest": ref.digest, "size": ref.size}

    @r.get("/runs/{run_id}/artifacts")
    def list_artifacts(run_id: str) -> dict[str, Any]:
        return {"artifacts": service_factory().list_artifacts(run_id)}

    return r
