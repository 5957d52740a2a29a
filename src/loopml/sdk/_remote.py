"""RemoteTrackingService: TrackingService over HTTP (stdlib http.client), with retries and idempotent batches."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

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


class _ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one server, shared by threads (stdlib ``http.client``).

    Not httpx: importing httpx costs each client process 0.12-0.17 s of CPU (it loads its command line and,
    with them installed, rich, click and pygments), the largest part of a short training script's logging
    cost; this client needs only keep-alive, timeouts and TLS, which the standard library has.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            from loopml.errors import ConfigError

            raise ConfigError(f"The tracking URI {base_url!r} is not an http(s) URL.",
                              hint="Set LOOPML_TRACKING_URI=http://HOST:PORT.")
        self.https = url.scheme == "https"
        self.host = url.hostname
        self.port = url.port or (443 if self.https else 80)
        self.prefix = url.path.rstrip("/")
        self.timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self.https:
            import ssl

            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.connect()
        # small requests and replies must not wait for delayed ACKs (Nagle): ~40 ms each otherwise
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def request(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """(status, body) of one exchange; raises OSError / HTTPException when the connection fails."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            try:
                return self._exchange(conn, method, target, body, headers)
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                pass  # the server closed this idle connection (keep-alive timeout): not a failure, use a new one
        return self._exchange(self._connect(), method, target, body, headers)

    def _exchange(self, conn: http.client.HTTPConnection, method: str, target: str, body: bytes | None,
                  headers: Mapping[str, str]) -> tuple[int, bytes]:
        try:
            conn.request(method, self.prefix + target, body=body, headers=dict(headers))
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        return resp.status, data

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class RemoteTrackingService:
    """Same methods as TrackingService; writes carry ids so retries never duplicate."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, retries: int = _RETRIES, backoff: float = 0.1) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = max(1, retries)
        self.backoff = backoff  # first pause between attempts, doubled each time up to 5 s
        self._pool = _ConnectionPool(self.base_url + "/api/tracking", timeout)

    def close(self) -> None:
        self._pool.close()

    def _call(self, method: str, path: str, *, body: Any = None, content: bytes | None = None,
              params: Mapping[str, Any] | None = None) -> Any:
        data = content if content is not None else (None if body is None else json.dumps(body).encode())
        headers = {"content-type": "application/json"} if content is None else {
            "content-type": "application/octet-stream"}
        target = quote(path, safe="/:@!$&'()*+,;=-._~")
        if params:
            target += "?" + urlencode(params)
        delay = self.backoff
        last: str = ""
        for attempt in range(self.retries):
            try:
                status, payload = self._pool.request(method, target, data, headers)
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if status < 400:
                    return json.loads(payload)
                try:
                    msg = json.loads(payload).get("error", payload.decode(errors="replace"))
                except (ValueError, AttributeError):
                    msg = payload.decode(errors="replace")
                if status >= 500:
                    last = f"HTTP {status}: {msg}"
                elif status == 404:
                    raise NotFoundError(msg)
                elif status == 409:
                    raise ConflictError(msg)
                else:
                    err = LoopmlError(msg)
                    err.http_status = status
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
                    include_deleted: bool = False, include_environment: bool = True) -> list[Run]:
        body = {"filter": filter, "experiments": None if experiments is None else list(experiments),
                "order_by": None if order_by is None else list(order_by), "limit": limit,
                "include_deleted": include_deleted, "include_environment": include_environment}
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
