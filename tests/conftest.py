from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
import pytest_asyncio

from imsync_client import ImClient, SyncClient
from services.common.sample import SampleAccount, sample_accounts
from services.gateway.app import create_app
from services.master.memory_store import MemoryStore
from services.master.server import build_server

NOW = 1_790_000_000  # a fixed "now" (2026-09-21), so that sample data is the same every run


@pytest.fixture
def accounts() -> list[SampleAccount]:
    return sample_accounts(2, now=NOW, seed=11)


class Master:
    def __init__(self, address: str, store: MemoryStore, channel: grpc.aio.Channel) -> None:
        self.address = address
        self.store = store
        self.channel = channel
        self.im = ImClient(channel)

    def sync(self, worker_id: str = "test-worker") -> SyncClient:
        return SyncClient(self.channel, worker_id)


@pytest_asyncio.fixture
async def master() -> AsyncIterator[Master]:
    """A real master (gRPC over loopback) in this process, on an ephemeral port."""
    store = MemoryStore()
    server = await build_server(store)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Master(address, store, channel)
    finally:
        await channel.close(grace=None)
        await server.stop(grace=None)


@pytest_asyncio.fixture
async def gateway(master: Master) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's ASGI app in this process, calling the master over gRPC."""
    app = create_app(channel=master.channel)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


async def push_all(master: Master, accounts: list[SampleAccount], version: int = 1) -> SyncClient:
    sync = master.sync()
    await sync.open({account.account_id: 0 for account in accounts})
    for account in accounts:
        assert await sync.push_snapshot(account.account_id, version, account.account, account.batch) == version
    return sync


def wall_clock_ns() -> int:
    return time.time_ns()
