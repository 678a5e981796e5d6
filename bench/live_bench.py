"""How soon a customer's private message reaches a live client, with the chat page watched
live beside the periodic crawl, against the crawl alone, measured in the same run.

Starts the simulator (its customers quiet), a master, a gateway and a worker crawling one
account every `--interval` seconds in Chromium; an SSE client follows new messages. A
customer then writes `--messages` times, a second or so apart, and each message's time from
the customer's send to the SSE event is taken. The same again with the worker's live chat
off (`live_chat = false`): then only the next crawl brings it. After the last message the
run waits two crawls more and counts any message announced twice.

    python -m bench.live_bench [--interval 5] [--messages 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from services import processes
from services.master.auth.worker_tokens import add_worker_token
from services.sim.server import uids_of, worker_accounts


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def run(interval: float, messages: int, live: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="imsync-live-") as tmp:
        folder = Path(tmp)
        token = add_worker_token(folder / "tokens.toml", "bench-worker", ["*"])
        children: list[processes.Child] = []
        try:
            sim = await processes.start(["sim", "--listen", "127.0.0.1:0", "--accounts", "1", "--rate", "0"])
            children.append(sim)
            master = await processes.start(
                ["master", "--listen", "127.0.0.1:0", "--worker-tokens", str(folder / "tokens.toml")]
            )
            children.append(master)
            gateway = await processes.start(["gateway", "--listen", "127.0.0.1:0", "--master", master.address])
            children.append(gateway)
            uid = uids_of(sim.ready_line)[0]
            config = folder / "worker.toml"
            config.write_text(
                f'master = "{master.address}"\nworker_id = "bench-worker"\ntoken = "{token}"\n'
                f"crawl_interval = {interval}\ncrawl_jitter = 0\n"
                + worker_accounts(sim.address, ["shop"], [uid], live_chat=live)
            )
            children.append(await processes.start(["worker", "--config", str(config)]))
            base, platform = f"http://{gateway.address}", f"http://{sim.address}"
            arrived: dict[str, float] = {}
            announced: Counter[str] = Counter()
            subscribed = asyncio.Event()

            async def follow() -> None:
                async with httpx.AsyncClient(base_url=base, timeout=None) as http:
                    async with http.stream(
                        "GET",
                        "/api/im/events",
                        params={"types": "new_message"},
                        headers={"Accept": "text/event-stream"},
                    ) as stream:
                        subscribed.set()
                        async for line in stream.aiter_lines():
                            if line.startswith("data: "):
                                message = json.loads(line[6:])["event"]["message"]
                                announced[message["message_id"]] += 1
                                arrived.setdefault(message["content"], time.monotonic())

            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                async with asyncio.timeout(120):  # the account synced, and its chat page open
                    while (
                        not (users := (await http.get("/api/im/accounts")).json()["data"]["users"])
                        or int(users[0]["version"]) == 0
                    ):
                        await asyncio.sleep(0.2)
            await asyncio.sleep(3)
            follower = asyncio.create_task(follow())
            await subscribed.wait()
            sent: dict[str, float] = {}
            rng = random.Random(7)
            async with httpx.AsyncClient(base_url=platform, timeout=30) as sim_http:
                for index in range(messages):
                    text = f"bench-{live}-{index}"
                    sent[text] = time.monotonic()
                    (
                        await sim_http.post("/__sim/customer", json={"uid": uid, "kind": "message", "text": text})
                    ).raise_for_status()
                    await asyncio.sleep(rng.uniform(0.5, 1.5))
            async with asyncio.timeout(interval * 4 + 30):
                while len(arrived) < messages:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(interval * 2 + 2)  # two crawls more: a duplicate would show now
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        finally:
            for child in reversed(children):
                await child.stop()
    latencies = [arrived[text] - at for text, at in sent.items()]
    return {
        "live_chat": live,
        "messages": messages,
        "p50_s": _percentile(latencies, 0.5),
        "p99_s": _percentile(latencies, 0.99),
        "max_s": max(latencies),
        "announced_twice": sum(1 for count in announced.values() if count > 1),
    }


async def bench(interval: float, messages: int) -> dict[str, Any]:
    live = await run(interval, messages, True)
    crawl = await run(interval, messages, False)
    return {"crawl_interval_s": interval, "live": live, "crawl_only": crawl}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(bench(args.interval, args.messages))
    interval = result["crawl_interval_s"]
    print(f"\na customer's message to an SSE client, {args.messages} messages, crawl interval {interval:g} s:")
    print("| path | p50 | p99 | max | p99 / crawl interval | announced twice |")
    print("|---|---|---|---|---|---|")
    for name, row in (("live chat page + crawls", result["live"]), ("crawls only", result["crawl_only"])):
        print(
            f"| {name} | {row['p50_s'] * 1000:.0f} ms | {row['p99_s'] * 1000:.0f} ms | {row['max_s'] * 1000:.0f} ms | "
            f"{row['p99_s'] / interval:.3f} | {row['announced_twice']} |"
        )
    print(f"live p99 / crawl-only p99: {result['live']['p99_s'] / result['crawl_only']['p99_s']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
