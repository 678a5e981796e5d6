"""Reads and syncs per second for one master on memory, one master on Redis and two masters
on Redis, measured in the same run; the memory master is the baseline of the ratios.

    .venv/bin/python -m bench.masters_bench [--seconds S] [--size small|bench] [--json PATH]

Every master is its own process on loopback, and so is each load generator:
- reads: ListConversations pages of 20, from 32 concurrent callers in two processes, spread
  over the masters of the configuration;
- syncs: one worker stream per account (10 accounts), each sending a delta of one new
  customer message and waiting for its Ack, the accounts spread over the masters.
Redis runs with the persistence imsync asks for (appendonly yes, appendfsync always), so
that every Ack counted is on Redis's disk; for the same promise from one master alone, the
memory master also runs with its journal (--data-dir, synchronous FULL). Redis has a
replica; one master on Redis also runs with --redis-wait-replicas 1 (every Ack waits for
the replica to have the change). The same three run again on a local Redis Cluster (six
redis-servers on this machine: three primaries, each with a replica), beside single-node
Redis: what the cluster's client and the outbox's moves across slots cost on one machine,
not what more machines would add.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.common import GRPC_OPTIONS, NOW, load, new_message_delta, open_when_free
from imsync.v1 import conversations_pb2 as conv
from imsync_client import ImClient, SyncClient
from services import processes
from services.common.local_redis import RedisCluster, RedisServer
from services.common.sample import SampleAccount, sample_accounts
from services.master.auth.worker_tokens import add_worker_token

ACCOUNTS = 10
SEED = 7


def samples(size: str) -> list[SampleAccount]:
    return sample_accounts(ACCOUNTS, now=NOW, seed=SEED, size=size)


# ------------------------------------------------------------------ load generators


async def load_reads(targets: list[str], accounts: list[str], seconds: float, concurrency: int) -> dict[str, Any]:
    channels = [grpc.aio.insecure_channel(target) for target in targets]
    clients = [ImClient(channel) for channel in channels]
    latencies: list[float] = []
    started = time.perf_counter()
    warm_until = started + 0.5
    deadline = warm_until + seconds

    async def caller(index: int) -> None:
        im = clients[index % len(clients)]
        rng = random.Random(index)
        while (now := time.perf_counter()) < deadline:
            await im.list_conversations(conv.ListConversationsRequest(account_id=rng.choice(accounts), count=20))
            if now >= warm_until:
                latencies.append(time.perf_counter() - now)

    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    for channel in channels:
        await channel.close()
    return {"count": len(latencies), "seconds": seconds, "latencies": latencies}


async def load_syncs(targets: list[str], tokens: dict[str, str], size: str, seconds: float) -> dict[str, Any]:
    by_id = {sample.account_id: sample for sample in samples(size)}
    channels = [grpc.aio.insecure_channel(target, options=GRPC_OPTIONS) for target in targets]
    latencies: list[float] = []
    warm_until = time.perf_counter() + 0.5
    deadline = warm_until + seconds

    async def worker(index: int, account_id: str) -> None:
        sample = by_id[account_id]
        client = SyncClient(channels[index % len(channels)], f"bench-{index}", token=tokens[account_id])
        version = await open_when_free(client, account_id)
        step = 0
        while (now := time.perf_counter()) < deadline:
            step += 1
            request, _ = new_message_delta(sample, version, step)
            version = await client.send([request])
            if now >= warm_until:
                latencies.append(time.perf_counter() - now)
        await client.close()

    await asyncio.gather(*(worker(i, account_id) for i, account_id in enumerate(sorted(by_id))))
    for channel in channels:
        await channel.close()
    return {"count": len(latencies), "seconds": seconds, "latencies": latencies}


async def _generator(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Runs one load generator in its own process; returns what it measured."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.masters_bench",
        "--load",
        kind,
        "--spec",
        json.dumps(spec),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the {kind} load generator failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


# ---------------------------------------------------------------------- the run


async def _configuration(
    name: str,
    masters: int,
    redis_url: str | None,
    tmp: Path,
    size: str,
    seconds: float,
    journal: bool = False,
    wait_replicas: int = 0,
) -> dict[str, Any]:
    tokens_file = tmp / f"{name}-tokens.toml"
    data = samples(size)
    tokens = {
        s.account_id: add_worker_token(tokens_file, f"bench-{i}", [s.account_id])
        for i, s in enumerate(sorted(data, key=lambda s: s.account_id))
    }
    loader_token = add_worker_token(tokens_file, "loader", ["*"])
    children = []
    try:
        for index in range(masters):
            args = [
                "--log-level",
                "WARNING",
                "master",
                "--listen",
                "127.0.0.1:0",
                "--worker-tokens",
                str(tokens_file),
                "--retention",
                "none",
                "--rate-limit",
                "0",
            ]
            if redis_url is not None:
                args += ["--store", redis_url, "--redis-prefix", name, "--master-id", f"{name}-{index}"]
            if journal:
                args += ["--data-dir", str(tmp / name)]
            if wait_replicas:
                args += ["--redis-wait-replicas", str(wait_replicas)]
            children.append(await processes.start(args))
        targets = [child.address for child in children]
        await load(targets[0], loader_token, data)
        accounts = [s.account_id for s in data]
        spec = {"targets": targets, "accounts": accounts, "seconds": seconds, "concurrency": 16}
        reads = await asyncio.gather(*(_generator("reads", spec) for _ in range(2)))
        syncs = await _generator("syncs", {"targets": targets, "tokens": tokens, "size": size, "seconds": seconds})
    finally:
        for child in children:
            await child.stop()
    read_latencies = sorted(latency for result in reads for latency in result["latencies"])
    sync_latencies = sorted(syncs["latencies"])
    return {
        "reads_per_second": len(read_latencies) / seconds,
        "read_p99_ms": 1000 * read_latencies[int(len(read_latencies) * 0.99)],
        "syncs_per_second": len(sync_latencies) / seconds,
        "sync_p99_ms": 1000 * sync_latencies[int(len(sync_latencies) * 0.99)],
    }


async def _on_redis(name: str, url: str, tmp: Path, size: str, seconds: float) -> dict[str, dict[str, Any]]:
    """One master, the same waiting for a replica, and two masters, on one Redis or cluster."""
    return {
        f"{name}-1": await _configuration(f"{name}-1", 1, url, tmp, size, seconds),
        f"{name}-wait": await _configuration(f"{name}-wait", 1, url, tmp, size, seconds, wait_replicas=1),
        f"{name}-2": await _configuration(f"{name}-2", 2, url, tmp, size, seconds),
    }


async def run(seconds: float, size: str) -> dict[str, dict[str, Any]]:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise SystemExit("redis-server is not installed (scripts/bootstrap installs it)")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        results["memory-1"] = await _configuration("memory-1", 1, None, tmp, size, seconds)
        results["journal-1"] = await _configuration("journal-1", 1, None, tmp, size, seconds, journal=True)
        redis = RedisServer(tmp / "redis").start()
        replica = RedisServer(tmp / "replica", replica_of=redis.port).start()
        try:
            results.update(await _on_redis("redis", redis.url, tmp, size, seconds))
        finally:
            replica.stop()
            redis.stop()
        cluster = RedisCluster(tmp / "cluster").start()
        try:
            results.update(await _on_redis("cluster", cluster.url, tmp, size, seconds))
        finally:
            cluster.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per load (default %(default)s)")
    parser.add_argument(
        "--size", choices=("small", "bench"), default="bench", help="accounts' size (default %(default)s)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--load", choices=("reads", "syncs"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        spec = json.loads(args.spec)
        if args.load == "reads":
            result = asyncio.run(load_reads(spec["targets"], spec["accounts"], spec["seconds"], spec["concurrency"]))
        else:
            result = asyncio.run(load_syncs(spec["targets"], spec["tokens"], spec["size"], spec["seconds"]))
        print(json.dumps(result))
        return
    results = asyncio.run(run(args.seconds, args.size))
    base = results["memory-1"]
    labels = {
        "memory-1": "one master, memory",
        "journal-1": "  ... with its journal",
        "redis-1": "one master, Redis",
        "redis-wait": "  ... waiting 1 replica",
        "redis-2": "two masters, Redis",
        "cluster-1": "one master, Cluster",
        "cluster-wait": "  ... waiting 1 replica",
        "cluster-2": "two masters, Cluster",
    }
    print(
        f"{'configuration':<22} {'reads/s':>9} {'ratio':>6} {'p99 ms':>7}   {'syncs/s':>8} {'ratio':>6} {'p99 ms':>7}"
    )
    for key, row in results.items():
        print(
            f"{labels[key]:<22} {row['reads_per_second']:>9,.0f} {row['reads_per_second'] / base['reads_per_second']:>6.2f} "
            f"{row['read_p99_ms']:>7.1f}   {row['syncs_per_second']:>8,.0f} {row['syncs_per_second'] / base['syncs_per_second']:>6.2f} "
            f"{row['sync_p99_ms']:>7.1f}"
        )
    print("ratios against one master on memory, measured in this run; reads: ListConversations pages of 20 from")
    print("32 callers; syncs: deltas of one message on 10 worker streams, each waiting for its Ack")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
