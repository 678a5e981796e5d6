"""Two master processes over one redis-server, on real processes: master A killed, its
worker moves to B and resumes where Redis says it is; Redis killed and restarted under
both: nothing acknowledged is lost.

The worker's engine runs in this process (the crash tests' rig, crash_rig.py) with both
masters as its gRPC target, A first; the person marking items read uses B.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis

from services import processes
from services.common.local_redis import RedisServer

from . import waiting
from .crash_rig import ACCOUNTS, Rig, read_items, settled
from .sync_harness import crawl_of, running

pytestmark = pytest.mark.e2e


class TwoMasters(Rig):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.redis = RedisServer(tmp / "redis")
        self.masters: dict[str, processes.Child] = {}
        self.ports: dict[str, int] = {}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports['b']}"

    @property
    def worker_target(self) -> str:
        # pick_first: A while it lives, then B.
        return "ipv4:" + ",".join(f"127.0.0.1:{self.ports[name]}" for name in ("a", "b"))

    async def start_named(self, name: str) -> None:
        args = [
            "master",
            "--store",
            self.redis.url,
            "--master-id",
            name,
            "--listen",
            "127.0.0.1:0",
            "--retention",
            "none",
            "--worker-tokens",
            str(self.tokens),
            "--heartbeat-seconds",
            "0.3",
            "--lease-seconds",
            "1.5",
        ]
        child = await processes.start(args)
        self.masters[name] = child
        self.ports[name] = int(child.address.rpartition(":")[2])

    def versions(self) -> dict[str, int]:
        """Each account's version, read from Redis directly."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            return {a: int(client.hget(f"imsync:{{{a}}}:meta", "version") or 0) for a in ACCOUNTS}
        finally:
            client.close()

    def holders(self) -> dict[str, str]:
        """Which master holds each account's lease, as Redis says."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            return {a: (client.hget(f"imsync:{{{a}}}:lease", "master") or b"").decode() for a in ACCOUNTS}  # type: ignore[union-attr]
        finally:
            client.close()


@pytest_asyncio.fixture
async def two(tmp_path: Path) -> AsyncIterator[TwoMasters]:
    rig = TwoMasters(tmp_path)
    rig.redis.start()
    try:
        await rig.start_named("a")
        await rig.start_named("b")
        yield rig
    finally:
        for name, child in rig.masters.items():
            print(f"--- master {name}\n" + "\n".join(child.output))  # shown when the test fails
            await child.stop()
        rig.redis.stop()


async def test_a_killed_master_s_worker_moves_to_the_other_and_resumes_without_a_resync(two: TwoMasters) -> None:
    engine = two.make_engine()
    async with running(engine):
        await engine.wait_synced(timeout=30)
        assert set(two.holders().values()) == {"a"}, "the worker started on A"
        acknowledged = {a: account.confirmed_version for a, account in engine.accounts.items()}
        snapshots = engine.bytes_sent["snapshot"]
        welcomes = len(engine.welcomes)

        master_a = two.masters["a"].process
        master_a.send_signal(signal.SIGKILL)
        await master_a.wait()
        for step, account_id in enumerate(ACCOUNTS):
            two.samples[account_id].grow(10**9 + step)
            engine.publish(account_id, crawl_of(two.samples[account_id]))

        await waiting.eventually(lambda: len(engine.welcomes) > welcomes, timeout=30)
        assert engine.welcomes[welcomes] == acknowledged, "B offers exactly what A acknowledged"
        await settled(two)
        assert engine.bytes_sent["snapshot"] == snapshots, "resumed with deltas: no full resync"
        assert set(two.holders().values()) == {"b"}


async def test_redis_killed_and_restarted_loses_nothing_acknowledged(two: TwoMasters) -> None:
    rounds = int(os.environ.get("IMSYNC_REDIS_CRASH_ROUNDS", "3"))
    seed = int(os.environ.get("IMSYNC_CRASH_SEED", str(random.randrange(10**6))))
    print(f"redis crash test: {rounds} rounds, IMSYNC_CRASH_SEED={seed}")
    rng = random.Random(seed)
    engine = two.make_engine()
    marks: dict[str, set[str]] = {a: set() for a in ACCOUNTS}
    async with running(engine):
        await engine.wait_synced(timeout=30)
        for round_ in range(rounds):
            crawler = asyncio.create_task(two.crawl_forever(random.Random(rng.random())))
            reader = asyncio.create_task(two.read_forever(random.Random(rng.random()), marks))
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            two.redis.kill()
            # From here nothing more can be acknowledged.
            acknowledged = {a: account.confirmed_version for a, account in engine.accounts.items()}
            marked = {a: set(items) for a, items in marks.items()}
            crawler.cancel()
            reader.cancel()
            await asyncio.gather(crawler, reader, return_exceptions=True)

            two.redis.start()  # the same port and files
            # Read at once, before a worker could send anything again.
            kept = two.versions()
            for account_id, version in acknowledged.items():
                assert kept[account_id] >= version, (
                    f"round {round_}: {account_id} version {version} was acknowledged, Redis has {kept[account_id]}"
                )
            for account_id, items in marked.items():
                missing = items - await read_items(two.address, account_id)
                assert not missing, f"round {round_}: acknowledged read marks lost: {sorted(missing)[:5]}"
        await settled(two)
    assert sum(len(items) for items in marks.values()) > rounds, "the reader marked items in most rounds"
