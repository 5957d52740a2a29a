"""The FastAPI app factory: routes per part and one error mapping (LoopmlError -> JSON error)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


def create_app(workspace_or_services: Any = None) -> Any:
    """Build the app over a Workspace (or an object with a ``tracking`` service); None opens from env."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from loopml.errors import LoopmlError
    from loopml.server.routes import tracking

    holder: dict[str, Any] = {"ws": workspace_or_services}

    def services() -> Any:
        if holder["ws"] is None:
            from loopml.workspace import Workspace

            holder["ws"] = Workspace.open()
        return holder["ws"]

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        # Open the store and import its machinery before the first request, not during it; a database that
        # is down now is reported per request (503) later, so a failure here only skips the warm-up.
        try:
            services().tracking.list_experiments()
        except LoopmlError:
            pass
        yield

    app = FastAPI(title="loopml", version="0.1", openapi_url="/openapi.json", lifespan=lifespan)
    app.include_router(tracking.build_router(lambda: services().tracking))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(LoopmlError)
    async def _loopml_error(request: Request, exc: LoopmlError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ()))
            parts.append(f"{loc}: {e.get('msg')}")
        return JSONResponse({"error": "Invalid request: " + "; ".join(parts)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"error": f"Invalid value: {exc}"}, status_code=400)

    @app.exception_handler(TypeError)
    async def _type(request: Request, exc: TypeError) -> JSONResponse:
        return JSONResponse({"error": f"Invalid type: {exc}"}, status_code=400)

    return app


def app_from_env() -> Any:
    """Uvicorn factory (``--factory``) used with several workers: each opens the workspace from env."""
    return create_app(None)
