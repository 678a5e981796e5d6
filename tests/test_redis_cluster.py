"""Two masters on a local Redis Cluster (six real redis-servers: three primaries, three
replicas) under load, and a primary killed: with `--redis-wait-replicas 1` every version a
worker was acknowledged and every mark a client was told of is still there once the
primary's replica took over; without it (the control) the same failover loses some.

The load: a worker on master A sends one-message deltas to six accounts (spread over the
three primaries), while a client of master B marks their messages read. The replica of the
primary holding one of the accounts is cut off (stopped, and its link dropped by the
primary: it falls behind), the load goes on for a while, the primary is SIGKILLed, the
replica resumes and the cluster fails it over; then the dead server starts again and
rejoins as the new primary's replica.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from imsync.v1 import sync_pb2
from imsync.v1 import unified_messages_pb2 as uni
from imsync_client import ImClient, SyncClient
from imsync_client.sync import SyncRefused
from services.common.addresses import free_port
from services.common.local_redis import RedisCluster
from services.common.sample import SampleAccount
from services.master.model.retention import KEEP_EVERYTHING
from services.master.redis.connect import cluster_nodes
from services.master.redis.store import RedisStore
from services.master.server import Master, MasterConfig
from services.master.sync.hub import SyncConfig

from .conftest import NOW, token_for, write_tokens
from .waiting import eventually

pytestmark = pytest.mark.timeout(300)

ACCOUNTS = [f"shop-{n}" for n in range(6)]
PREFIX = "fo"


@dataclass
class Told:
    """What the worker and the client were acknowledged."""

    versions: dict[str, int] = field(default_factory=dict)
    marks: dict[str, set[str]] = field(default_factory=dict)
    refused: int = 0


class Run:
    def __init__(self, cluster: RedisCluster, masters: list[Master], addresses: list[str]) -> None:
        self.cluster = cluster
        self.masters = masters
        self.channels = [grpc.aio.insecure_channel(address) for address in addresses]
        self.told = Told()
        self.samples = {account_id: _sample(account_id, seed) for seed, account_id in enumerate(ACCOUNTS)}
        self.stopping = asyncio.Event()

    async def worker(self) -> None:
        """Deltas of one inbound message each to every account in turn, through master A;
        a refused one (no replica took it, the primary gone) is sent again later."""
        sync: SyncClient | None = None
        while not self.stopping.is_set():
            try:
                if sync is None:
                    sync = SyncClient(self.channels[0], "worker-a", token=token_for("worker-a"))
                    held = await sync.open({a: self.told.versions.get(a, 0) for a in ACCOUNTS})
                    for account_id, sample in self.samples.items():
                        if held.get(account_id, 0) == 0:
                            acked = await sync.push_snapshot(account_id, 1, sample.account, sample.batch)
                            self.told.versions[account_id] = acked
                        else:
                            # Held, though its snapshot was refused (no replica took it in
                            # time): the worker goes on from the master's version, as a
                            # real one does from its Welcome.
                            self.told.versions.setdefault(account_id, held[account_id])
                for account_id, sample in self.samples.items():
                    version = self.told.versions[account_id]
                    conversation = sample.batch.conversations[version % len(sample.batch.conversations)]
                    message = sample.add_message(conversation, NOW + 1000 + version, inbound=True)
                    upserts = sync_pb2.EntityBatch(messages=[message], conversations=[conversation])
                    delta = sync_pb2.Delta(account_id=account_id, base_version=version, version=version + 1)
                    delta.upserts.CopyFrom(upserts)
                    try:
                        self.told.versions[account_id] = await sync.send([sync_pb2.SyncDataRequest(delta=delta)])
                    except SyncRefused:
                        self.told.refused += 1
            except (grpc.aio.AioRpcError, ConnectionError, SyncRefused):
                # The stream ended or hello was refused (Redis away mid-failover): again.
                self.told.refused += 1
                if sync is not None:
                    await sync.close()
                sync = None
                await asyncio.sleep(0.2)
        if sync is not None:
            await sync.close()

    async def reader(self) -> None:
        """Marks the newest unread message of each account read, through master B."""
        im = ImClient(self.channels[1])
        while not self.stopping.is_set():
            for account_id in ACCOUNTS:
                try:
                    page = await im.list_unified_messages(
                        uni.ListUnifiedMessagesRequest(account_id=account_id, is_read=False, count=1)
                    )
                    if not page.messages:
                        continue
                    item = page.messages[0].id
                    await im.mark_unified_message_read(
                        uni.MarkUnifiedMessageReadRequest(account_id=account_id, id=item)
                    )
                    self.told.marks.setdefault(account_id, set()).add(item)
                except grpc.aio.AioRpcError:
                    self.told.refused += 1
                    await asyncio.sleep(0.05)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(grace=None)
        for master in self.masters:
            await master.stop()


def _sample(account_id: str, seed: int) -> SampleAccount:
    sample = SampleAccount(account_id, seed=seed, now=NOW)
    sample.fill(conversations=3, messages_per_conversation=1, contents=0, comments_per_content=0)
    return sample


@pytest_asyncio.fixture(params=[1, 0], ids=["wait-1", "control-no-wait"])
async def run(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Run, int]]:
    cluster = RedisCluster(tmp_path / "cluster").start()
    tokens = write_tokens(tmp_path / "tokens.toml")
    masters, addresses = [], []
    try:
        for name in ("a", "b"):
            config = MasterConfig(
                listen="127.0.0.1:0",
                worker_tokens=tokens,
                rate_limit=0,
                # Leases outlive the failover (a few seconds): the worker keeps its stream.
                sync=SyncConfig(heartbeat_interval=0.5, lease_duration=15.0),
                retention=KEEP_EVERYTHING,
                store=cluster.url,
                redis_prefix=PREFIX,
                master_id=name,
                redis_wait_replicas=request.param,
                redis_wait_timeout=0.5,
            )
            master = Master(config)
            masters.append(master)
            addresses.append(f"127.0.0.1:{await master.start()}")
        running = Run(cluster, masters, addresses)
        yield running, request.param
        await running.close()
    finally:
        cluster.stop()


async def _until(load: Run, tasks: Sequence[asyncio.Future[None]], check: Callable[[], bool]) -> None:
    """`check` true within 60 s while the load runs; else the failure says why: a load task
    that ended with an error raises it, and a timeout shows what the load was told."""

    def progress() -> bool:
        for task in tasks:
            if task.done() and not task.cancelled() and (error := task.exception()) is not None:
                raise error
        return check()

    try:
        await eventually(progress, timeout=60)
    except TimeoutError:
        ended = [task.done() for task in tasks]
        raise AssertionError(
            f"no progress in 60 s: told {load.told.versions}, {load.told.refused} refused, "
            f"{sum(len(m) for m in load.told.marks.values())} marks; worker, reader ended: {ended}"
        ) from None


async def _held(url: str) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Each account's version and read messages, as the cluster has them now."""
    store = RedisStore.from_url(url, prefix=PREFIX)
    try:
        versions = await store.account_versions(ACCOUNTS)
        read: dict[str, set[str]] = {}
        for account_id in ACCOUNTS:
            read[account_id], cursor = set(), ""
            while True:
                page = await store.list_unified(
                    account_id, types=(), is_read=True, is_new=None, cursor=cursor, count=100
                )
                read[account_id] |= {item.id for item in page.items}
                if not page.has_more:
                    break
                cursor = page.cursor
        return versions, read
    finally:
        await store.close()


