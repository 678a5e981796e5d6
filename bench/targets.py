"""Every performance target of the README, each beside its baseline measured in the same run.

    scripts/bench            # installs wrk if missing, then: python -m bench.targets --json bench-results.json

The data set: 10 accounts, each of 200 conversations of 50 messages and 50 works of 20
comments. HTTP load comes from wrk (Debian's), its own process, on loopback; every server
runs alone while it is measured. One table of ratios and percentiles is printed and, with
--json, written.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench.common import GRPC_OPTIONS, NOW, load, new_message_delta, open_when_free, wrk
from bench.common import master_args as bench_master_args
from imsync.v1 import conversations_pb2 as conv
from imsync_client import ImClient, SyncClient
from services import processes
from services.common.sample import SampleAccount, sample_accounts
from services.gateway.marshalers import IM
from services.master.auth.worker_tokens import add_worker_token
from services.master.memory.store import MemoryStore
from services.master.model.store import SnapshotData

URL = "/api/im/conversations?account_id=douyin-001&count=20"


# ------------------------------------------------------------------------- wrk


def measure(url: str, seconds: float, runs: int = 3) -> dict[str, float]:
    """Throughput at 16 connections; p99 at 64; each the median of `runs` runs (one run's
    tail on a shared machine is as much the neighbours' as the server's)."""
    wrk(url, 1, 16)  # warm-up
    busy = [wrk(url, seconds, 16) for _ in range(runs)]
    loaded = [wrk(url, seconds, 64)["p99_ms"] for _ in range(runs)]
    return {
        "rps": statistics.median(run["rps"] for run in busy),
        "p50_ms": statistics.median(run["p50_ms"] for run in busy),
        "p99_64_ms": statistics.median(loaded),
    }


# ----------------------------------------------------------------- deployments


async def _master_line(child: processes.Child) -> str:
    return (await child.line_with("master listening on")).rpartition(" ")[2]


async def http_targets(tmp: Path, data: list[SampleAccount], seconds: float, profile: Path | None) -> dict[str, Any]:
    tokens = tmp / "tokens.toml"
    token = add_worker_token(tokens, "loader", ["*"])
    master_args = bench_master_args(tokens)
    results: dict[str, Any] = {}

    # Gateway and master in separate processes, and its baseline: one grpc.aio call per request.
    master = await processes.start(master_args)
    try:
        await load(master.address, token, data)
        async with grpc.aio.insecure_channel(master.address) as channel:
            page = await ImClient(channel).list_conversations(
                conv.ListConversationsRequest(account_id="douyin-001", count=20)
            )
        body = IM.response_body(page)
        (tmp / "page.json").write_bytes(body)
        results["page_bytes"] = len(body)
        python = ["-m", "pyinstrument", "-o", str(profile / "separate-gateway.txt")] if profile else []
        gateway = await processes.start(_gateway_args(master.address), python=python)
        try:
            results["separate"] = measure(f"http://{gateway.address}{URL}", seconds)
        finally:
            # SIGINT: uvicorn ends by raising the signal it caught, and only an interrupt
            # (not a termination) lets pyinstrument write its profile on the way out.
            gateway.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(gateway.process.wait(), 30)
            finally:
                await gateway.stop()
        hop = await processes.start(["one-hop", "--master", master.address], module="bench.baselines")
        try:
            results["one_hop"] = measure(f"http://{hop.address}{URL}", seconds)
        finally:
            await hop.stop()
    finally:
        await master.stop()

    # Gateway and master in one process, and its baseline: fixed JSON of the same size.
    python = ["-m", "pyinstrument", "-o", str(profile / "embedded.txt")] if profile else []
    embedded = await processes.start(
        [*master_args, "--gateway-listen", "127.0.0.1:0", "--gateway-console", "none"],
        python=python,
        module="services.cli",
    )
    try:
        await load(await _master_line(embedded), token, data)
        results["embedded"] = measure(f"http://{embedded.address}{URL}", seconds)
        results["sse"] = await sse_latency(await _master_line(embedded), f"http://{embedded.address}", tokens, data[0])
    finally:
        await embedded.stop(timeout=30)
    fixed = await processes.start(["fixed", "--body", str(tmp / "page.json")], module="bench.baselines")
    try:
        results["fixed"] = measure(f"http://{fixed.address}{URL}", seconds)
        results["noop"] = await round_trips(f"http://{fixed.address}/noop")
    finally:
        await fixed.stop()
    results["uncached"] = await uncached_targets(tmp, master_args, token, data, seconds)
    return results


def _gateway_args(master: str, *more: str) -> list[str]:
    """`imsync gateway` in front of `master`, quiet, on a free port, without the console."""
    return [
        "--log-level",
        "WARNING",
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--master",
        master,
        "--console",
        "none",
        *more,
    ]


def _pages(data: list[SampleAccount]) -> dict[str, str]:
    """The pages read without a cache: a page of conversations, of a conversation's
    messages, of the unified inbox."""
    conversation = data[0].batch.conversations[0].conversation_id
    return {
        "conversations": URL,
        "messages": f"/api/im/conversations/{conversation}/messages?account_id=douyin-001&count=20",
        "unified inbox": "/api/im/unified-messages?account_id=douyin-001&count=20",
    }


async def uncached_targets(
    tmp: Path, master_args: list[str], token: str, data: list[SampleAccount], seconds: float
) -> dict[str, Any]:
    """Each page with the cache off (a page made anew at every read), embedded and through a
    gateway process; beside the bare endpoint answering the same page's bytes."""
    results: dict[str, Any] = {}
    embedded = await processes.start(
        [*master_args, "--gateway-listen", "127.0.0.1:0", "--gateway-console", "none", "--gateway-no-cache"],
        module="services.cli",
    )
    try:
        master = await _master_line(embedded)
        await load(master, token, data)
        async with httpx.AsyncClient(base_url=f"http://{embedded.address}") as http:
            for name, path in _pages(data).items():
                answer = await http.get(path)
                answer.raise_for_status()
                (tmp / f"{name}.json").write_bytes(answer.content)
                results[name] = {"bytes": len(answer.content)}
                results[name]["embedded"] = measure(f"http://{embedded.address}{path}", seconds)
        gateway = await processes.start(_gateway_args(master, "--no-cache"))
        try:
            for name, path in _pages(data).items():
                results[name]["separate"] = measure(f"http://{gateway.address}{path}", seconds)
        finally:
            await gateway.stop()
    finally:
        await embedded.stop(timeout=30)
    for name, path in _pages(data).items():
        fixed = await processes.start(["fixed", "--body", str(tmp / f"{name}.json")], module="bench.baselines")
        try:
            results[name]["fixed"] = measure(f"http://{fixed.address}{path}", seconds)
        finally:
            await fixed.stop()
    return results


