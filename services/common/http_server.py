"""Serving an ASGI app with uvicorn on HOST:PORT, announcing the port it really got."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Literal

import uvicorn

from .addresses import split_host_port


async def serve_asgi(
    app: Any, listen: str, announce: Callable[[str], str], *, lifespan: Literal["auto", "on", "off"] = "on"
) -> None:
    """Binds first, so that port 0 can be reported (by printing `announce(host:port)`)."""
    host, port = split_host_port(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = f"{host}:{sock.getsockname()[1]}"
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    print(announce(bound), flush=True)
    await server.serve(sockets=[sock])

