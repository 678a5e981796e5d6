"""The gateway process: the Starlette app under uvicorn."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from services.common.http_server import serve_asgi

from .app import create_app
from .console import CONSOLE_DIR


@dataclass(frozen=True)
class GatewayConfig:
    listen: str = "127.0.0.1:8080"
    master: str = "127.0.0.1:50051"
    # The web console's files, served at `/`; None serves no console.
    console: Path | None = CONSOLE_DIR


def run(config: GatewayConfig) -> None:
    announce = lambda bound: f"imsync gateway listening on http://{bound} (master {config.master})"  # noqa: E731
    asyncio.run(serve_asgi(create_app(config.master, console=config.console), config.listen, announce))
