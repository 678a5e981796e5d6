"""The gateway process: the Starlette app under uvicorn."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import uvicorn

from services.common.addresses import split_host_port

from .app import create_app


@dataclass(frozen=True)
class GatewayConfig:
    listen: str = "127.0.0.1:8080"
    master: str = "127.0.0.1:50051"


async def serve(config: GatewayConfig) -> None:
    host, port = split_host_port(config.listen)
    # Bind first, so that port 0 can be reported before serving.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config.master), log_level="warning", access_log=False, lifespan="on")
    )
    print(f"imsync gateway listening on http://{host}:{bound_port} (master {config.master})", flush=True)
    await server.serve(sockets=[sock])


def run(config: GatewayConfig) -> None:
    asyncio.run(serve(config))
