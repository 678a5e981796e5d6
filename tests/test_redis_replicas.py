"""Acknowledgements that wait for Redis replicas (`--redis-wait-replicas`): a primary with
one replica, both real `redis-server` processes. With the wait, a change the replica does
not have is not acknowledged; a primary killed and replaced by its replica keeps every
acknowledged version and mark. Without it (the control), the same failover loses
acknowledged versions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from imsync.v1 import sync_pb2
from imsync.v1 import unified_messages_pb2 as uni
from imsync_client import ImClient, SyncClient
from services.common.local_redis import RedisServer
from services.common.sample import SampleAccount
from services.master.model.errors import NotPersisted
from services.master.model.keys import message_key
from services.master.model.store import DeltaData, SnapshotData
from services.master.redis.store import RedisStore
from services.master.server import Master, MasterConfig

from .conftest import NOW, token_for, write_tokens
from .test_store_deltas import copy
from .waiting import eventually


class Pair:
    def __init__(self, root: Path) -> None:
        self.primary = RedisServer(root / "primary").start()
        self.replica = RedisServer(root / "replica", replica_of=self.primary.port).start()

    async def in_sync(self) -> None:
        """Until the replica takes writes (after its initial sync, once its first
        acknowledgement arrived). A write first: WAIT on a connection that wrote nothing
        answers at once with the replicas connected, synced or not."""
        primary = aioredis.Redis(port=self.primary.port)
        try:

            async def online() -> bool:
                pipe = primary.pipeline(transaction=False)
                pipe.incr("sync-check")
                pipe.execute_command("WAIT", 1, 100)
                return int((await pipe.execute())[1]) == 1

            await eventually(online, timeout=30)
        finally:
            await primary.aclose()

    async def cut_off(self) -> None:
        """The replica stops following the primary (a partition): it keeps what it has."""
        replica = aioredis.Redis(port=self.replica.port)
        try:
            await replica.replicaof("NO", "ONE")
        finally:
            await replica.aclose()

    def fail_over(self) -> str:
        """The primary dies (SIGKILL); its replica, cut off before, takes over: its URL."""
        self.primary.kill()
        return self.replica.url

    def stop(self) -> None:
        self.replica.resume()
        self.replica.stop()
        self.primary.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    servers = Pair(tmp_path)
    try:
        yield servers
    finally:
        servers.stop()


def _deltas(sample: SampleAccount, first: int, count: int) -> list[DeltaData]:
    out = []
    for step in range(count):
        version = first + step
        conversation = sample.batch.conversations[step % len(sample.batch.conversations)]
        message = sample.add_message(conversation, NOW + 100 + version, inbound=True)
        upserts = sync_pb2.EntityBatch()
        upserts.messages.append(message)
        upserts.conversations.append(conversation)
        out.append(DeltaData("acc", version, version + 1, None, upserts, sync_pb2.Removals()))
    return out


async def _acknowledged_run(pair: Pair, wait: int) -> tuple[int, set[str], str]:
    """Deltas and marks, each acknowledged only once store.persisted() allowed; midway the
    replica is cut off from the primary, and the run goes on until a change is refused (or
    to its end). Then the primary dies and the replica takes over. Returns the newest
    acknowledged version, the acknowledged marks, and the new primary's URL."""
    await pair.in_sync()
    store = RedisStore.from_url(pair.primary.url, prefix="t", wait_replicas=wait, wait_timeout=0.3)
    sample = SampleAccount("acc", seed=4, now=NOW)
    sample.fill(conversations=3, messages_per_conversation=2, contents=0, comments_per_content=0)
    acknowledged_version, marks = 0, set()
    try:
        assert await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), sample.account, copy(sample.batch)))
        if (persisted := store.persisted()) is not None:
            await persisted
        acknowledged_version = 1
        for index, delta in enumerate(_deltas(sample, 1, 40)):
            if index == 20:
                await pair.cut_off()
            assert await store.apply_delta(delta)
            item = message_key(delta.upserts.messages[0].message_id)
            await store.mark_unified_read("acc", [item], time.time_ns())
            try:
                if (persisted := store.persisted()) is not None:
                    await persisted
            except NotPersisted:
                break
            acknowledged_version = delta.version
            marks.add(item)
    finally:
        await store.close()
    return acknowledged_version, marks, pair.fail_over()


