"""Whatever happens on the way, the master ends with the worker's last crawl and keeps
the team's read marks.

Hypothesis draws a sequence of crawls, stream breaks, master restarts (over a store that
survives, as a durable one does, or over an empty one), messages delivered twice, and read
marks; once the stream settles, the master's copy must equal the last crawl exactly.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imsync.v1 import sync_pb2
from services.common.sample import SampleAccount
from services.master.sync.hub import SyncConfig
from services.worker.sync_engine import SyncEngine

from .conftest import NOW
from .sync_harness import MasterHandle, crawl_of, engine_for, master_copy, view_copy
from .test_store_deltas import mutate


class FlakyEngine(SyncEngine):
    """An engine whose network delivers some messages twice."""

    duplicate_rate = 0.0
    chance = random.Random(0)

    def on_the_wire(self, message: sync_pb2.SyncDataRequest) -> list[sync_pb2.SyncDataRequest]:
        if message.WhichOneof("kind") in ("snapshot", "delta") and self.chance.random() < self.duplicate_rate:
            return [message, message]
        return [message]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("crawl"), st.integers(0, 10**6)),
        st.tuples(st.just("disconnect"), st.just(0)),
        st.tuples(st.just("restart"), st.just(0)),
        st.tuples(st.just("crash"), st.just(0)),
        st.tuples(st.just("read"), st.integers(0, 10**6)),
        st.tuples(st.just("pause"), st.integers(0, 3)),
    ),
    min_size=1,
    max_size=10,
)


async def scenario(seed: int, steps: list[tuple[str, int]], duplicate_rate: float) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        master = MasterHandle(Path(tmp), SyncConfig(heartbeat_interval=0.2, lease_duration=1.0))
        await master.start()
        account = SampleAccount("acc", seed=seed, now=NOW)
        account.fill(conversations=5, messages_per_conversation=3, contents=2, comments_per_content=3)
        engine = engine_for(master, ["acc"], engine_class=FlakyEngine, window=2)
        FlakyEngine.chance = random.Random(seed)
        FlakyEngine.duplicate_rate = duplicate_rate
        engine.publish("acc", crawl_of(account))
        run = asyncio.create_task(engine.run())
        read: set[str] = set()
        # A worker learns what its master has only when it says hello: the stream has
        # settled once it reconnected after the last break.
        settled_after = 0
        try:
            for step, (operation, value) in enumerate(steps):
                if operation == "crawl":
                    mutate(account, random.Random(value), step)
                    engine.publish("acc", crawl_of(account))
                elif operation == "disconnect":
                    run.cancel()
                    await asyncio.gather(run, return_exceptions=True)
                    run = asyncio.create_task(engine.run())
                elif operation == "restart":
                    settled_after = engine.sessions
                    await master.restart()
                elif operation == "crash":
                    # A master without a durable store comes back empty: read marks go too.
                    settled_after = engine.sessions
                    await master.restart(lose_state=True)
                    read.clear()
                elif operation == "read":
                    try:
                        inbox = await master.store.list_unified(
                            "acc", types=(), is_read=None, is_new=None, cursor="", count=100
                        )
                    except Exception:
                        continue  # nothing synced yet
                    if inbox.items:
                        item = inbox.items[value % len(inbox.items)].id
                        await master.store.mark_unified_read("acc", [item], 1)
                        read.add(item)
                await asyncio.sleep(0.01 * (value % 4) if operation == "pause" else rng.choice([0, 0, 0.02]))
            async with asyncio.timeout(8):
                while engine.sessions <= settled_after:
                    await asyncio.sleep(0.01)
            await engine.wait_synced(timeout=8)
            assert await master_copy(master.store, "acc") == view_copy(crawl_of(account), "acc")
            # Every read mark of an item still there is intact.
            for item in read:
                kind, _, entity_id = item.partition(":")
                present = entity_id in (
                    {c.comment_id for c in account.batch.comments}
                    if kind == "comment"
                    else {m.message_id for m in account.batch.messages}
                )
                if present:
                    assert (await master.store.get_unified("acc", item)).is_read, item
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await master.stop()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), steps=operations, duplicate_rate=st.sampled_from([0.0, 0.3]))
def test_the_master_converges_to_the_last_crawl(seed: int, steps: list[tuple[str, int]], duplicate_rate: float) -> None:
    asyncio.run(scenario(seed, steps, duplicate_rate))
