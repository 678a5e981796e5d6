"""The inbox by thread: a page of an account's threads (conversations and comment threads
merged) against a page of its inbox item by item, in the same run, on both store backends.

    .venv/bin/python -m bench.threads_bench [--comments N] [--pages P] [--json PATH]

The account holds N comments (a third of them replies) and 200 conversations; the store is
called in this process (no gRPC, no HTTP), so the figure is the list's own cost. Printed per
backend: ms per first page of 30 by item, by thread, and by thread with the filter "mine"
(one agent owns a tenth of the threads, so the list passes over most of them), each with
its ratio to the page by item.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.local_redis import RedisServer
from services.common.sample import SampleAccount
from services.master.api import thread_list
from services.master.memory.store import MemoryStore
from services.master.model import threads
from services.master.model.store import SnapshotData, Store
from services.master.redis.store import RedisStore

from .common import NOW

PAGE = 30


def build(comments: int) -> SampleAccount:
    sample = SampleAccount("bench", seed=7, now=NOW)
    contents = max(1, comments // 150)
    sample.fill(conversations=200, messages_per_conversation=5, contents=contents, comments_per_content=0)
    customer = e.User(user_id="9001", user_name="张三")
    for index in range(comments):
        content = sample.batch.contents[index % contents]
        parent = sample.batch.comments[index - 2] if index % 3 == 2 else None
        sample.batch.comments.add(
            comment_id=f"c{index:07d}",
            content_id=parent.content_id if parent else content.content_id,
            parent_comment_id=(parent.parent_comment_id or parent.comment_id) if parent else "",
            content="这个有优惠吗",
            author=customer,
            created_at={"seconds": NOW - comments + index},
        )
    return sample


async def timed(call: Callable[[], Awaitable[Any]], pages: int) -> float:
    """Median ms of `pages` calls."""
    took = []
    for _ in range(pages):
        start = time.perf_counter()
        await call()
        took.append((time.perf_counter() - start) * 1e3)
    return statistics.median(took)


async def measure(store: Store, sample: SampleAccount, pages: int) -> dict[str, float]:
    batch = sync_pb2.EntityBatch()
    batch.CopyFrom(sample.batch)
    await store.apply_snapshot(SnapshotData("bench", 1, frozenset(), sample.account, batch))
    roots = [c.comment_id for c in sample.batch.comments if not c.parent_comment_id]
    for root in roots[::10]:
        await store.handle_comment_thread("bench", root, threads.claim("王芳"), time.time_ns())
    kinds = set(thread_list.KINDS)

    def by_thread(assignee: str | None) -> Callable[[], Awaitable[Any]]:
        return lambda: thread_list.list_threads(
            store,
            "bench",
            kinds=kinds,
            assignee=assignee,
            thread_state=0,
            cursor="",
            count=PAGE,
            now_ns=time.time_ns(),
        )

    by_item = await timed(
        lambda: store.list_unified("bench", types=(), is_read=None, is_new=None, cursor="", count=PAGE), pages
    )
    return {
        "by_item_ms": by_item,
        "by_thread_ms": await timed(by_thread(None), pages),
        "mine_ms": await timed(by_thread("王芳"), pages),
    }


async def run(comments: int, pages: int) -> dict[str, dict[str, float]]:
    sample = build(comments)
    results = {"memory": await measure(MemoryStore(), sample, pages)}
    with tempfile.TemporaryDirectory() as folder:
        server = RedisServer(Path(folder)).start()
        try:
            store = RedisStore.from_url(server.url, prefix="bench")
            try:
                results["redis"] = await measure(store, sample, pages)
            finally:
                await store.close()
        finally:
            server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comments", type=int, default=30_000)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args.comments, args.pages))
    print(f"a first page of {PAGE}, {args.comments:,} comments and 200 conversations, median of {args.pages}")
    print(f"{'backend':<8} {'by item ms':>11} {'by thread ms':>13} {'ratio':>6} {'mine ms':>9} {'ratio':>6}")
    for backend, r in results.items():
        base = r["by_item_ms"]
        print(
            f"{backend:<8} {base:>11.2f} {r['by_thread_ms']:>13.2f} {r['by_thread_ms'] / base:>6.1f}"
            f" {r['mine_ms']:>9.2f} {r['mine_ms'] / base:>6.1f}"
        )
    print("ratio: against the page by item of the same backend, in this run")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
