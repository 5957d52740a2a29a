"""The uvicorn HTTP protocol loopml serves with: uvicorn's own, plus TCP_NODELAY on every connection."""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """With ``--workers`` uvicorn binds ``socket.socket(AF_INET)`` (proto 0), so asyncio skips TCP_NODELAY on
    accepted connections; Nagle then holds each response body until the client's delayed ACK, ~40 ms a request.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # not fatal: the connection still works, only slower
                pass
        super().connection_made(transport)
