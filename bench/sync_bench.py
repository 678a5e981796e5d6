"""Sync throughput: entities per second through SyncData into a master process, beside
bare protobuf parsing and indexing of the same bytes, measured in the same run.

    .venv/bin/python -m bench.sync_bench [--messages N] [--json PATH]

The master runs as its own process on loopback; this process only sends pre-built
messages and waits for each Ack. The baseline parses the very bytes that were sent and
puts every entity in a dict by its key: the least any ingestion has to do. Beside it,
the same stream goes to a bare SyncData server doing only that, in its own process
(`bench/baselines.py sync`): what the transport adds to the least.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from imsync_client import SyncClient
from services import processes
from services.common.sample import SampleAccount
from services.master.auth.worker_tokens import add_worker_token
from services.worker.account_state import COLLECTIONS, AccountView
from services.worker.account_sync import AccountSync

from .common import GRPC_OPTIONS, new_message_delta


def build(messages: int) -> tuple[SampleAccount, list[sync_pb2.SyncDataRequest]]:
    conversations = max(1, messages // 50)
    sample = SampleAccount("bench", seed=3, now=int(time.time()))
    sample.fill(conversations=conversations, messages_per_conversation=50, contents=50, comments_per_content=20)
    sync = AccountSync("bench", window=8, chunk_bytes=1 << 20)
    sync.granted = True
    sync.publish(AccountView.from_batch(sample.account, sample.batch))
    return sample, sync.next_messages()


def count(requests: list[sync_pb2.SyncDataRequest]) -> int:
    total = 0
    for request in requests:
        batch = request.snapshot.entities if request.WhichOneof("kind") == "snapshot" else request.delta.upserts
        total += sum(len(getattr(batch, name)) for name, _, _, _ in COLLECTIONS)
    return total


def parse_and_index(payloads: list[bytes]) -> None:
    index: dict[str, dict[str, object]] = {name: {} for name, _, _, _ in COLLECTIONS}
    for payload in payloads:
        request = sync_pb2.SyncDataRequest.FromString(payload)
        batch = request.snapshot.entities if request.WhichOneof("kind") == "snapshot" else request.delta.upserts
        for name, key, _, _ in COLLECTIONS:
            table = index[name]
            for entity in getattr(batch, name):
                table[getattr(entity, key)] = entity


def best_rate(entities: int, runs: list[float]) -> float:
    return entities / min(runs)


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        runs.append(time.perf_counter() - started)
    return runs


def deltas_of(sample: SampleAccount, base_version: int, rounds: int) -> list[sync_pb2.SyncDataRequest]:
    """Deltas changing 1% of the messages each, as successive crawls would."""
    sync = AccountSync("bench", window=rounds + 1, chunk_bytes=1 << 30)
    sync.granted, sync.needs_snapshot = True, False
    view = AccountView.from_batch(sample.account, sample.batch)
    sync.publish(view)
    sync.confirmed, sync.confirmed_version, sync.confirmed_generation = view, base_version, sync.generation
    sync.last_version = base_version
    out = []
    step = 100  # every hundredth message, from a different one each round: 1%
    for round_ in range(rounds):
        batch = sync_pb2.EntityBatch()
        batch.CopyFrom(sample.batch)
        for message in batch.messages[round_ % step :: step]:
            message.status = e.MessageStatus.ValueType(message.status % 5 + 1)
        sample.batch.CopyFrom(batch)
        sync.publish(AccountView.from_batch(sample.account, batch))
        out += sync.next_messages()
    return out


def single_deltas(sample: SampleAccount, base_version: int, count: int) -> list[sync_pb2.SyncDataRequest]:
    """Deltas of one new customer message each (and its conversation), as live messages are."""
    return [new_message_delta(sample, base_version + step, step)[0] for step in range(count)]


async def drive(
    address: str,
    token: str,
    snapshot: list[sync_pb2.SyncDataRequest],
    deltas: list[sync_pb2.SyncDataRequest],
    repeat: int,
    singles: Sequence[sync_pb2.SyncDataRequest] = (),
) -> tuple[list[float], float, float]:
    """Sends the snapshot `repeat` times (a new version each), then the deltas one at a
    time, each waiting for its Ack, then the one-message deltas likewise, in `repeat`
    runs; returns each snapshot's seconds, all the deltas', and the seconds of a
    one-message delta (the median run's)."""
    async with grpc.aio.insecure_channel(address, options=GRPC_OPTIONS) as channel:
        client = SyncClient(channel, "bench", token=token)
        await client.open({"bench": 0})
        snapshot_runs = []
        for version in range(1, repeat + 1):
            for request in snapshot:
                request.snapshot.version = version
            started = time.perf_counter()
            assert await client.send(snapshot) == version
            snapshot_runs.append(time.perf_counter() - started)
        started = time.perf_counter()
        for request in deltas:
            await client.send([request])
        delta_seconds = time.perf_counter() - started
        single_runs = []
        per_run = len(singles) // repeat
        for run in range(repeat):
            started = time.perf_counter()
            for request in singles[run * per_run : (run + 1) * per_run]:
                await client.send([request])
            single_runs.append((time.perf_counter() - started) / per_run)
        await client.close()
    return snapshot_runs, delta_seconds, statistics.median(single_runs) if single_runs else 0.0


async def run(messages: int, repeat: int) -> dict[str, dict[str, float]]:
    sample, snapshot = build(messages)
    entities = count(snapshot)
    payloads = [request.SerializeToString() for request in snapshot]
    baseline = timed(lambda: parse_and_index(payloads), repeat)
    # Built before the stream opens: a stream silent for a lease loses its account.
    deltas = deltas_of(sample, repeat, rounds=20)
    changed = count(deltas)
    delta_payloads = [request.SerializeToString() for request in deltas]
    singles = single_deltas(sample, deltas[-1].delta.version, 2000)
    single_payloads = [request.SerializeToString() for request in singles]

    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.toml"
        token = add_worker_token(tokens, "bench", ["*"])
        master = await processes.start(["master", "--listen", "127.0.0.1:0", "--worker-tokens", str(tokens)])
        try:
            snapshot_runs, delta_seconds, single_seconds = await drive(
                master.address, token, snapshot, deltas, repeat, singles
            )
        finally:
            await master.stop()
    bare = await processes.start(["sync"], module="bench.baselines")
    try:
        bare_runs, bare_delta_seconds, bare_single_seconds = await drive(
            bare.address, "", snapshot, deltas, repeat, singles
        )
    finally:
        await bare.stop()
    delta_baseline = timed(lambda: parse_and_index(delta_payloads), repeat)
    single_baseline = timed(lambda: parse_and_index(single_payloads), repeat)
    single_entities = count(singles)
    return {
        "snapshot": {
            "entities": entities,
            "rate": best_rate(entities, snapshot_runs),
            "baseline_rate": best_rate(entities, baseline),
            "bare_server_rate": best_rate(entities, bare_runs),
            "median_seconds": statistics.median(snapshot_runs),
        },
        "delta": {
            "entities": changed,
            "rate": changed / delta_seconds,
            "baseline_rate": best_rate(changed, delta_baseline),
            "bare_server_rate": changed / bare_delta_seconds,
            "median_seconds": delta_seconds / len(deltas),
        },
        "single": {
            "entities": single_entities,
            "rate": single_entities / len(singles) / single_seconds,
            "baseline_rate": best_rate(single_entities, single_baseline),
            "bare_server_rate": single_entities / len(singles) / bare_single_seconds,
            "median_seconds": single_seconds,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="messages in the account (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args.messages, args.repeat))
    print(f"{'what':<44} {'entities/s':>11} {'baseline/s':>11} {'ratio':>6} {'bare/s':>11} {'ratio':>6}")
    labels = {
        "snapshot": "snapshot through SyncData (1 MiB chunks)",
        "delta": "deltas of 1% through SyncData (1 at a time)",
        "single": "one-message deltas (1 at a time)",
    }
    for key, row in results.items():
        print(
            f"{labels[key]:<44} {row['rate']:>11,.0f} {row['baseline_rate']:>11,.0f}"
            f" {row['rate'] / row['baseline_rate']:>6.2f} {row['bare_server_rate']:>11,.0f}"
            f" {row['rate'] / row['bare_server_rate']:>6.2f}"
        )
    print("baseline: protobuf parse of the same bytes + a dict index by key, in this process")
    print("bare: the same stream into a SyncData server doing only that (bench/baselines.py sync)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
