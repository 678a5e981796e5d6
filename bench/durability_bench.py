"""What durability costs: sync throughput and acknowledgement latency with the journal
off and on, and the time a master takes to come back with a million stored entities.

    .venv/bin/python -m bench.durability_bench [--entities N] [--json PATH]

Every number is printed beside its baseline, measured in the same run:

- sync: a master process without a data directory is the baseline; the same master
  journaling (synchronous=FULL, and NORMAL) is compared with it. Deltas of 20 changed
  messages over 4 accounts are pipelined with 1 and with 16 unacknowledged at a time
  (group commit needs something to group). Latency is from the write of a delta to its Ack.
- restart: a master process over a data directory holding N entities (10 accounts),
  from checkpoints (after a clean stop) and from journal rows only (after a crash), beside
  the time to start a master with no data plus the time this process takes to read the
  same checkpoint bytes from SQLite and parse them (the least any restart has to do).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from imsync.v1 import sync_pb2
from imsync_client import SyncClient
from services import processes
from services.common.sample import SampleAccount
from services.master.auth.worker_tokens import add_worker_token
from services.master.memory.durability import checkpoint_all, open_data_dir
from services.master.memory.records import FILE_NAME
from services.master.memory.store import MemoryStore
from services.master.model.commands import CommandBook
from services.master.model.store import SnapshotData

ACCOUNTS = 4
ROUNDS = 150  # deltas per account
CHANGED = 20  # messages per delta


def _deltas(sample: SampleAccount, account_id: str) -> list[sync_pb2.SyncDataRequest]:
    """Deltas 2..ROUNDS+1 of an account, each changing CHANGED messages."""
    out = []
    messages = sample.batch.messages
    for round_ in range(ROUNDS):
        upserts = sync_pb2.EntityBatch()
        for index in range(CHANGED):
            message = upserts.messages.add()
            message.CopyFrom(messages[(round_ * CHANGED + index) % len(messages)])
            message.status = (round_ % 4) + 1
        delta = sync_pb2.Delta(account_id=account_id, base_version=round_ + 1, version=round_ + 2, upserts=upserts)
        out.append(sync_pb2.SyncDataRequest(delta=delta))
    return out


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _sync_run(master_args: list[str], tokens: Path, token: str, window: int) -> dict[str, float]:
    master = await processes.start(["master", "--listen", "127.0.0.1:0", "--worker-tokens", str(tokens), *master_args])
    try:
        samples = {f"bench-{i}": SampleAccount(f"bench-{i}", seed=i, now=int(time.time())) for i in range(ACCOUNTS)}
        for sample in samples.values():
            sample.fill(conversations=40, messages_per_conversation=50, contents=5, comments_per_content=10)
        plans = {account_id: _deltas(sample, account_id) for account_id, sample in samples.items()}
        options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
        async with grpc.aio.insecure_channel(master.address, options=options) as channel:
            client = SyncClient(channel, "bench", token=token)
            await client.open({account_id: 0 for account_id in samples})
            for account_id, sample in samples.items():
                await client.push_snapshot(account_id, 1, sample.account, sample.batch)
            # Round robin over the accounts, at most `window` unacknowledged at a time.
            order = [(account_id, plan[i]) for i in range(ROUNDS) for account_id, plan in plans.items()]
            sent_at: dict[tuple[str, int], float] = {}
            latencies: list[float] = []
            room = asyncio.Semaphore(window)

            async def reader() -> None:
                for _ in order:
                    reply = await client.receive()
                    if reply.WhichOneof("kind") != "ack":
                        raise RuntimeError(f"expected an Ack, got {reply}")
                    latencies.append(time.perf_counter() - sent_at.pop((reply.ack.account_id, reply.ack.version)))
                    room.release()

            reading = asyncio.create_task(reader())
            started = time.perf_counter()
            for account_id, request in order:
                await room.acquire()
                sent_at[(account_id, request.delta.version)] = time.perf_counter()
                await client.write(request)
            await reading
            seconds = time.perf_counter() - started
            await client.close()
    finally:
        await master.stop()
    return {
        "deltas_per_second": len(order) / seconds,
        "entities_per_second": len(order) * CHANGED / seconds,
        "ack_p50_ms": statistics.median(latencies) * 1000,
        "ack_p99_ms": _percentile(latencies, 0.99) * 1000,
    }


async def _restart_seconds(args: list[str]) -> float:
    started = time.perf_counter()
    master = await processes.start(["master", "--listen", "127.0.0.1:0", "--retention", "none", *args], timeout=600)
    seconds = time.perf_counter() - started
    await master.stop(timeout=60)
    return seconds


async def _fill_data_dir(data_dir: Path, entities: int, *, checkpoint: bool) -> int:
    """A data directory holding `entities` entities over 10 accounts, as a clean stop (checkpoints)
    or a crash (journal rows only) leaves it."""
    per_account = entities // 10
    sample = SampleAccount("template", seed=1, now=int(time.time()))
    conversations = per_account // 51
    sample.fill(conversations=conversations, messages_per_conversation=50, contents=0, comments_per_content=0)
    store = MemoryStore()
    recovery = open_data_dir(data_dir, store, CommandBook())
    recovery.journal.start()
    for index in range(10):
        account_id = f"big-{index}"
        batch = sync_pb2.EntityBatch()
        batch.CopyFrom(sample.batch)
        await store.apply_snapshot(SnapshotData(account_id, 1, frozenset(), sample.account, batch))
    persisted = store.persisted()
    if persisted is not None:
        await persisted
    if checkpoint:
        await checkpoint_all(store, recovery.journal)
    stored = store.count_entities()
    await recovery.journal.close()
    return stored


def _bare_read(data_dir: Path) -> float:
    """Reads every checkpoint part from SQLite and parses it: the least a restart does."""
    started = time.perf_counter()
    with sqlite3.connect(data_dir / FILE_NAME) as db:
        for part, body in db.execute("SELECT part, body FROM checkpoints"):
            if part:
                sync_pb2.EntityBatch.FromString(body)
    return time.perf_counter() - started


async def run(entities: int) -> dict[str, object]:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokens = folder / "tokens.toml"
        token = add_worker_token(tokens, "bench", ["*"])
        sync: dict[str, dict[str, float]] = {}
        for window in (1, 16):
            for label, extra in (
                ("off", []),
                ("FULL", ["--data-dir", str(folder / f"full-{window}"), "--journal-sync", "FULL"]),
                ("NORMAL", ["--data-dir", str(folder / f"normal-{window}"), "--journal-sync", "NORMAL"]),
            ):
                sync[f"{label} window {window}"] = await _sync_run(extra, tokens, token, window)
        results["sync"] = sync

        clean, crashed = folder / "clean", folder / "crashed"
        stored = await _fill_data_dir(clean, entities, checkpoint=True)
        await _fill_data_dir(crashed, entities, checkpoint=False)
        results["restart"] = {
            "entities": stored,
            "empty_seconds": await _restart_seconds([]),
            "bare_read_seconds": _bare_read(clean),
            "from_checkpoints_seconds": await _restart_seconds(["--data-dir", str(clean)]),
            "from_journal_rows_seconds": await _restart_seconds(["--data-dir", str(crashed)]),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--entities", type=int, default=1_000_000, help="entities stored for the restart (default %(default)s)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args.entities))
    sync: dict[str, dict[str, float]] = results["sync"]  # type: ignore[assignment]
    print(
        f"{'sync (4 accounts, deltas of 20 messages)':<42} {'deltas/s':>9} {'ratio':>6} {'ack p50':>9} {'ack p99':>9}"
    )
    for name, row in sync.items():
        window = name.rpartition(" ")[2]
        base = sync[f"off window {window}"]
        print(
            f"{'journal ' + name:<42} {row['deltas_per_second']:>9,.0f} {row['deltas_per_second'] / base['deltas_per_second']:>6.2f}"
            f" {row['ack_p50_ms']:>7.2f}ms {row['ack_p99_ms']:>7.2f}ms"
        )
    restart: dict[str, float] = results["restart"]  # type: ignore[assignment]
    floor = restart["empty_seconds"] + restart["bare_read_seconds"]
    print(f"\nrestart with {restart['entities']:,.0f} stored entities (10 accounts)")
    print(
        f"  baseline: empty master {restart['empty_seconds']:.2f} s + bare read and parse {restart['bare_read_seconds']:.2f} s = {floor:.2f} s"
    )
    for key, label in (
        ("from_checkpoints_seconds", "after a clean stop (checkpoints)"),
        ("from_journal_rows_seconds", "after a crash (journal rows)"),
    ):
        print(f"  {label:<36} {restart[key]:>7.2f} s  ({restart[key] / floor:.1f}x the baseline)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