async def test_a_primary_killed_under_load_loses_nothing_acknowledged_with_the_wait(run: tuple[Run, int]) -> None:
    load, wait = run
    cluster = load.cluster
    victim = ACCOUNTS[0]
    primary = cluster.primary_for(f"{PREFIX}:{{{victim}}}:meta")
    replica = cluster.replica_of(primary)
    tasks = [asyncio.ensure_future(load.worker()), asyncio.ensure_future(load.reader())]
    try:
        await _until(load, tasks, lambda: load.told.versions.get(victim, 0) >= 5 and len(load.told.marks) >= 3)
        before_pause = load.told.versions[victim]
        # A partition: the replica stops (SIGSTOP) and the primary drops its link to it, so
        # that what the primary takes from now on reaches the replica neither now nor
        # buffered in its socket for later.
        replica.pause()
        assert RedisCluster.command(primary, "CLIENT", "KILL", "TYPE", "replica").strip() == "1"
        # The load goes on while the replica takes nothing: with the wait nothing is
        # acknowledged meanwhile; without it, everything is.
        await asyncio.sleep(2.0)
        during_pause = load.told.versions[victim]
        primary.kill()
        replica.resume()
        started = time.monotonic()
        await asyncio.to_thread(cluster.wait_healthy, 60)
        failed_over = time.monotonic() - started
        # The dead primary comes back (as an operator would bring it), as a replica of the
        # one that took over: until then that one has no replica to wait for.
        primary.start()
        await asyncio.to_thread(cluster.wait_healthy, 60)
        assert primary in [server for server, role, _ in cluster.nodes() if role == "slave"]
        after = load.told.versions[victim]
        if wait:
            # The worker goes on where the new primary is (what it was acknowledged).
            await _until(load, tasks, lambda: load.told.versions[victim] > after + 2)
        else:
            await asyncio.sleep(2.0)
    finally:
        load.stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    held, read = await _held(cluster.url)
    lost_versions = {a: (told, held.get(a, 0)) for a, told in load.told.versions.items() if held.get(a, 0) < told}
    lost_marks = {a: len(marks - read[a]) for a, marks in load.told.marks.items() if marks - read[a]}
    marks_told = sum(len(marks) for marks in load.told.marks.values())
    print(
        f"--redis-wait-replicas {wait}: {victim} acknowledged up to v{before_pause} before the pause, "
        f"v{during_pause} during it; failed over in {failed_over:.1f} s; {marks_told} marks acknowledged; "
        f"{load.told.refused} refused; lost (told, held): {lost_versions}, marks lost: {lost_marks}"
    )
    if wait:
        assert during_pause <= before_pause + 1, "nothing more acknowledged once the replica stopped taking changes"
        assert not lost_versions, f"acknowledged and lost: {lost_versions}"
        assert not lost_marks, f"marks acknowledged and lost: {lost_marks}"
    else:
        assert during_pause > before_pause + 2, "without the wait, changes are acknowledged all along"
        assert victim in lost_versions, "what the replica never got is gone with the primary"


