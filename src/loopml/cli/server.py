"""CLI commands of the server part: ``loopml server``."""

from __future__ import annotations

import typer

HTTP_PROTOCOL = "loopml.server._protocol:NoDelayHTTPProtocol"


def register(app: typer.Typer) -> None:
    """Add this part's commands to the top-level app."""

    @app.command("server")
    def server(
        ctx: typer.Context,
        host: str = typer.Option("127.0.0.1", help="Address to bind (default: local only)."),
        port: int = typer.Option(5000, help="TCP port."),
        workers: int = typer.Option(1, help="Uvicorn worker processes."),
    ) -> None:
        """Serve tracking over REST (OpenAPI at /openapi.json)."""
        import os

        import uvicorn

        from loopml.cli._context import open_workspace

        ws = open_workspace(ctx)  # fail fast with a clear error when there is no workspace
        os.chdir(ws.settings.root)  # workers open the same workspace (and LOOPML_DB_URL) from here
        if workers > 1:
            uvicorn.run("loopml.server.app:app_from_env", factory=True, host=host, port=port,
                        workers=workers, log_level="warning", http=HTTP_PROTOCOL)
        else:
            from loopml.server.app import create_app

            uvicorn.run(create_app(ws), host=host, port=port, log_level="warning", http=HTTP_PROTOCOL)
