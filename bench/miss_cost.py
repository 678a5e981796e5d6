"""What a read that misses the cache costs in the embedded gateway, in process: the ASGI
application called directly (no HTTP, no wrk), beside a hit of the same page, measured
in the same run.

    .venv/bin/python -m bench.miss_cost [--calls N]

A master in this process holds 10 accounts of the benchmark's size and an empty one; the
embedded gateway's application is built twice, with its cache and without. Printed, per
page (conversations, a conversation's messages, the unified inbox): microseconds a call
(the fastest of five rounds) for a hit, a miss of an empty page (the fixed cost), a miss
of a page of 1 and of 20 (the cost per item), the miss of 20 against the hit, and how much
of that miss is the master's: the in-process call the gateway makes (the boundary, the
servicer and the store, on a channel of its own), the rest being the gateway's.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers

from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import messages_pb2 as msg
from imsync.v1 import unified_messages_pb2 as uni
from services.common import logs
from services.common.protojson import JsonStyle
from services.common.sample import SampleAccount, sample_accounts
from services.embedded import embedded_app
from services.gateway.grpc_bridge import outgoing_metadata
from services.master.auth.worker_tokens import add_worker_token
from services.master.in_process import InProcessChannel
from services.master.server import Master, MasterConfig

from .common import NOW, load


async def _call(app: Any, path_and_query: str) -> None:
    path, _, query = path_and_query.partition("?")
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
        "asgi": {"version": "3.0"},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"{path_and_query}: {sent}")


async def _us(app: Any, path: str, calls: int, repeats: int = 5) -> float:
    return await _best(lambda: _call(app, path), calls, repeats)


async def _best(call: Callable[[], Awaitable[Any]], calls: int, repeats: int = 5) -> float:
    """Microseconds a call: the fastest of `repeats` rounds of `calls` (the machine is shared;
    the other rounds measure its neighbours too)."""
    for _ in range(calls // 10):
        await call()
    rounds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            await call()
        rounds.append((time.perf_counter() - started) / calls * 1e6)
    return min(rounds)


# The master's part of each page: its method, and the request the gateway binds from the path.
_METHODS = {
    "conversations": ("/imsync.v1.ConversationService/ListConversations", conv.ListConversationsRequest),
    "messages": ("/imsync.v1.MessageService/ListMessages", msg.ListMessagesRequest),
    "unified inbox": ("/imsync.v1.UnifiedMessageService/ListUnifiedMessages", uni.ListUnifiedMessagesRequest),
}
# The metadata the gateway gives the call for _call's request: its headers' and the request id.
_METADATA = [*outgoing_metadata(Headers(raw=[(b"host", b"bench")]), "127.0.0.1"), (logs.HEADER, "0" * 16)]


async def _master_us(channel: InProcessChannel, page: str, conversation: str, calls: int) -> float:
    path, request_type = _METHODS[page]
    call = channel.encoded_unary(path, JsonStyle.GRPC_GATEWAY)
    assert call is not None
    request = request_type(account_id="douyin-001", count=20)
    if page == "messages":
        request.conversation_id = conversation
    return await _best(lambda: call(request, metadata=_METADATA, timeout=None), calls)


async def run(calls: int) -> dict[str, dict[str, float]]:
    data = sample_accounts(10, now=NOW, seed=7, size="bench")
    empty = SampleAccount("empty", 3, NOW)
    empty.fill(conversations=1, messages_per_conversation=0, contents=0, comments_per_content=0)
    conversation = data[0].batch.conversations[0].conversation_id
    pages = {
        "conversations": "/api/im/conversations?account_id={a}&count={n}",
        "messages": f"/api/im/conversations/{conversation}/messages?account_id={{a}}&count={{n}}",
        "unified inbox": "/api/im/unified-messages?account_id={a}&count={n}",
    }
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        tokens = Path(folder) / "tokens.toml"
        token = add_worker_token(tokens, "loader", ["*"])
        master = Master(MasterConfig(listen="127.0.0.1:0", worker_tokens=tokens, rate_limit=0))
        port = await master.start()
        try:
            await load(f"127.0.0.1:{port}", token, [*data, empty])
            cached, _ = embedded_app(master)
            uncached, _ = embedded_app(master, cache=False)
            channel = InProcessChannel(master.im_servicers, master.keys)
            for name, page in pages.items():
                # An empty page: the conversations and inbox of "empty"; messages of a
                # conversation of douyin-001 from past its last.
                empty_page = page.format(a="empty", n=20)
                if name == "messages":
                    empty_page = page.format(a="douyin-001", n=20) + "&since_time=2100-01-01T00:00:00Z"
                results[name] = {
                    "hit": await _us(cached, page.format(a="douyin-001", n=20), calls),
                    "empty": await _us(uncached, empty_page, calls),
                    "one": await _us(uncached, page.format(a="douyin-001", n=1), calls),
                    "twenty": await _us(uncached, page.format(a="douyin-001", n=20), calls),
                    "master": await _master_us(channel, name, conversation, calls),
                }
        finally:
            await master.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="calls of each round (default %(default)s)")
    args = parser.parse_args()
    results = asyncio.run(run(args.calls))
    print(
        f"{'page':<15} {'hit':>8} {'miss: empty':>12} {'of 1':>8} {'of 20':>8} {'per item':>9} {'20 / hit':>9}"
        f" {'of 20, the master':>18}"
    )
    for name, row in results.items():
        per_item = (row["twenty"] - row["one"]) / 19
        print(
            f"{name:<15} {row['hit']:>6.1f}us {row['empty']:>10.1f}us {row['one']:>6.1f}us {row['twenty']:>6.1f}us"
            f" {per_item:>7.2f}us {row['twenty'] / row['hit']:>9.1f}"
            f" {row['master']:>7.1f}us ({row['master'] / row['twenty']:.2f})"
        )


if __name__ == "__main__":
    main()
