"""What a one-message delta costs a store, in process: `apply_delta` awaited in a loop on
one account of the benchmark's size, on the memory store and on Redis (its own
`redis-server`, appendfsync always, and with appendfsync no: what the fsync takes), in
the same run. No gRPC, no session: the store's own work, and on Redis its round trips.

    .venv/bin/python -m bench.delta_cost [--deltas N]

Printed: microseconds a delta for each, and each against the memory store's.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from services.common.local_redis import RedisServer
from services.common.sample import sample_accounts
from services.master.memory.store import MemoryStore
from services.master.model.store import DeltaData, SnapshotData, Store
from services.master.redis.store import RedisStore

from .common import NOW, new_message_delta


async def _us_per_delta(store: Store, deltas: int) -> float:
    sample = sample_accounts(1, now=NOW, seed=7, size="bench")[0]
    await store.apply_snapshot(SnapshotData(sample.account_id, 1, frozenset(), sample.account, sample.batch))
    made = []
    for step in range(deltas + deltas // 10):
        request, _ = new_message_delta(sample, 1 + step, step)
        d = request.delta
        made.append(DeltaData(d.account_id, d.base_version, d.version, None, d.upserts, d.removals))
    warm, timed = made[: deltas // 10], made[deltas // 10 :]
    for delta in warm:
        assert await store.apply_delta(delta)
    started = time.perf_counter()
    for delta in timed:
        assert await store.apply_delta(delta)
    return (time.perf_counter() - started) / len(timed) * 1e6


async def run(deltas: int) -> dict[str, float]:
    results = {"memory": await _us_per_delta(MemoryStore(), deltas)}
    with tempfile.TemporaryDirectory() as folder:
        for fsync in ("always", "no"):
            redis = RedisServer(Path(folder) / fsync, appendfsync=fsync).start()
            store = RedisStore.from_url(redis.url)
            try:
                results[f"redis, appendfsync {fsync}"] = await _us_per_delta(store, deltas)
            finally:
                await store.close()
                redis.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deltas", type=int, default=1000, help="deltas timed on each store (default %(default)s)")
    args = parser.parse_args()
    results = asyncio.run(run(args.deltas))
    memory = results["memory"]
    for name, us in results.items():
        print(f"{name:<26} {us:>8.0f} us a delta  {us / memory:>6.1f}x the memory store's")


if __name__ == "__main__":
    main()
