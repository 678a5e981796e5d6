"""Serving an ASGI app with uvicorn on HOST:PORT, announcing the port it really got."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn

from .addresses import AddressInUse, split_host_port
from .http_guard import HttpLimits, guarded


@dataclass(frozen=True)
class HttpOptions:
    # HTTPS when both are given.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (a proxy in front);
    # from anyone else the connection's own address counts.
    forwarded_allow_ips: str = "127.0.0.1"
    # Deadlines for slow clients, and bounds on connections (http_guard.py).
    limits: HttpLimits = HttpLimits()

    @property
    def trusted_proxies(self) -> frozenset[str]:
        return frozenset(ip.strip() for ip in self.forwarded_allow_ips.split(",") if ip.strip())


async def serve_asgi(
    app: Any,
    listen: str,
    announce: Callable[[str], str],
    *,
    lifespan: Literal["auto", "on", "off"] = "on",
    options: HttpOptions = HttpOptions(),
    stop: asyncio.Event | None = None,
) -> None:
    """Binds first, so that port 0 can be reported (by printing `announce(host:port)`).

    With `stop`, the server leaves signals to its process and ends once `stop` is set."""
    host, port = split_host_port(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by every accepted connection: without it, a response written in two parts
    # waits for the client's delayed ACK (40 ms per request on Linux).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise AddressInUse(listen) from None
        raise
    # Listening before the announcement: a client that connects as soon as it reads the
    # line waits in the backlog until uvicorn accepts, instead of being refused.
    sock.listen(2048)
    bound = f"{host}:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        http=guarded(options.limits),
        timeout_keep_alive=int(max(1, options.limits.keep_alive_timeout)),
        timeout_graceful_shutdown=5,
        ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
        ssl_keyfile=str(options.tls_key) if options.tls_key else None,
        # The gateway reads X-Forwarded-* itself, from trusted proxies only.
        proxy_headers=False,
    )
    server = uvicorn.Server(config) if stop is None else _QuietServer(config)
    print(announce(bound), flush=True)
    if stop is None:
        await server.serve(sockets=[sock])
        return

    async def stopper() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stopper())
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()


class _QuietServer(uvicorn.Server):
    """A server inside another service's process: that process owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