# ------------------------------------------------------------------------- SSE


async def round_trips(url: str, count: int = 300) -> dict[str, float]:
    times = []
    async with httpx.AsyncClient() as http:
        for _ in range(count):
            started = time.perf_counter()
            (await http.get(url)).raise_for_status()
            times.append(time.perf_counter() - started)
    return _percentiles(times)


async def sse_latency(
    master: str, base: str, tokens: Path, sample: SampleAccount, count: int = 200
) -> dict[str, float]:
    """From the Ack of a sync bringing a new message to an SSE client seeing its event."""
    token = add_worker_token(tokens, "sse-worker", [sample.account_id])
    seen: dict[str, float] = {}
    ready = asyncio.Event()

    async def listen() -> None:
        async with (
            httpx.AsyncClient(timeout=None) as http,
            http.stream(
                "GET",
                f"{base}/api/im/events?account_ids={sample.account_id}&types=new_message",
                headers={"Accept": "text/event-stream"},
            ) as response,
        ):
            async for line in response.aiter_lines():
                ready.set()
                if line.startswith("data:"):
                    seen[json.loads(line[5:])["event"]["message"]["message_id"]] = time.perf_counter()

    listener = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 10)
    latencies = []
    async with grpc.aio.insecure_channel(master, options=GRPC_OPTIONS) as channel:
        client = SyncClient(channel, "sse-worker", token=token)
        version = await open_when_free(client, sample.account_id)
        for step in range(count):
            request, message = new_message_delta(sample, version, step)
            version = await client.send([request])
            acked = time.perf_counter()
            async with asyncio.timeout(10):
                while message.message_id not in seen:
                    await asyncio.sleep(0.0005)
            latencies.append(max(0.0, seen[message.message_id] - acked))
        await client.close()
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    return _percentiles(latencies)


def _percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": 1000 * ordered[len(ordered) // 2], "p99_ms": 1000 * ordered[int(len(ordered) * 0.99)]}


# ------------------------------------------------------------------ in process


