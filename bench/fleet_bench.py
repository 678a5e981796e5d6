"""How fast a master moves the accounts of a worker that went away, against the lease, in
the same run.

    .venv/bin/python -m bench.fleet_bench [--accounts 1000] [--lease 5] [--store memory|redis] [--json PATH]

One master in its own process (memory, or Redis with --store redis: a redis-server is
started) with N managed accounts; two workers that speak the protocol themselves (no
browser: a worker here answers every Assign with a snapshot of an empty account, as a
crawl of it would), each with room for all N. Worker A takes half, worker B half. Then A
goes away in one of two ways, and the clock runs until B was given every one of A's
accounts:

- **stream cut** (A's process died: its connection closed): A's leases lapse a lease
  after A was last heard (A may still be running its accounts: a killed worker's browser
  outlives it a moment); the bound is the lease plus the scheduler's round (a second);
- **silent** (A's machine fell off the network: nothing more arrives, the connection is
  not closed): the same, from A's last heartbeat.

After the stream cut, a third worker joins, and the clock runs until it holds its half
(the scheduler moves at most a fiftieth of the accounts a round, each asked back from its
worker and given anew once released).

It prints each time and its ratio to the lease measured in the same run (the time the
master itself waits before it may give an account away), and the same for the time to
spread all N accounts at the start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import sync_pb2, sync_pb2_grpc
from imsync_client import ImClient
from services import processes
from services.common.local_redis import RedisServer
from services.master.auth.worker_tokens import add_worker_token

WORKER_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


class RawWorker:
    """A worker speaking SyncData itself: it takes what it is assigned and acknowledges it
    with an empty snapshot, and releases what it is asked back."""

    def __init__(self, address: str, worker_id: str, token: str, capacity: int) -> None:
        self.worker_id = worker_id
        self.channel = grpc.aio.insecure_channel(address, options=WORKER_OPTIONS)
        self.token = token
        self.capacity = capacity
        self.held: set[str] = set()
        self.assigned_at: dict[str, float] = {}
        self.silent = False
        self._outbound: asyncio.Queue[sync_pb2.SyncDataRequest] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    async def _requests(self) -> AsyncIterator[sync_pb2.SyncDataRequest]:
        while True:
            yield await self._outbound.get()

    async def start(self) -> None:
        stub: Any = sync_pb2_grpc.SyncServiceStub(self.channel)
        call = stub.SyncData(self._requests(), metadata=(("authorization", f"Bearer {self.token}"),))
        self._outbound.put_nowait(
            sync_pb2.SyncDataRequest(hello=sync_pb2.Hello(worker_id=self.worker_id, capacity=self.capacity))
        )
        self._task = asyncio.create_task(self._read(call))
        self._heartbeat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if not self.silent:
                self._outbound.put_nowait(sync_pb2.SyncDataRequest(heartbeat=sync_pb2.Heartbeat()))

    async def _read(self, call: Any) -> None:
        async for response in call:
            kind = response.WhichOneof("kind")
            if kind == "assign":
                account_id = response.assign.account.account_id
                self.held.add(account_id)
                self.assigned_at[account_id] = time.perf_counter()
                if not self.silent:
                    snapshot = sync_pb2.Snapshot(
                        account_id=account_id, version=response.assign.version.version + 1, last=True
                    )
                    snapshot.account.account_id = account_id
                    self._outbound.put_nowait(sync_pb2.SyncDataRequest(snapshot=snapshot))
            elif kind == "release":
                self.held.discard(response.release.account_id)
                if not self.silent:  # (the master says so when a silent worker's lease lapses)
                    self._outbound.put_nowait(
                        sync_pb2.SyncDataRequest(released=sync_pb2.Released(account_id=response.release.account_id))
                    )

    def go_silent(self) -> None:
        """Nothing more leaves this worker; its connection stays open."""
        self.silent = True
        while not self._outbound.empty():
            self._outbound.get_nowait()

    async def cut(self) -> None:
        for task in (self._task, self._heartbeat):
            if task is not None:
                task.cancel()
        await self.channel.close(grace=None)


async def until(check: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def run(accounts: int, lease: float, store: str, work: Path) -> dict[str, Any]:
    tokens = work / "tokens.toml"
    token_a = add_worker_token(tokens, "bench-a", ["*"])
    token_b = add_worker_token(tokens, "bench-b", ["*"])
    token_c = add_worker_token(tokens, "bench-c", ["*"])
    redis: RedisServer | None = None
    store_args: list[str] = []
    if store == "redis":
        redis = RedisServer(work / "redis").start()
        store_args = ["--store", redis.url]
    master = await processes.start(
        [
            "master",
            "--listen",
            "127.0.0.1:0",
            "--worker-tokens",
            str(tokens),
            "--lease-seconds",
            str(lease),
            "--heartbeat-seconds",
            "0.5",
            "--max-accounts",
            str(accounts * 2),
            *store_args,
        ]
    )
    results: dict[str, Any] = {"accounts": accounts, "lease_s": lease, "store": store}
    channel = grpc.aio.insecure_channel(master.address)
    im = ImClient(channel, timeout=60)
    try:
        for n in range(accounts):
            account = fl.ManagedAccount(account_id=f"acct-{n:05d}", adapter="sample", seed=n + 1)
            await im.create_managed_account(fl.CreateManagedAccountRequest(account=account))
        for way in ("stream cut", "silent"):
            a = RawWorker(master.address, "bench-a", token_a, accounts)
            b = RawWorker(master.address, "bench-b", token_b, accounts)
            started = time.perf_counter()
            await a.start()
            await b.start()
            await until(lambda a=a, b=b: len(a.held) + len(b.held) == accounts, 120)
            spread = time.perf_counter() - started
            # Let the rebalancing settle to half and half.
            await until(lambda a=a, b=b: abs(len(a.held) - len(b.held)) <= 1, 300)
            orphans = set(a.held)
            gone = time.perf_counter()
            if way == "stream cut":
                await a.cut()
            else:
                a.go_silent()
            await until(lambda b=b, orphans=orphans: orphans <= b.held, lease * 10 + 120)
            moved = max(b.assigned_at[x] for x in orphans) - gone
            results[way] = {
                "moved": len(orphans),
                "seconds": round(moved, 3),
                "ratio_to_lease": round(moved / lease, 3),
                "first_spread_seconds": round(spread, 3),
            }
            print(
                f"{way}: {len(orphans)} accounts moved in {moved:.2f} s = {moved / lease:.2f} x the lease "
                f"({lease:g} s); all {accounts} first spread in {spread:.2f} s",
                flush=True,
            )
            if way == "stream cut":
                # A worker joins: it takes its share, a fiftieth of the accounts a round.
                c = RawWorker(master.address, "bench-c", token_c, accounts)
                joined = time.perf_counter()
                await c.start()
                await until(lambda b=b, c=c: len(c.held) >= accounts // 2 - 1, 600)
                balanced = time.perf_counter() - joined
                results["join"] = {"moved": len(c.held), "seconds": round(balanced, 3)}
                print(f"join: {len(c.held)} accounts moved to a new worker in {balanced:.2f} s", flush=True)
                await c.cut()
            await a.cut()
            await b.cut()
            await asyncio.sleep(lease + 1.5)  # every lease of this round lapsed or was let go
    finally:
        await channel.close(grace=None)
        await master.stop()
        if redis is not None:
            redis.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    try:
        results = asyncio.run(run(args.accounts, args.lease, args.store, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    json.dump(results, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
