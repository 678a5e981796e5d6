"""What the benchmarks share: loading the data set into a master, a worker's stream
sending the deltas of a live account (one new customer message each), and wrk."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import grpc

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from imsync_client import SyncClient
from services.common.sample import SampleAccount

NOW = 1_790_000_000
GRPC_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


async def load(address: str, token: str, data: list[SampleAccount]) -> None:
    """Every account's snapshot, through one stream of the worker "loader"."""
    async with grpc.aio.insecure_channel(address, options=GRPC_OPTIONS) as channel:
        loader = SyncClient(channel, "loader", token=token, chunk_bytes=1 << 20)
        await loader.open({s.account_id: 0 for s in data})
        for sample in data:
            await loader.push_snapshot(sample.account_id, 1, sample.account, sample.batch)
        await loader.close()


async def open_when_free(client: SyncClient, account_id: str) -> int:
    """Opens the stream once the account is granted (the loader's stream may hold it a
    moment after it closed); returns the master's version."""
    while (version := (await client.open({account_id: 0})).get(account_id)) is None:
        await client.close()
        await asyncio.sleep(0.1)
    return version


def new_message_delta(sample: SampleAccount, version: int, step: int) -> tuple[sync_pb2.SyncDataRequest, e.Message]:
    """A crawl that found one new customer message: the delta from `version`, and the message."""
    conversation = sample.batch.conversations[step % len(sample.batch.conversations)]
    message = sample.add_message(conversation, NOW + 10_000 + step, inbound=True)
    delta = sync_pb2.Delta(account_id=sample.account_id, base_version=version, version=version + 1)
    delta.upserts.messages.append(message)
    delta.upserts.conversations.append(conversation)
    return sync_pb2.SyncDataRequest(delta=delta), message


def wrk(url: str, seconds: float, connections: int, script: Path | None = None) -> dict[str, float]:
    """Requests per second and latency percentiles (ms) from wrk (2 threads); `script`, a
    Lua file of wrk's, chooses each request (e.g. paths in turn)."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            *(["-s", str(script)] if script else []),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{url}: answers that are not 200:\n{out}")
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for label in ("50", "99"):
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert found, out
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[found.group(2)]
        result[f"p{label}_ms"] = float(found.group(1)) * scale
    return result


def master_args(tokens: Path) -> list[str]:
    """`imsync master` as the benchmarks run it: quiet, on a free port, keeping everything,
    with no rate limit, its workers' tokens in `tokens`."""
    return [
        "--log-level",
        "WARNING",
        "master",
        "--listen",
        "127.0.0.1:0",
        "--retention",
        "none",
        "--rate-limit",
        "0",
        "--worker-tokens",
        str(tokens),
    ]
