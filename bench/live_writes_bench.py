"""Reads under live writes: pages of conversations read across every account while every
account receives a one-message delta each second, against the same reads with no writes,
in one run.

    .venv/bin/python -m bench.live_writes_bench [--seconds S] [--accounts N] [--rate R] [--json PATH]

One master with its embedded gateway (`--gateway-listen`), in its own process: once with
its cache, once without (`--gateway-no-cache`: every page joined anew from the kept
encodings). wrk (2 threads, 16 connections) reads the first page of 20 conversations of each
account in turn; a worker stream sends each account a delta bringing one new customer
message every second (`--rate` of them a second) and waits for each Ack. Printed: reads/s and p99 with and without the
writes (the ratio is the figure), the cache's hit ratio over each phase (the master's
`/metrics`), and the deltas' rate and Ack p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
from prometheus_client.parser import text_string_to_metric_families

from imsync_client import SyncClient
from services import processes
from services.common.addresses import free_port
from services.common.sample import SampleAccount, sample_accounts
from services.master.auth.worker_tokens import add_worker_token

from .common import GRPC_OPTIONS, NOW, load, master_args, new_message_delta, wrk


def _paths_script(paths: list[str], folder: Path) -> Path:
    """wrk's Lua script asking for `paths` in turn."""
    script = folder / "paths.lua"
    listed = ", ".join(json.dumps(path) for path in paths)
    script.write_text(
        f"local paths = {{{listed}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n"
    )
    return script


async def _cache_answers(metrics: str) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(metrics)).text
    counts = {"hit": 0.0, "miss": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "imsync_cache_answers_total" and sample.labels.get("result") in counts:
                counts[sample.labels["result"]] = sample.value
    return counts


def _answers(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    hits, misses = after["hit"] - before["hit"], after["miss"] - before["miss"]
    return {"hits": hits, "misses": misses, "hit_ratio": hits / (hits + misses) if hits + misses else 0.0}


async def _write(address: str, token: str, data: list[SampleAccount], rate: float, stop: asyncio.Event) -> list[float]:
    """Each account `rate` one-message deltas a second until `stop`; the Acks' seconds."""
    acks: list[float] = []
    async with grpc.aio.insecure_channel(address, options=GRPC_OPTIONS) as channel:
        client = SyncClient(channel, "writer", token=token)
        versions: dict[str, int | None] = {}
        while True:
            versions = await client.open({sample.account_id: 0 for sample in data})
            if all(versions.get(sample.account_id) is not None for sample in data):
                break
            await client.close()
            await asyncio.sleep(0.1)
        step = 0
        while not stop.is_set():
            began = time.perf_counter()
            for sample in data:
                version = versions[sample.account_id]
                assert version is not None
                request, _ = new_message_delta(sample, version, step)
                sent = time.perf_counter()
                versions[sample.account_id] = await client.send([request])
                acks.append(time.perf_counter() - sent)
            step += 1
            await asyncio.sleep(max(0.0, 1.0 / rate - (time.perf_counter() - began)))
        await client.close()
    return acks


async def _phases(
    data: list[SampleAccount], folder: Path, seconds: float, rate: float, *, cache: bool
) -> dict[str, Any]:
    tokens = folder / "tokens.toml"
    loader = add_worker_token(tokens, "loader", ["*"])
    writer = add_worker_token(tokens, "writer", ["*"])
    metrics_port = free_port()
    master = await processes.start(
        [
            *master_args(tokens),
            "--gateway-listen",
            "127.0.0.1:0",
            "--gateway-console",
            "none",
            "--metrics-listen",
            f"127.0.0.1:{metrics_port}",
            *([] if cache else ["--gateway-no-cache"]),
        ]
    )
    try:
        line = await master.line_with("master listening on")
        address = line.rpartition(" ")[2]
        await load(address, loader, data)
        base = f"http://{master.address}"
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        paths = [f"/api/im/conversations?account_id={sample.account_id}&count=20" for sample in data]
        script = _paths_script(paths, folder)
        wrk(base, 1, 16, script)  # warm-up: every page kept once
        before = await _cache_answers(metrics)
        quiet = wrk(base, seconds, 16, script)
        after_quiet = await _cache_answers(metrics)
        stop = asyncio.Event()
        writing = asyncio.create_task(_write(address, writer, data, rate, stop))
        await asyncio.sleep(1.5)  # the writer's stream open and its first round sent
        busy = await asyncio.to_thread(wrk, base, seconds, 16, script)
        after_busy = await _cache_answers(metrics)
        stop.set()
        acks = await writing
    finally:
        await master.stop(timeout=30)
    acks.sort()
    return {
        "quiet": {**quiet, **_answers(before, after_quiet)},
        "busy": {**busy, **_answers(after_quiet, after_busy)},
        "deltas": {
            "count": len(acks),
            "per_second": len(acks) / (seconds + 1.5),
            "ack_p50_ms": statistics.median(acks) * 1000,
            "ack_p99_ms": acks[min(len(acks) - 1, int(len(acks) * 0.99))] * 1000,
        },
    }


async def run(seconds: float, accounts: int, rate: float) -> dict[str, Any]:
    """Both gateways: with its cache, and with none (every page joined anew)."""
    data = sample_accounts(accounts, now=NOW, seed=7, size="bench")
    results: dict[str, Any] = {"accounts": accounts, "rate": rate}
    for name, cache in (("cache", True), ("no cache", False)):
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = await _phases(data, Path(tmp), seconds, rate, cache=cache)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of each wrk phase (default %(default)s)")
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1.0, help="deltas per account per second (default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args.seconds, args.accounts, args.rate))
    print(f"{results['accounts']} accounts, pages of 20 conversations read in turn; wrk 2 threads, 16 connections")
    print(f"{'gateway':<9} {'phase':<44} {'reads/s':>9} {'p99':>9} {'cache hits':>11} {'misses':>7}")
    for gateway in ("cache", "no cache"):
        quiet, busy, deltas = results[gateway]["quiet"], results[gateway]["busy"], results[gateway]["deltas"]
        for label, phase in (
            ("no writes", quiet),
            (f"{results['rate']:g} one-message delta(s) per account per s", busy),
        ):
            hits = (
                f"{phase['hit_ratio']:>10.2%} {phase['misses']:>7,.0f}" if gateway == "cache" else f"{'-':>10} {'-':>7}"
            )
            print(f"{gateway:<9} {label:<44} {phase['rps']:>9,.0f} {phase['p99_ms']:>7.1f}ms {hits}")
        print(f"{gateway:<9} reads under writes / reads without: {busy['rps'] / quiet['rps']:.2f}")
        print(
            f"{gateway:<9} deltas: {deltas['count']} ({deltas['per_second']:.1f}/s),"
            f" Ack p50 {deltas['ack_p50_ms']:.1f} ms, p99 {deltas['ack_p99_ms']:.1f} ms"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
