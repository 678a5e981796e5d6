"""A gateway in its own process keeps answers only as the master allows (CacheService):
the master waits for it before acknowledging a change, no longer than its lease; keys it
may not trust, a revoked API key and a shared store all take its answers away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import pytest

from imsync.v1 import cache_pb2, cache_pb2_grpc
from imsync_client import SyncClient
from services.common.sample import SampleAccount
from services.gateway.app import Gateway, create_app
from services.master.auth.api_keys import create_api_key, revoke_api_key
from services.master.model.coherence import Coherence
from services.master.model.retention import KEEP_EVERYTHING
from services.master.server import Master, MasterConfig

from .conftest import NOW, token_for, write_tokens
from .waiting import eventually


@asynccontextmanager
async def running_master(
    tmp_path: Path, **settings: object
) -> AsyncIterator[tuple[Master, grpc.aio.Channel, SyncClient, SampleAccount]]:
    """A master with one account synced, a channel to it, and the worker's open stream."""
    config = MasterConfig(
        listen="127.0.0.1:0",
        worker_tokens=write_tokens(tmp_path / "tokens.toml"),
        retention=KEEP_EVERYTHING,
        rate_limit=0,
        **settings,  # type: ignore[arg-type]
    )
    master = Master(config)
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    sync = SyncClient(channel, "test-worker", token=token_for("test-worker"))
    sample = SampleAccount("shop-a", seed=1, now=NOW)
    sample.fill(conversations=4, messages_per_conversation=2, contents=1, comments_per_content=1)
    try:
        await sync.open({"shop-a": 0})
        assert await sync.push_snapshot("shop-a", 1, sample.account, sample.batch) == 1
        yield master, channel, sync, sample
    finally:
        await sync.close()
        await channel.close(grace=None)
        await master.stop()


