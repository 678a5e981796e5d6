"""The simulator process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from services.common.http_server import serve_asgi

from .app import Simulator, build_app
from .platform_data import Platform


@dataclass(frozen=True)
class SimConfig:
    listen: str = "127.0.0.1:8090"
    accounts: int = 3
    seed: int = 1
    # New comments, replies and messages per minute, over all accounts.
    rate_per_minute: float = 6.0


async def serve(config: SimConfig) -> None:
    simulator = Simulator(
        Platform(accounts=config.accounts, seed=config.seed, now=int(time.time())),
        rate_per_minute=config.rate_per_minute,
    )
    grower = asyncio.create_task(simulator.grow_forever())
    try:
        accounts = ", ".join(simulator.platform.accounts)
        await serve_asgi(
            build_app(simulator),
            config.listen,
            lambda bound: f"imsync sim listening on http://{bound} (accounts {accounts}; password 'sim')",
        )
    finally:
        grower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await grower


def run(config: SimConfig) -> None:
    asyncio.run(serve(config))