async def query_scaling() -> dict[str, float]:
    """A page of 20 messages in an account of 100,000 messages and in one of 1,000."""

    async def seconds_per_page(messages: int) -> float:
        sample = SampleAccount("acc", seed=4, now=NOW)
        sample.fill(conversations=messages // 50, messages_per_conversation=50, contents=1, comments_per_content=1)
        store = MemoryStore()
        await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), sample.account, sample.batch))
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            cursor = ""
            for _ in range(50):  # 50 pages deep: the cursor's cost counts too
                page = await store.list_messages(
                    "acc",
                    conversation_id="",
                    sender_id="",
                    receiver_id="",
                    status=0,
                    message_type=0,
                    since_ns=None,
                    cursor=cursor,
                    count=20,
                )
                cursor = page.cursor
            runs.append((time.perf_counter() - started) / 50)
        return min(runs)

    small, large = await seconds_per_page(1_000), await seconds_per_page(100_000)
    return {"small_us": small * 1e6, "large_us": large * 1e6}


def memory_per_message(messages: int) -> dict[str, float]:
    """Resident memory per stored message beside its serialized size, in a fresh process."""
    code = f"""
import asyncio, gc, json
from services.common.sample import SampleAccount
from services.master.memory.store import MemoryStore
from services.master.model.store import SnapshotData
from imsync.v1 import entities_pb2, sync_pb2
def rss():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith('VmRSS'))
payloads = []
per_account = {messages} // 10
for index in range(10):
    sample = SampleAccount(f"acc-{{index}}", seed=index, now={NOW})
    sample.fill(conversations=per_account // 50, messages_per_conversation=50, contents=0, comments_per_content=0)
    payloads.append((sample.account.SerializeToString(), sample.batch.SerializeToString(),
                     sum(m.ByteSize() for m in sample.batch.messages), len(sample.batch.messages)))
    del sample
gc.collect()
before = rss()
store = MemoryStore()
async def load():
    for index, (account, batch, _, _) in enumerate(payloads):
        await store.apply_snapshot(SnapshotData(f"acc-{{index}}", 1, frozenset(),
            entities_pb2.Account.FromString(account), sync_pb2.EntityBatch.FromString(batch)))
asyncio.run(load())
gc.collect()
stored = rss()
# The embedded gateway's kept encodings, full in both styles (json_views.py): as many
# messages rendered as their bounds hold.
from services.common.protojson import JsonStyle
from services.master.model.json_views import JsonViews
views = [JsonViews(style) for style in JsonStyle]
full = lambda v: all(kept.bytes > kept.max_bytes * 0.99 for kept in (v.kept, v.wrappers))
for index in range(10):
    state = store._state(f"acc-{{index}}")
    for message_id in state.messages:
        if all(full(v) for v in views):
            break
        for v in views:
            v.unified(state, "message:" + message_id)
gc.collect()
after = rss()
serialized = sum(p[2] for p in payloads)
count = sum(p[3] for p in payloads)
print(json.dumps({{"messages": count, "rss_bytes": after - before, "serialized_bytes": serialized,
    "encodings_rss_bytes": after - stored, "encodings_bytes": sum(v.kept.bytes + v.wrappers.bytes for v in views)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    found = json.loads(out)
    return {
        "messages": found["messages"],
        "rss_per_message": found["rss_bytes"] / found["messages"],
        "serialized_per_message": found["serialized_bytes"] / found["messages"],
        "encodings_rss_bytes": found["encodings_rss_bytes"],
        "encodings_bytes": found["encodings_bytes"],
    }


async def ingestion(messages: int) -> dict[str, Any]:
    from bench.sync_bench import run as sync_run

    # Also the bare SyncData server's rate (bench/baselines.py sync), kept in the JSON.
    results = await sync_run(messages, 3)
    return {**results["snapshot"], "single": results["single"]}


# ------------------------------------------------------------------------ main


def _uncached_rows(uncached: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for name, page in uncached.items():
        fixed = page["fixed"]
        for where in ("embedded", "separate"):
            read = page[where]
            rows.append(
                (
                    f"GET {name} (20), no cache, {where}, req/s",
                    f"{read['rps']:,.0f}",
                    f"fixed JSON ({page['bytes']:,} B): {fixed['rps']:,.0f}",
                    f"{read['rps'] / fixed['rps']:.2f}",
                    ">= 0.5",
                )
            )
            rows.append(
                (
                    f"  p99 at 64 connections, {where}",
                    f"{read['p99_64_ms']:.1f} ms",
                    f"{fixed['p99_64_ms']:.1f} ms",
                    f"{read['p99_64_ms'] / fixed['p99_64_ms']:.2f}",
                    "<= 2",
                )
            )
    return rows


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    h = results["http"]
    rows = [
        (
            "GET conversations (20), separate processes, req/s",
            f"{h['separate']['rps']:,.0f}",
            f"one grpc.aio call: {h['one_hop']['rps']:,.0f}",
            f"{h['separate']['rps'] / h['one_hop']['rps']:.2f}",
            ">= 2",
        ),
        (
            "the same, embedded, req/s",
            f"{h['embedded']['rps']:,.0f}",
            f"fixed JSON: {h['fixed']['rps']:,.0f}",
            f"{h['embedded']['rps'] / h['fixed']['rps']:.2f}",
            ">= 0.7",
        ),
        (
            "p99 at 64 connections, separate",
            f"{h['separate']['p99_64_ms']:.1f} ms",
            f"{h['one_hop']['p99_64_ms']:.1f} ms",
            f"{h['separate']['p99_64_ms'] / h['one_hop']['p99_64_ms']:.2f}",
            "<= 1",
        ),
        (
            "p99 at 64 connections, embedded",
            f"{h['embedded']['p99_64_ms']:.1f} ms",
            f"{h['fixed']['p99_64_ms']:.1f} ms",
            f"{h['embedded']['p99_64_ms'] / h['fixed']['p99_64_ms']:.2f}",
            "<= 1",
        ),
        *_uncached_rows(h["uncached"]),
        (
            "page of 20 of 100,000 messages, in process",
            f"{results['query']['large_us']:.0f} us",
            f"of 1,000: {results['query']['small_us']:.0f} us",
            f"{results['query']['large_us'] / results['query']['small_us']:.2f}",
            "<= 2",
        ),
        (
            "snapshot ingestion, entities/s",
            f"{results['ingestion']['rate']:,.0f}",
            f"parse + index: {results['ingestion']['baseline_rate']:,.0f}",
            f"{results['ingestion']['rate'] / results['ingestion']['baseline_rate']:.2f}",
            ">= 0.5",
        ),
        (
            "one-message deltas through SyncData, each awaiting its Ack, /s",
            f"{results['ingestion']['single']['rate']:,.0f}",
            f"bare SyncData server: {results['ingestion']['single']['bare_server_rate']:,.0f}",
            f"{results['ingestion']['single']['rate'] / results['ingestion']['single']['bare_server_rate']:.2f}",
            ">= 0.5",
        ),
        (
            f"resident memory per message at {results['memory']['messages']:,}, kept encodings full"
            f" ({results['memory']['encodings_rss_bytes'] / 2**20:.0f} MiB of it)",
            f"{results['memory']['rss_per_message']:.0f} B",
            f"serialized: {results['memory']['serialized_per_message']:.0f} B",
            f"{results['memory']['rss_per_message'] / results['memory']['serialized_per_message']:.2f}",
            "<= 4",
        ),
        (
            "Ack to SSE event, p99",
            f"{h['sse']['p99_ms']:.2f} ms",
            f"no-op round trip: {h['noop']['p99_ms']:.2f} ms",
            f"{h['sse']['p99_ms'] / h['noop']['p99_ms']:.2f}",
            "<= 5",
        ),
    ]
    return rows


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: scripts/bench installs Debian's")
    results: dict[str, Any] = {"machine": _machine()}
    data = sample_accounts(10, now=NOW, seed=7, size="bench")
    with tempfile.TemporaryDirectory() as folder:
        if args.profiles:
            args.profiles.mkdir(parents=True, exist_ok=True)
        results["http"] = await http_targets(Path(folder), data, args.seconds, args.profiles)
    del data
    gc.collect()
    results["query"] = await query_scaling()
    results["ingestion"] = await ingestion(args.ingestion_messages)
    results["memory"] = memory_per_message(args.memory_messages)
    return results


def _machine() -> str:
    cores = len(os.sched_getaffinity(0))
    memory = resource.getpagesize() * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cores} cores, {memory:.0f} GiB, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of each wrk run (default %(default)s)")
    parser.add_argument("--memory-messages", type=int, default=1_000_000)
    parser.add_argument("--ingestion-messages", type=int, default=100_000)
    parser.add_argument("--profiles", type=Path, help="profile both read paths (pyinstrument) into this folder")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    rows = table(results)
    print(f"machine: {results['machine']}; page of 20 conversations: {results['http']['page_bytes']:,} bytes of JSON")
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    header = ("what", "measured", "baseline (same run)", "ratio", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if args.json:
        results["table"] = [dict(zip(header, row, strict=True)) for row in rows]
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
