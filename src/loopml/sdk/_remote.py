"""RemoteTrackingService: the TrackingService interface over HTTP (httpx), with retries and idempotent batches."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loopml.domain.tracking import MetricPoint, Run, RunStatus
from loopml.errors import ConflictError, LoopmlError, NotFoundError, RemoteUnavailableError

_RETRIES = 6


def _f(v: Any) -> float:
    return float(v)  # float("NaN") / float("Infinity") parse the server's encoding


def remote_service_from_env(env: Mapping[str, str] = os.environ) -> RemoteTrackingService | None:
    """A client when ``LOOPML_TRACKING_URI`` is an http(s) URL, else None."""
    uri = env.get("LOOPML_TRACKING_URI", "")
    if uri.startswith(("http://", "https://")):
        return RemoteTrackingService(uri)
    return None


class RemoteTrackingService:
    """Same methods as TrackingService; writes carry ids so retries never duplicate."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, retries: int = _RETRIES, backoff: float = 0.1) -> None:
        import socket

        import httpx

        self.base_url = base_url.rstrip("/")
        self.retries = max(1, retries)
        self.backoff = backoff  # first pause between attempts, doubled each time up to 5 s
        # httpcore writes headers and body in separate sends; without TCP_NODELAY, Nagle plus the server's
        # delayed ACK hold every POST body back ~40 ms.
        # Plain http never uses TLS: skip building a verifying context (loading the CA bundle costs ~20 ms of
        # every client process's start). https keeps full verification.
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                                        verify=not self.base_url.startswith("http://"))
        self._client = httpx.Client(base_url=self.base_url + "/api/tracking", timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, *, body: Any = None, content: bytes | None = None,
              params: Mapping[str, Any] | None = None) -> Any:
        import httpx

        data = content if content is not None else (None if body is None else json.dumps(body).encode())
        headers = {"content-type": "application/json"} if content is None else {
            "content-type": "application/octet-stream"}
        delay = self.backoff
        last: str = ""
        for attempt in range(self.retries):
            try:
                resp = self._client.request(method, path, content=data, params=params, headers=headers)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 400:
                    return resp.json()
                try:
                    msg = resp.json().get("error", resp.text)
                except ValueError:
                    msg = resp.text
                if resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}: {msg}"
                elif resp.status_code == 404:
                    raise NotFoundError(msg)
                elif resp.status_code == 409:
                    raise ConflictError(msg)
                else:
                    err = LoopmlError(msg)
                    err.http_status = resp.status_code
                    raise err
            if attempt < self.retries - 1:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise RemoteUnavailableError(f"Tracking server {self.base_url} did not answer {method} {path} ({last}).",
                                     hint="Check that `loopml server` is running and LOOPML_TRACKING_URI is right.")

    # -- writes ---------------------------------------------------------------------------
    def create_run(self, experiment: str, *, name: str | None = None, parent_id: str | None = None,
                   params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None,
                   environment: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        from loopml.domain.ids import new_id

        rid = run_id or new_id()  # client-chosen id: a retried create is the same run
        body = {"experiment": experiment, "name": name, "parent_id": parent_id,
                "params": None if params is None else {k: _param(v) for k, v in params.items()},
                "tags": None if tags is None else dict(tags),
                "environment": None if environment is None else json.loads(json.dumps(environment, default=str)),
                "run_id": rid}
        try:
            return str(self._call("POST", "/runs", body=body)["run_id"])
        except ConflictError:
            if run_id is None:
                return rid  # our own retried create landed already
            raise

    def log_batch(self, run_id: str, *, metrics: Sequence[MetricPoint] = (), params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, str] | None = None, batch_id: str | None = None) -> None:
        chunk = 50_000
        pts = list(metrics)
        base = batch_id or uuid.uuid4().hex
        first = True
        for i in range(0, max(len(pts), 1), chunk):
            part = pts[i:i + chunk]
            body: dict[str, Any] = {"metrics": [[p.key, p.value, p.step, p.ts] for p in part],
                                    "batch_id": base if len(pts) <= chunk else f"{base}-{i // chunk}"}
            if first:
                body["params"] = None if params is None else {k: _param(v) for k, v in params.items()}
                body["tags"] = None if tags is None else dict(tags)
                first = False
            self._call("POST", f"/runs/{run_id}/batch", body=body)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self._call("POST", f"/runs/{run_id}/tags", body={"tags": dict(tags)})

    def log_artifact(self, run_id: str, path: str | Path, name: str | None = None) -> Any:
        p = Path(path)
        return self.log_artifact_bytes(run_id, p.read_bytes(), name or p.name)

    def log_artifact_bytes(self, run_id: str, data: bytes, name: str) -> Any:
        from loopml.stores.artifacts.cas import ObjectRef

        r = self._call("PUT", f"/runs/{run_id}/artifacts/{name}", content=data)
        return ObjectRef(r["digest"], int(r["size"]))

    def list_artifacts(self, run_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/runs/{run_id}/artifacts")["artifacts"])

    def end_run(self, run_id: str, status: RunStatus | str = RunStatus.FINISHED, error: str | None = None) -> None:
        self._call("POST", f"/runs/{run_id}/end", body={"status": str(status), "error": error})

    def delete_run(self, run_id: str, *, hard: bool = False) -> None:
        self._call("DELETE", f"/runs/{run_id}", params={"hard": str(hard).lower()})

    def use_dataset(self, run_id: str, ref: str) -> str:
        return str(self._call("POST", f"/runs/{run_id}/datasets", body={"ref": ref})["version"])

    # -- reads ----------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        return _run(self._call("GET", f"/runs/{run_id}"))

    def search_runs(self, filter: str | None = None, *, experiments: Sequence[str] | None = None,
                    order_by: Sequence[str] | None = None, limit: int | None = None,
                    include_deleted: bool = False) -> list[Run]:
        body = {"filter": filter, "experiments": None if experiments is None else list(experiments),
                "order_by": None if order_by is None else list(order_by), "limit": limit,
                "include_deleted": include_deleted}
        return [_run(d) for d in self._call("POST", "/runs/search", body=body)["runs"]]

    def metric_history(self, run_id: str, key: str, *, max_points: int | None = None) -> list[MetricPoint]:
        q = {} if max_points is None else {"max_points": max_points}
        rows = self._call("GET", f"/runs/{run_id}/metrics/{key}", params=q)["points"]
        return [MetricPoint(k, _f(v), int(s), float(t)) for k, v, s, t in rows]

    def list_experiments(self) -> list[str]:
        return list(self._call("GET", "/experiments")["experiments"])


def _param(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def _run(d: dict[str, Any]) -> Run:
    d = dict(d)
    d["status"] = RunStatus(d["status"])
    d["metrics"] = {k: _f(v) for k, v in d.get("metrics", {}).items()}
    d.pop("duration", None)
    return Run(**d)