async def _held(url: str) -> tuple[int, set[str]]:
    store = RedisStore.from_url(url, prefix="t")
    try:
        version = (await store.account_versions(["acc"])).get("acc", 0)
        inbox = await store.list_unified("acc", types=(), is_read=True, is_new=None, cursor="", count=100)
        return version, {item.id for item in inbox.items}
    finally:
        await store.close()


async def test_with_the_wait_a_failover_keeps_every_acknowledged_version_and_mark(pair: Pair) -> None:
    version, marks, url = await _acknowledged_run(pair, wait=1)
    assert 20 <= version < 41, "acknowledged until the replica stopped taking changes, and no further"
    held_version, read = await _held(url)
    assert held_version >= version
    assert marks <= read


async def test_without_it_the_same_failover_loses_acknowledged_versions(pair: Pair) -> None:
    version, marks, url = await _acknowledged_run(pair, wait=0)
    assert version == 41, "every change acknowledged, the replica had it or not"
    held_version, read = await _held(url)
    assert held_version < version, "what the replica never got is gone with the primary"
    assert not marks <= read


async def test_a_round_covers_every_write_before_it_and_nothing_to_wait_for_is_not_waited(pair: Pair) -> None:
    await pair.in_sync()
    store = RedisStore.from_url(pair.primary.url, prefix="t", wait_replicas=1, wait_timeout=2.0)
    try:
        assert store.persisted() is None, "nothing written: nothing to wait for"
        sample = SampleAccount("acc", seed=4, now=NOW)
        sample.fill(conversations=2, messages_per_conversation=2, contents=0, comments_per_content=0)
        await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), sample.account, copy(sample.batch)))
        first, second = store.persisted(), store.persisted()
        assert first is not None and first is second, "callers waiting at once share one round"
        await first
        assert store.persisted() is None
    finally:
        await store.close()


@pytest_asyncio.fixture
async def master(pair: Pair, tmp_path: Path) -> AsyncIterator[Master]:
    await pair.in_sync()
    config = MasterConfig(
        listen="127.0.0.1:0",
        worker_tokens=write_tokens(tmp_path / "tokens.toml"),
        rate_limit=0,
        store=pair.primary.url,
        redis_prefix="m",
        redis_wait_replicas=1,
        redis_wait_timeout=0.5,
    )
    running = Master(config)
    running.port = await running.start()  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        await running.stop()


async def test_the_master_acknowledges_nothing_its_replica_does_not_have(pair: Pair, master: Master) -> None:
    assert "waits for 1 Redis replica(s); 1 connected" in master.persistence
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{master.port}")  # type: ignore[attr-defined]
    try:
        sample = SampleAccount("acc", seed=4, now=NOW)
        sample.fill(conversations=2, messages_per_conversation=3, contents=0, comments_per_content=0)
        sync = SyncClient(channel, "test-worker", token=token_for("test-worker"))
        await sync.open({"acc": 0})
        await sync.push_snapshot("acc", 1, sample.account, sample.batch)  # acknowledged: the replica has it
        await sync.close()
        im = ImClient(channel)
        inbox = (await im.list_unified_messages(uni.ListUnifiedMessagesRequest(account_id="acc"))).messages
        pair.replica.pause()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await im.mark_unified_message_read(uni.MarkUnifiedMessageReadRequest(account_id="acc", id=inbox[0].id))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "replicas" in (refused.value.details() or "")
        pair.replica.resume()
        await im.mark_unified_message_read(uni.MarkUnifiedMessageReadRequest(account_id="acc", id=inbox[1].id))
    finally:
        await channel.close(grace=None)