async def test_the_weakest_primary_s_persistence_is_what_the_master_tells(redis_cluster: RedisCluster) -> None:
    store = RedisStore.from_url(redis_cluster.url, prefix="persistence")
    primary = redis_cluster.primaries()[-1]
    try:
        assert "appendfsync always" in await store.check_persistence()
        RedisCluster.command(primary, "CONFIG", "SET", "appendfsync", "everysec")
        assert "appendfsync everysec" in await store.check_persistence()
    finally:
        RedisCluster.command(primary, "CONFIG", "SET", "appendfsync", "always")
        await store.close()


def test_a_cluster_url_names_its_nodes_and_a_wrong_one_says_what_is_wrong() -> None:
    assert cluster_nodes("redis+cluster://:s%40cret@10.0.0.1:7000,10.0.0.2,[::1]:7002/0") == (
        [("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)],
        None,
        "s@cret",
    )
    for url, said in [
        ("redis+cluster://", "at least one node"),
        ("redis+cluster://127.0.0.1:http", "port is not a number"),
        ("redis+cluster://127.0.0.1:70000", "port is not a number"),
        ("redis://127.0.0.1:6379", "not a Redis Cluster URL"),
    ]:
        with pytest.raises(ValueError, match=said):
            cluster_nodes(url)


async def test_a_master_given_a_cluster_it_cannot_reach_says_so(tmp_path: Path) -> None:
    config = MasterConfig(listen="127.0.0.1:0", store=f"redis+cluster://127.0.0.1:{free_port()}")
    master = Master(config)
    with pytest.raises(OSError, match="cannot reach Redis at redis\\+cluster://"):
        await master.start()
    await master.stop()