@asynccontextmanager
async def watching_gateway(
    channel: grpc.aio.Channel, key: str = ""
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    app = create_app(channel=channel, watch=True, watch_key=key)
    gateway: Gateway = app.state.gateway
    async with (
        gateway.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as client,
    ):
        yield gateway, client


async def test_answers_kept_per_key_go_when_the_keys_file_changes(tmp_path: Path) -> None:
    keys_file = tmp_path / "api-keys.toml"
    gateway_key = create_api_key(keys_file, "gateway", ["*"], ["gateway"])
    reader = create_api_key(keys_file, "reader", ["shop-a"], ["read"])
    other = create_api_key(keys_file, "other", ["*"], ["read"])
    url = "/api/im/conversations?account_id=shop-a&count=3"
    as_reader = {"authorization": f"Bearer {reader}"}
    async with running_master(tmp_path, api_keys=keys_file) as (_master, channel, _sync, _sample):
        async with watching_gateway(channel, gateway_key) as (gateway, client):
            assert gateway.watch is not None and gateway.cache is not None
            await asyncio.wait_for(gateway.watch.connected.wait(), 5)
            first = await client.get(url, headers=as_reader)
            assert first.status_code == 200
            hits = gateway.cache.hits
            assert (await client.get(url, headers=as_reader)).content == first.content
            assert gateway.cache.hits == hits + 1
            # Without a key the master refuses, and nothing kept for a key is given away.
            assert (await client.get(url)).status_code == 401
            assert gateway.cache.hits == hits + 1

            seen = gateway.watch.invalidations
            assert revoke_api_key(keys_file, "reader")
            await eventually(lambda: gateway.watch is not None and gateway.watch.invalidations > seen)
            assert (await client.get(url, headers=as_reader)).status_code == 401

        # A key without the gateway scope may read, but not watch: every read calls the master.
        async with watching_gateway(channel, other) as (gateway, client):
            assert gateway.watch is not None and gateway.cache is not None
            await eventually(lambda: gateway.watch is not None and gateway.watch.refused != "")
            assert "PERMISSION_DENIED" in gateway.watch.refused
            for _ in range(2):
                assert (await client.get(url, headers={"authorization": f"Bearer {other}"})).status_code == 200
            assert gateway.cache.hits == 0


class RawWatcher:
    """A gateway's side of WatchChanges by hand: renews when told, applies when told."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.requests: asyncio.Queue[cache_pb2.WatchChangesRequest] = asyncio.Queue()

        async def outgoing() -> AsyncIterator[cache_pb2.WatchChangesRequest]:
            while True:
                yield await self.requests.get()

        self.call = cache_pb2_grpc.CacheServiceStub(channel).WatchChanges(outgoing())
        self.responses = self.call.__aiter__()

    async def next(self, kind: str) -> cache_pb2.WatchChangesResponse:
        response = await asyncio.wait_for(self.responses.__anext__(), 10)
        assert response.WhichOneof("kind") == kind, response
        return response


async def _push(sync: SyncClient, sample: SampleAccount, version: int) -> float:
    """Seconds until the master acknowledged a new version of the account."""
    sample.grow(NOW + 100 + version)
    started = time.monotonic()
    assert await asyncio.wait_for(sync.push_snapshot("shop-a", version, sample.account, sample.batch), 20) == version
    return time.monotonic() - started


async def test_the_master_waits_for_a_watching_gateway_no_longer_than_its_lease(tmp_path: Path) -> None:
    async with running_master(tmp_path, cache_lease=0.6) as (master, channel, sync, sample):
        watcher = RawWatcher(channel)
        assert (await watcher.next("settings")).settings.lease.ToMilliseconds() == 600
        asked = time.monotonic()
        await watcher.requests.put(cache_pb2.WatchChangesRequest(renew=1))
        assert (await watcher.next("grant")).grant.renewal == 1
        # It hears of the change, never applies it: the Ack waits until its lease is over.
        waited = await _push(sync, sample, 2)
        invalidation = (await watcher.next("invalidation")).invalidation
        assert list(invalidation.account_ids) == ["shop-a"]
        assert time.monotonic() - asked >= 0.6 and waited > 0.3
        # A lapsed gateway holds nothing back.
        await _push(sync, sample, 3)
        await watcher.next("invalidation")
        watcher.call.cancel()
        await eventually(lambda: master.coherence is not None and master.coherence.watching == 0)


@pytest.mark.parametrize("journal", [False, True], ids=["memory", "journaled"])
async def test_a_gateway_that_applies_releases_the_ack_and_one_stopping_is_not_waited_for(
    tmp_path: Path, journal: bool
) -> None:
    # Leases far longer than the test: every Ack that comes was released by the gateways
    # (with a journal, once both it and the gateway are done).
    data_dir = tmp_path / "data" if journal else None
    async with running_master(tmp_path, cache_lease=600, data_dir=data_dir) as (master, channel, sync, sample):
        watcher = RawWatcher(channel)
        await watcher.next("settings")
        await watcher.requests.put(cache_pb2.WatchChangesRequest(renew=1))
        await watcher.next("grant")
        pushed = asyncio.create_task(_push(sync, sample, 2))
        invalidation = (await watcher.next("invalidation")).invalidation
        await asyncio.sleep(0.2)
        assert not pushed.done(), "acknowledged before the gateway applied the change"
        await watcher.requests.put(cache_pb2.WatchChangesRequest(applied=invalidation.sequence))
        await pushed
        await watcher.requests.put(cache_pb2.WatchChangesRequest(leaving=True))
        await _push(sync, sample, 3)
        watcher.call.cancel()
        await eventually(lambda: master.coherence is not None and master.coherence.watching == 0)

        # The gateway's own side: it connects, keeps answers, and says so when it stops.
        async with watching_gateway(channel) as (gateway, client):
            assert gateway.watch is not None
            await asyncio.wait_for(gateway.watch.connected.wait(), 5)
            await _push(sync, sample, 4)
            assert (await client.get("/api/im/accounts")).status_code == 200
        assert master.coherence is not None
        await eventually(lambda: master.coherence is not None and master.coherence.watching == 0)
        await _push(sync, sample, 5)
        assert gateway.watch.stamp("shop-a") is None


async def test_a_gateway_that_stops_reading_is_cut_off_and_waited_for_no_longer_than_its_lease() -> None:
    coherence = Coherence(lease=0.3, max_queued=5)
    silent = coherence.join()
    coherence.handle(silent, cache_pb2.WatchChangesRequest(renew=1))
    started = asyncio.get_running_loop().time()
    for step in range(8):
        coherence.changed(f"account-{step}")
        announced = coherence.announced()
        if announced is not None:  # None once no gateway watches
            await asyncio.wait_for(announced, 5)
    # Its queue bounded: cut off (its stream ends) after the first few, the rounds it held
    # released once the lease it had was over, and none after waiting for it at all.
    assert coherence.watching == 0
    queued = []
    while not silent.outbound.empty():
        queued.append(silent.outbound.get_nowait())
    assert queued == [None]
    assert asyncio.get_running_loop().time() - started >= 0.3
