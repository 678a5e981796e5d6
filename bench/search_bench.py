"""Search over an account of a million messages (issue: the team inbox's search): the first
page of a two-character query against a page read of the same account, and what the index
costs against the stored messages' serialized size, measured in the same run.

    python -m bench.search_bench [--messages 1000000] [--runs 50]

Targets: a search's first page within 10x a page read; the index at most 1x the messages'
serialized size (memory measured with tracemalloc while the index is built).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from services.common.sample import SampleAccount
from services.master.memory.store import MemoryStore
from services.master.model import search
from services.master.model.store import SnapshotData

NOW = 1_790_000_000


async def _median_seconds(call: Callable[[], Awaitable[Any]], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def run(messages: int, runs: int) -> dict[str, Any]:
    sample = SampleAccount("acc", seed=7, now=NOW)
    sample.fill(
        conversations=max(1, messages // 50), messages_per_conversation=50, contents=20, comments_per_content=50
    )
    serialized = sum(m.ByteSize() for m in sample.batch.messages)
    pairs = Counter(pair for m in sample.batch.messages[:20_000] for pair in search.bigrams_of(m.content.casefold()))
    common, _ = pairs.most_common(1)[0]
    rare = min(pairs, key=lambda pair: (pairs[pair], pair))
    three = next(m.content[:3] for m in sample.batch.messages if len(m.content) >= 3 and " " not in m.content[:3])
    store = MemoryStore()
    await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), sample.account, sample.batch))
    count = len(sample.batch.messages)
    del sample
    gc.collect()

    state = store._state("acc")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    await state.search_index()
    build_seconds = time.perf_counter() - started
    index_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()

    async def page_read() -> None:
        await store.list_messages(
            "acc",
            conversation_id="",
            sender_id="",
            receiver_id="",
            status=0,
            message_type=0,
            since_ns=None,
            cursor="",
            count=20,
        )

    def searching(query: str) -> Callable[[], Awaitable[Any]]:
        wanted = search.check_query(query)

        async def call() -> None:
            hits, _ = await store.search("acc", wanted, list(search.KINDS), b"", 20)
            assert hits, query

        return call

    read = await _median_seconds(page_read, runs)
    found = {
        label: await _median_seconds(searching(q), runs)
        for label, q in (("common", common), ("rare", rare), ("three", three))
    }
    return {
        "messages": count,
        "serialized_bytes": serialized,
        "index_bytes": index_bytes,
        "index_build_seconds": build_seconds,
        "page_read_us": read * 1e6,
        "queries": {"common": common, "rare": rare, "three": three},
        "search_us": {label: seconds * 1e6 for label, seconds in found.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    result = asyncio.run(run(args.messages, args.runs))
    read = result["page_read_us"]
    print(f"{result['messages']:,} messages in one account; the index built in {result['index_build_seconds']:.1f} s")
    print("| measure | value | baseline (same run) | ratio | target |")
    print("|---|---|---|---|---|")
    for label, us in result["search_us"].items():
        query = result["queries"][label]
        print(
            f"| first page of search {query!r} ({label}), µs | {us:,.0f} | page of 20 messages: {read:,.0f} µs "
            f"| {us / read:.1f}x | <= 10x |"
        )
    ratio = result["index_bytes"] / result["serialized_bytes"]
    print(
        f"| the index, bytes per message | {result['index_bytes'] / result['messages']:,.0f} "
        f"| serialized message: {result['serialized_bytes'] / result['messages']:,.0f} | {ratio:.2f}x | <= 1x |"
    )


if __name__ == "__main__":
    main()
