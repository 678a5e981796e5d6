from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from imsync_client import ImClient, SyncClient
from services.common.local_redis import RedisCluster, RedisServer
from services.common.sample import SampleAccount, sample_accounts
from services.gateway.app import create_app
from services.master.auth.watched_file import token_hash
from services.master.in_process import InProcessChannel
from services.master.memory.store import MemoryStore
from services.master.model import collector, compiled
from services.master.model.retention import KEEP_EVERYTHING
from services.master.model.store import Store
from services.master.redis.store import RedisStore
from services.master.server import Master as MasterProcess
from services.master.server import MasterConfig
from services.master.sync.hub import SyncConfig

# Every worker id a test uses has the token "token-<worker id>".
WORKER_IDS = (
    "test-worker",
    "worker-2",
    "crashing-worker",
    "next-worker",
    "worker-a",
    "worker-b",
    "e2e-worker",
    "intruder",
)


def token_for(worker_id: str) -> str:
    return f"token-{worker_id}"


def write_tokens(path: Path, worker_ids: tuple[str, ...] = WORKER_IDS) -> Path:
    path.write_text("".join(f'[workers."{w}"]\ntoken_sha256 = "{token_hash(token_for(w))}"\n' for w in worker_ids))
    return path


# A fixed "now" (2026-09-21), so that sample data is the same every run. Masters in tests
# keep everything: a time to live counted from the real clock would drop this data one day.
NOW = 1_790_000_000


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    """What a test's snapshots froze (collector.py) goes back to the collector after it,
    so that one test's objects in cycles do not outlive it."""
    yield
    collector.thaw()


class WireReads(list[bool]):
    """What the master's compiled reader of messages (_wire.c) answered during a test:
    True for each batch it read itself, False for each it left to the Python loop."""

    def __init__(self, compiled: bool) -> None:
        super().__init__()
        self.compiled = compiled

    def all_compiled(self) -> bool:
        """Every batch read by the compiled reader where it is on (and some were); where it
        is off (IMSYNC_WIRE_READER=python, or never built), none."""
        return bool(self) and all(self) if self.compiled else not self


@pytest.fixture
def wire_reads(monkeypatch: pytest.MonkeyPatch) -> WireReads:
    reader = compiled.READER
    read = WireReads(compiled=reader is not None)
    if reader is not None:
        take = reader.take_messages

        def spy(*args: Any) -> bool:
            read.append(take(*args))
            return read[-1]

        monkeypatch.setattr(reader, "take_messages", spy)
    return read


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; each store in it gets its own key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One real Redis Cluster for the session (six redis-servers: three primaries, three
    replicas); each store in it gets its own key prefix."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """A Redis the masters share: one node, or a Redis Cluster (each test runs on both)."""
    fixture = "redis_server" if request.param == "redis" else "redis_cluster"
    return str(request.getfixturevalue(fixture).url)


_prefixes = itertools.count(1)
StoreFactory = Callable[..., Store]


@pytest_asyncio.fixture(params=["memory", "redis", "redis-cluster"])
async def new_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Makes stores of one backend: the store's behaviour tests run against each."""
    fixture = {"redis": "redis_server", "redis-cluster": "redis_cluster"}.get(request.param)
    url = request.getfixturevalue(fixture).url if fixture else ""
    made: list[RedisStore] = []

    def make(**kwargs: object) -> Store:
        if not url:
            return MemoryStore(**kwargs)  # type: ignore[arg-type]
        store = RedisStore.from_url(url, prefix=f"test{next(_prefixes)}", **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
def accounts() -> list[SampleAccount]:
    return sample_accounts(2, now=NOW, seed=11)


class Master:
    def __init__(self, address: str, process: MasterProcess, channel: grpc.aio.Channel) -> None:
        self.address = address
        self.process = process
        self.store: MemoryStore = process.store  # type: ignore[assignment]
        self.channel = channel
        self.im = ImClient(channel)

    def sync(self, worker_id: str = "test-worker") -> SyncClient:
        return SyncClient(self.channel, worker_id, token=token_for(worker_id))


@pytest.fixture
def sync_config() -> SyncConfig:
    return SyncConfig(heartbeat_interval=0.5, lease_duration=2.0)


@pytest_asyncio.fixture
async def master(tmp_path: Path, sync_config: SyncConfig) -> AsyncIterator[Master]:
    """A real master (gRPC over loopback) in this process, on an ephemeral port."""
    config = MasterConfig(
        listen="127.0.0.1:0",
        worker_tokens=write_tokens(tmp_path / "tokens.toml"),
        sync=sync_config,
        retention=KEEP_EVERYTHING,
    )
    process = MasterProcess(config)
    port = await process.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Master(address, process, channel)
    finally:
        await channel.close(grace=None)
        await process.stop()


@pytest_asyncio.fixture(params=["grpc", "in-process"])
async def gateway(master: Master, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's ASGI app in this process, calling the master over gRPC, or (as the
    embedded gateway does) calling its servicers directly: every gateway test runs both ways."""
    if request.param == "grpc":
        app = create_app(channel=master.channel)
    else:
        app = create_app(channel=InProcessChannel(master.process.im_servicers, master.process.keys))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


async def push_all(master: Master, accounts: list[SampleAccount], version: int = 1) -> SyncClient:
    sync = master.sync()
    await sync.open({account.account_id: 0 for account in accounts})
    for account in accounts:
        assert await sync.push_snapshot(account.account_id, version, account.account, account.batch) == version
    return sync


@contextmanager
def sim_subprocess(*extra: str) -> Iterator[tuple[str, str]]:
    """`imsync sim` quiet (no customers writing by themselves) on a free port: its base URL
    and its first account's uid; for sync fixtures (the async tests use services.processes)."""
    args = [sys.executable, "-m", "services.cli", "sim", "--listen", "127.0.0.1:0", "--rate", "0", *extra]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"listening on (http://\S+) \(accounts (\d+)", line)
    assert found, line
    try:
        yield found.group(1), found.group(2)
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


def wall_clock_ns() -> int:
    return time.time_ns()
