"""Real servers for tests, all bound to 127.0.0.1: PostgreSQL (throwaway cluster), S3 (moto), `loopml server` and a fault-injecting HTTP proxy."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bindir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout
        if (Path(out.strip()) / "initdb").exists():
            return Path(out.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found; `make test` installs them.")


class PostgresServer:
    """A throwaway cluster. initdb refuses root, so it runs as the `postgres` (or `nobody`) user."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.bindir = _pg_bindir()
        self.data = base / "data"
        self.sock = base / "sock"
        self.log = base / "pg.log"
        self._user = self._pick_user()

    @staticmethod
    def _pick_user() -> str | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)

    def start(self) -> None:
        self.sock.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        if self._user is not None:
            info = pwd.getpwnam(self._user)
            for path in (self.base, self.sock):
                os.chown(path, info.pw_uid, info.pw_gid)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sock} -c fsync=off -c max_connections=200"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-o", opts, "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, name: str) -> None:
        self._admin(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class S3Server:
    """moto's S3 in server mode on a loopback port."""

    access_key = "testing"
    secret_key = "testing"
    region = "us-east-1"

    def __init__(self) -> None:
        self.port = free_port()
        self._server = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        for var, value in self.env().items():
            os.environ.setdefault(var, value)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def storage_options(self) -> dict[str, object]:
        return {"key": self.access_key, "secret": self.secret_key,
                "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region}}


class LoopmlServer:
    """`loopml server` in a subprocess on a free loopback port, over the workspace at ``root``."""

    def __init__(self, root: Path, env: dict[str, str], *, workers: int = 2) -> None:
        self.root, self.env, self.workers = root, env, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LoopmlServer:
        import sys

        import httpx

        loopml = str(Path(sys.executable).with_name("loopml"))
        self.log = self.root.parent / f"server-{self.port}.log"
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen([loopml, "server", "--port", str(self.port), "--workers", str(self.workers)],
                                          cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
            if self._proc.poll() is not None:
                break
        self._proc.kill()
        raise RuntimeError(f"loopml server did not start: {self.log.read_text(errors='replace')[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of ``upstream`` that injects faults.

    ``faults`` maps a path suffix (``"/batch"``) to actions used one per matching request, in order:
    ``"503"`` answers 503 without forwarding; ``"cut-body"`` reads half the request body, then drops the
    connection (nothing forwarded); ``"lose-reply"`` forwards the request (it takes effect), then drops the
    connection instead of answering. Other requests pass through. ``forwarded`` lists the forwarded paths.
    """

    def __init__(self, upstream: str, faults: dict[str, list[str]]) -> None:
        self.upstream = upstream
        self.faults = {k: list(v) for k, v in faults.items()}
        self.forwarded: list[str] = []
        self._server: object | None = None

    def _take(self, path: str) -> str | None:
        for suffix, actions in self.faults.items():
            if path.split("?")[0].endswith(suffix) and actions:
                return actions.pop(0)
        return None

    def pending(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.faults.items() if v}

    def __enter__(self) -> FaultProxy:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import httpx

        proxy = self
        upstream = httpx.Client(base_url=self.upstream, timeout=60)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _drop(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                with lock:
                    action = proxy._take(self.path)
                if action == "cut-body":
                    self.rfile.read(length // 2)
                    self._drop()
                    return
                body = self.rfile.read(length) if length else b""
                if action == "503":
                    self._reply(503, b'{"error": "injected: service unavailable"}', "application/json")
                    return
                resp = upstream.request(self.command, self.path, content=body,
                                        headers={"content-type": self.headers.get("content-type", "")})
                with lock:
                    proxy.forwarded.append(self.path)
                if action == "lose-reply":
                    self._drop()
                    return
                self._reply(resp.status_code, resp.content, resp.headers.get("content-type", "application/json"))

            def _reply(self, status: int, content: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        self._upstream = upstream
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server.server_close()  # type: ignore[attr-defined]
            self._upstream.close()
