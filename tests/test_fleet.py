"""The fleet: accounts as data (both stores, the journal), sealed sessions, and the
master's scheduling of them over workers that take scheduled accounts (real workers of
the sample adapter, in this process, over real gRPC)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import signal
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import sync_pb2, sync_pb2_grpc
from imsync_client import ImClient
from services import processes
from services.common.sample import SampleAccount
from services.gateway.app import create_app
from services.master.auth.session_keys import SessionKeys, create_session_key
from services.master.model import fleet
from services.master.model.errors import AlreadyExists, InvalidArgument, NotFound
from services.master.model.retention import KEEP_EVERYTHING
from services.master.model.store import SnapshotData
from services.master.redis.store import RedisStore
from services.master.server import Master, MasterConfig
from services.master.sync.hub import SyncConfig
from services.worker.engine_config import EngineConfig
from services.worker.sync_engine import SyncEngine

from . import waiting
from .conftest import NOW, StoreFactory, token_for, write_tokens
from .helpers.cli import imsync
from .sync_harness import running

WORKERS = ("worker-a", "worker-b", "next-worker")


def fleet_config(tmp_path: Path, *, lease: float = 2.0, **settings: Any) -> MasterConfig:
    """A master for these tests: their workers' tokens, short heartbeats and leases."""
    return MasterConfig(
        listen="127.0.0.1:0",
        worker_tokens=write_tokens(tmp_path / "tokens.toml", WORKERS),
        sync=SyncConfig(heartbeat_interval=lease / 4, lease_duration=lease),
        retention=KEEP_EVERYTHING,
        **settings,
    )


def sample(account_id: str, **fields: Any) -> fl.ManagedAccount:
    return fl.ManagedAccount(account_id=account_id, adapter="sample", seed=7, **fields)


# ---------------------------------------------------------------- accounts as data


async def test_managed_accounts_are_kept_by_either_store(new_store: StoreFactory) -> None:
    store = new_store()
    await store.save_managed_account(sample("a-1", display_name="店铺一"), create=True)
    assert [a.account_id for a in await store.list_managed_accounts()] == ["a-1"]
    await store.save_managed_account(sample("a-2", worker_labels={"region": "sh"}), create=True)
    with pytest.raises(AlreadyExists):
        await store.save_managed_account(sample("a-1"), create=True)
    with pytest.raises(NotFound):
        await store.save_managed_account(sample("nobody"), create=False)
    await store.save_managed_account(sample("a-1", paused=True), create=False)
    assert [(a.account_id, a.paused) for a in await store.list_managed_accounts()] == [("a-1", True), ("a-2", False)]

    await store.save_session_state("a-2", b"sealed")
    assert await store.session_state("a-2") == b"sealed"
    assert await store.sessions_kept(["a-1", "a-2"]) == {"a-2"}
    with pytest.raises(NotFound):
        await store.save_session_state("nobody", b"sealed")
    await store.delete_managed_account("a-2")
    assert [a.account_id for a in await store.list_managed_accounts()] == ["a-1"], "a list read before is not kept"
    assert await store.session_state("a-2") is None, "a removed account's session goes with it"
    with pytest.raises(NotFound):
        await store.delete_managed_account("a-2")


async def test_an_account_paused_in_the_fleet_shows_as_paused_not_as_a_lost_worker(new_store: StoreFactory) -> None:
    """Account.paused mirrors the fleet: set and cleared by pausing, resuming and removing,
    announced as a status change, kept through the presence changes a release makes, and
    there for an account the master comes to hold only after it was paused."""
    store = new_store()
    events: list[ev.Event] = []
    store.on_event = events.append

    async def announced() -> list[tuple[bool, bool]]:
        if isinstance(store, RedisStore):  # its events go to the shared stream
            stream: Any = await store.redis.xrange(store.events_key)
            events[:] = [ev.Event.FromString(fields[b"e"]) for _, fields in stream]
        status = [e for e in events if e.type == ev.EVENT_TYPE_ACCOUNT_STATUS_CHANGED and e.account_id == "a-1"]
        return [(e.account.online, e.account.paused) for e in status]

    await store.save_managed_account(sample("a-1"), create=True)
    await store.set_presence("a-1", "worker-a", True)
    assert not (await store.get_account("a-1")).paused
    await store.save_managed_account(sample("a-1", paused=True), create=False)
    await store.set_presence("a-1", "worker-a", False)  # the worker let it go
    shown = await store.get_account("a-1")
    assert (shown.paused, shown.online) == (True, False)
    assert (await store.list_accounts(status=0, platform=0, cursor="", count=10)).items[0].paused
    await store.save_managed_account(sample("a-1", paused=True), create=False)  # asked again: no event
    assert await announced() == [(True, False), (True, True), (False, True)]

    await store.save_managed_account(sample("a-1"), create=False)
    assert not (await store.get_account("a-1")).paused
    assert (await announced())[-1] == (False, False)
    await store.save_managed_account(sample("a-1", paused=True), create=False)
    await store.delete_managed_account("a-1")
    assert not (await store.get_account("a-1")).paused, "removed: no longer the fleet's to pause"

    # Paused before the master held anything of it; then a worker speaks of it.
    await store.save_managed_account(sample("a-2", paused=True), create=True)
    with pytest.raises(NotFound):
        await store.get_account("a-2")
    await store.set_presence("a-2", "worker-a", False)
    assert (await store.get_account("a-2")).paused


async def test_an_account_shows_what_the_team_calls_it_and_its_platform_before_it_is_crawled(
    new_store: StoreFactory,
) -> None:
    """Account.display_name mirrors the fleet entry's; until the first crawl says the
    platform, the entry's adapter does (an account waiting for its QR code to be scanned
    showed as its id, platform "unspecified"). Renamed, announced; removed, no name."""
    store = new_store()
    events: list[ev.Event] = []
    store.on_event = events.append

    async def names_announced() -> list[str]:
        if isinstance(store, RedisStore):  # its events go to the shared stream
            stream: Any = await store.redis.xrange(store.events_key)
            events[:] = [ev.Event.FromString(fields[b"e"]) for _, fields in stream]
        status = [x for x in events if x.type == ev.EVENT_TYPE_ACCOUNT_STATUS_CHANGED and x.account_id == "a-1"]
        return [x.account.display_name for x in status]

    await store.save_managed_account(sample("a-1", display_name="旗舰店"), create=True)
    await store.set_presence("a-1", "worker-a", True)  # assigned; not logged in, not crawled
    shown = await store.get_account("a-1")
    assert (shown.display_name, shown.platform, shown.user_name) == ("旗舰店", e.PLATFORM_DOUYIN, "")
    listed = (await store.list_accounts(status=0, platform=e.PLATFORM_DOUYIN, cursor="", count=10)).items
    assert [a.display_name for a in listed] == ["旗舰店"]

    crawled = SampleAccount("a-1", seed=2, now=NOW)
    await store.apply_snapshot(SnapshotData("a-1", 1, frozenset(), crawled.account, crawled.batch))
    shown = await store.get_account("a-1")
    assert (shown.display_name, shown.user_name) == ("旗舰店", crawled.account.user_name), "both names, each its own"

    await store.save_managed_account(sample("a-1", display_name="旗舰店·华东"), create=False)
    assert (await store.get_account("a-1")).display_name == "旗舰店·华东"
    before = await names_announced()
    await store.save_managed_account(sample("a-1", display_name="旗舰店·华东"), create=False)  # asked again
    assert await names_announced() == before, "no change, no event"
    if isinstance(store, RedisStore):  # an account kept before names were mirrored: a worker taking it shows it
        await store.redis.hdel(store.keys("a-1").meta, "display_name")
        assert (await store.get_account("a-1")).display_name == ""
        await store.set_presence("a-1", "worker-b", True)
        assert (await store.get_account("a-1")).display_name == "旗舰店·华东"
    await store.delete_managed_account("a-1")
    shown = await store.get_account("a-1")
    assert (shown.display_name, shown.platform) == ("", e.PLATFORM_DOUYIN), "the platform the crawl said stays"
    assert (await names_announced())[-2:] == ["旗舰店·华东", ""]


async def test_managed_accounts_and_sessions_survive_a_restart(tmp_path: Path) -> None:
    def config() -> MasterConfig:
        return MasterConfig(listen="127.0.0.1:0", data_dir=tmp_path / "data", retention=KEEP_EVERYTHING)

    master = Master(config())
    await master.start()
    await master.store.save_managed_account(sample("a-1", paused=True), create=True)
    await master.store.save_managed_account(sample("a-2"), create=True)
    await master.store.save_session_state("a-1", b"sealed-1")
    crawled = SampleAccount("a-1", seed=2, now=NOW)
    await master.store.apply_snapshot(SnapshotData("a-1", 1, frozenset(), crawled.account, crawled.batch))
    await master.store.delete_managed_account("a-2")
    persisted = master.store.persisted()
    if persisted is not None:
        await persisted
    await master.stop()

    again = Master(config())
    await again.start()
    try:
        assert [a.account_id for a in await again.store.list_managed_accounts()] == ["a-1"]
        assert await again.store.session_state("a-1") == b"sealed-1"
        assert (await again.store.get_account("a-1")).paused, "the account restored shows the fleet's pause"
    finally:
        await again.stop()


def test_what_a_managed_account_may_hold() -> None:
    assert fleet.check(
        fl.ManagedAccount(account_id="d-1", adapter="douyin", base_url="http://127.0.0.1:1")
    ).login_method == (fl.LOGIN_METHOD_QR_CODE)
    for account, field in [
        (fl.ManagedAccount(account_id="has space", adapter="sample"), "account.account_id"),
        (fl.ManagedAccount(account_id="x", adapter="weibo"), "account.adapter"),
        (fl.ManagedAccount(account_id="x", adapter="douyin"), "account.base_url"),
        (fl.ManagedAccount(account_id="x", adapter="sample", worker_labels={"a b": "c"}), "account.worker_labels"),
        (
            fl.ManagedAccount(
                account_id="x", adapter="douyin", base_url="http://h", login_method=fl.LOGIN_METHOD_PASSWORD
            ),
            "account.login_uid",
        ),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            fleet.check(account)
        assert refused.value.field == field
    old = fleet.check(fl.ManagedAccount(account_id="x", adapter="sample", display_name="old", login_password="p"))
    new = fleet.updated(old, fl.ManagedAccount(paused=True, display_name="ignored"), FieldMask(paths=["paused"]))
    assert (new.paused, new.display_name, new.login_password) == (True, "old", "p")
    # Without a mask, what the change sets (AIP-134): nothing else is wiped.
    renamed = fleet.updated(new, fl.ManagedAccount(display_name="new"), FieldMask())
    assert (renamed.display_name, renamed.paused, renamed.login_password) == ("new", True, "p")
    with pytest.raises(InvalidArgument) as refused:
        fleet.updated(old, fl.ManagedAccount(adapter="douyin"), FieldMask(paths=["adapter"]))
    assert refused.value.field == "update_mask"


def test_sessions_are_sealed_for_their_account_and_open_with_older_keys(tmp_path: Path) -> None:
    ring = tmp_path / "session-keys"
    create_session_key(ring, "old")
    old = SessionKeys.load(ring)
    sealed = old.seal("a-1", b'{"cookies": []}')
    assert b"cookies" not in sealed
    assert old.open("a-1", sealed) == b'{"cookies": []}'
    assert old.open("a-2", sealed) is None, "a session copied to another account does not open"
    assert old.open("a-1", sealed[:-1] + bytes([sealed[-1] ^ 1])) is None
    create_session_key(ring, "new")
    rotated = SessionKeys.load(ring)
    assert rotated.keys[0][0] == "new" and not rotated.is_current(sealed)
    assert rotated.open("a-1", sealed) == b'{"cookies": []}', "the old key still opens what it sealed"
    assert rotated.is_current(rotated.seal("a-1", b"x"))
    assert (ring.stat().st_mode & 0o777) == 0o600
    ring.write_text("new " + base64.b64encode(b"short").decode() + "\n")
    with pytest.raises(ValueError, match="32 bytes"):
        SessionKeys.load(ring)


# ---------------------------------------------------------------------- scheduling


class Fleet:
    def __init__(self, master: Master, address: str, channel: grpc.aio.Channel, tmp_path: Path) -> None:
        self.master = master
        self.address = address
        self.im = ImClient(channel)
        self.tmp_path = tmp_path
        self.workers: dict[str, processes.Child] = {}

    async def start(self, worker_id: str, capacity: int, *, merge_stderr: bool = False, **labels: str) -> None:
        """A worker process taking scheduled accounts of the sample adapter."""
        config = self.tmp_path / f"{worker_id}.toml"
        labels_line = ", ".join(f'{k} = "{v}"' for k, v in labels.items())
        config.write_text(
            f'master = "{self.address}"\nworker_id = "{worker_id}"\ntoken = "{token_for(worker_id)}"\n'
            f"capacity = {capacity}\ncrawl_interval = 0.5\nlabels = {{ {labels_line} }}\n"
            f'state_dir = "{worker_id}-state"\ncommand_log = "{worker_id}-commands.sqlite3"\n'
        )
        self.workers[worker_id] = await processes.start(["worker", "--config", str(config)], merge_stderr=merge_stderr)

    async def stop(self, worker_id: str) -> None:
        """SIGTERM: the worker hands its accounts back before it goes."""
        await self.workers.pop(worker_id).stop()

    async def crash(self, worker_id: str) -> None:
        """SIGKILL: nothing released, the stream cut."""
        child = self.workers.pop(worker_id)
        child.process.kill()
        await child.process.wait()

    async def placement(self) -> dict[str, str]:
        listed = await self.im.list_managed_accounts(fl.ListManagedAccountsRequest())
        return {a.account_id: a.worker_id for a in listed.accounts}

    async def loads(self) -> dict[str, int]:
        workers = (await self.im.list_workers(fl.ListWorkersRequest())).workers
        return {w.worker_id: len(w.account_ids) for w in workers}

    async def add(self, account: fl.ManagedAccount) -> None:
        await self.im.create_managed_account(fl.CreateManagedAccountRequest(account=account))


@pytest_asyncio.fixture
async def fleet_rig(tmp_path: Path) -> AsyncIterator[Fleet]:
    master = Master(fleet_config(tmp_path))
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    rig = Fleet(master, f"127.0.0.1:{port}", channel, tmp_path)
    try:
        yield rig
    finally:
        for worker_id in list(rig.workers):
            await rig.stop(worker_id)
        await channel.close(grace=None)
        await master.stop()


async def test_accounts_spread_by_capacity_move_when_a_worker_goes_and_balance_when_one_joins(
    fleet_rig: Fleet,
) -> None:
    rig = fleet_rig

    def assignments() -> list[ev.Event]:
        return [e for e in rig.master.bus.kept_events() if e.type == ev.EVENT_TYPE_ACCOUNT_ASSIGNED]

    for n in range(9):
        await rig.add(sample(f"s-{n}"))
    await rig.start("worker-a", capacity=6)
    await rig.start("worker-b", capacity=3)

    async def spread() -> bool:
        return await rig.loads() == {"worker-a": 6, "worker-b": 3}

    await waiting.eventually(spread, timeout=15, every=0.1)
    # Every account synced by its worker: the master has its data.
    await waiting.eventually(lambda: _all_synced(rig), timeout=10)
    assert {e.assignment.reason for e in assignments()} == {"new"}

    # worker-b's stream cut without a word: once their leases lapse its accounts go to
    # worker-a, up to its capacity.
    await rig.crash("worker-b")

    async def moved() -> bool:
        placement = await rig.placement()
        return await rig.loads() == {"worker-a": 6} and sorted(placement.values()).count("") == 3

    await waiting.eventually(moved, timeout=10, every=0.1)

    # A worker joining takes what waits, then its share.
    await rig.start("next-worker", capacity=6)

    async def balanced() -> bool:
        loads = await rig.loads()
        return loads.get("next-worker") == 4 and loads.get("worker-a") == 5

    await waiting.eventually(balanced, timeout=20, every=0.1)
    reasons = [e.assignment.reason for e in assignments()]
    assert "worker_left" in reasons and "rebalance" in reasons
    moved_event = next(e for e in assignments() if e.assignment.reason == "rebalance")
    assert (moved_event.assignment.previous_worker_id, moved_event.assignment.worker_id) == ("worker-a", "next-worker")

    # Paused: taken back; resumed: given again; removed: taken back for good.
    await rig.im.update_managed_account(
        fl.UpdateManagedAccountRequest(account_id="s-0", account=fl.ManagedAccount(paused=True))
    )

    async def paused() -> bool:
        return (await rig.placement())["s-0"] == ""

    await waiting.eventually(paused, timeout=10, every=0.1)

    async def shown_paused() -> bool:  # on no worker, by choice
        shown = await rig.master.store.get_account("s-0")
        return (shown.paused, shown.worker_id, shown.online) == (True, "", False)

    await waiting.eventually(shown_paused, timeout=10, every=0.1)
    await rig.im.update_managed_account(
        fl.UpdateManagedAccountRequest(
            account_id="s-0", account=fl.ManagedAccount(paused=False), update_mask=FieldMask(paths=["paused"])
        )
    )
    await waiting.eventually(lambda: rig.master.hub.leases.holder("s-0"), timeout=10, every=0.1)
    await rig.im.delete_managed_account(fl.DeleteManagedAccountRequest(account_id="s-1"))
    await waiting.eventually(lambda: rig.master.hub.leases.holder("s-1") is None, timeout=10, every=0.1)
    assert sum((await rig.loads()).values()) == 8


async def test_labels_choose_the_worker_and_a_stopping_worker_hands_its_accounts_over(fleet_rig: Fleet) -> None:
    rig = fleet_rig
    await rig.add(sample("sh-1", worker_labels={"region": "sh"}))
    await rig.add(sample("any-1"))
    await rig.start("worker-a", capacity=5, region="bj")
    await rig.start("worker-b", capacity=5, region="sh")
    placed = await waiting.eventually(
        lambda: _all_placed(rig, {"sh-1", "any-1"}), timeout=10, every=0.1, ignoring=(KeyError,)
    )
    assert placed["sh-1"] == "worker-b"

    # worker-b stops (SIGTERM): it releases at once, without waiting for its lease to lapse;
    # sh-1 has nowhere to go (no other worker offers region=sh), any-1 stays or moves.
    started = asyncio.get_running_loop().time()
    await rig.stop("worker-b")
    assert rig.master.hub.leases.holder("sh-1") is None
    assert asyncio.get_running_loop().time() - started < 2.0
    await asyncio.sleep(1.5)
    assert (await rig.placement())["sh-1"] == ""


async def _all_synced(rig: Fleet) -> bool:
    placement = await rig.placement()
    return all(version > 0 for version in (await rig.master.store.account_versions(list(placement))).values())


async def _all_placed(rig: Fleet, wanted: set[str]) -> dict[str, str] | None:
    placement = await rig.placement()
    return placement if all(placement[a] for a in wanted) else None


class RawStream:
    """A worker's SyncData stream spoken by hand: its Hello sent and Welcome read."""

    def __init__(self, channel: grpc.aio.Channel, hello: sync_pb2.Hello) -> None:
        self.outbound: asyncio.Queue[sync_pb2.SyncDataRequest] = asyncio.Queue()
        stub: Any = sync_pb2_grpc.SyncServiceStub(channel)
        metadata = (("authorization", f"Bearer {token_for(hello.worker_id)}"),)
        self.call = stub.SyncData(self._requests(), metadata=metadata)
        self.send(sync_pb2.SyncDataRequest(hello=hello))

    async def _requests(self) -> AsyncIterator[sync_pb2.SyncDataRequest]:
        while True:
            yield await self.outbound.get()

    def send(self, request: sync_pb2.SyncDataRequest) -> None:
        self.outbound.put_nowait(request)

    async def welcomed(self) -> RawStream:
        assert (await self.call.read()).HasField("welcome")
        return self

    async def next(self, kind: str, timeout: float = 10) -> Any:
        """The next response of that kind (the others before it are passed over)."""
        return await waiting.eventually(partial(_next_of, self.call, kind), timeout=timeout)

    async def speaking(self, every: float = 0.2) -> None:
        """Heartbeats, as a live worker sends them (a silent one is given nothing)."""
        while True:
            self.send(sync_pb2.SyncDataRequest(heartbeat=sync_pb2.Heartbeat()))
            await asyncio.sleep(every)


async def test_uploaded_sessions_are_sealed_and_handed_to_the_next_worker(tmp_path: Path) -> None:
    ring = tmp_path / "session-keys"
    create_session_key(ring)
    config = fleet_config(tmp_path, session_keys=ring)
    master = Master(config)
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await master.store.save_managed_account(sample("s-1"), create=True)
        # The protocol itself, as a worker speaks it.
        first = await RawStream(channel, sync_pb2.Hello(worker_id="worker-a", capacity=1)).welcomed()
        assign = await first.next("assign")
        assert assign.assign.account.account_id == "s-1" and assign.assign.storage_state == b""
        first.send(
            sync_pb2.SyncDataRequest(session=sync_pb2.SessionUpload(account_id="s-1", storage_state=b'{"cookies":1}'))
        )
        sealed = await waiting.eventually(lambda: master.store.session_state("s-1"), timeout=5)
        assert b"cookies" not in sealed, "kept sealed"
        listed = await ImClient(channel).list_managed_accounts(fl.ListManagedAccountsRequest())
        assert listed.accounts[0].has_session and listed.accounts[0].worker_id == "worker-a"
        # A session too big is refused with a Nack naming the field; the stream goes on.
        first.send(
            sync_pb2.SyncDataRequest(
                session=sync_pb2.SessionUpload(account_id="s-1", storage_state=b"x" * (fleet.MAX_SESSION_BYTES + 1))
            )
        )
        nack = await first.next("nack", timeout=5)
        assert "session.storage_state" in str(nack.nack.status)
        first.call.cancel()

        # The next worker gets the session with the account (once the first one's lease
        # lapsed: its stream ended without a word).
        second = RawStream(channel, sync_pb2.Hello(worker_id="worker-b", capacity=1))
        speaking = asyncio.create_task(second.speaking())
        try:
            assign = await second.next("assign")
        finally:
            speaking.cancel()
        assert assign.assign.storage_state == b'{"cookies":1}'
        second.call.cancel()
    finally:
        await channel.close(grace=None)
        await master.stop()


async def test_of_workers_equally_full_the_one_with_more_crawls_per_account_is_given_more(tmp_path: Path) -> None:
    master = Master(fleet_config(tmp_path))
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    streams = []
    try:
        # What a worker offers is checked: a hello out of bounds is refused naming the field.
        wild = RawStream(channel, sync_pb2.Hello(worker_id="worker-a", capacity=10, max_concurrent_crawls=10_001))
        refused = await wild.next("nack")
        assert "hello.max_concurrent_crawls" in str(refused.nack.status)
        wild.call.cancel()
        for worker_id, crawls in (("worker-a", 1), ("worker-b", 4)):
            hello = sync_pb2.Hello(worker_id=worker_id, capacity=10, max_concurrent_crawls=crawls)
            streams.append(await RawStream(channel, hello).welcomed())
        for n in range(5):
            await master.store.save_managed_account(sample(f"c-{n}"), create=True)
        im = ImClient(channel)

        async def spread() -> dict[str, tuple[int, int]] | None:
            workers = (await im.list_workers(fl.ListWorkersRequest())).workers
            held = {w.worker_id: (len(w.account_ids), w.max_concurrent_crawls) for w in workers}
            return held if sum(n for n, _ in held.values()) == 5 else None

        # Each placed where the load over capacity is lowest; of equals, where an account
        # gets more of the worker's concurrent crawls.
        assert await waiting.eventually(spread, timeout=10) == {"worker-a": (2, 1), "worker-b": (3, 4)}
    finally:
        for stream in streams:
            stream.call.cancel()
        await channel.close(grace=None)
        await master.stop()


async def _next_of(call: Any, kind: str) -> Any:
    response = await call.read()
    return response if response.WhichOneof("kind") == kind else None


async def test_the_admin_api_over_http(tmp_path: Path) -> None:
    master = Master(MasterConfig(listen="127.0.0.1:0", retention=KEEP_EVERYTHING))
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    app = create_app(channel=channel)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            made = await http.post(
                "/api/im/admin/accounts",
                json={
                    "account_id": "d-1",
                    "adapter": "douyin",
                    "base_url": "http://127.0.0.1:9",
                    "login_method": "LOGIN_METHOD_PASSWORD",
                    "login_uid": "60001",
                    "login_password": "secret",
                    "worker_labels": {"region": "sh"},
                },
            )
            assert made.status_code == 200, made.text
            assert "secret" not in made.text and made.json()["data"]["account"]["worker_labels"] == {"region": "sh"}
            again = await http.post("/api/im/admin/accounts", json={"account_id": "d-1", "adapter": "sample"})
            assert again.status_code == 409
            for body, field in [
                ({"account_id": "d 2", "adapter": "sample"}, "account.account_id"),
                ({"account_id": "d-2", "adapter": "nope"}, "account.adapter"),
                ({"account_id": "d-2", "adapter": "douyin"}, "account.base_url"),
                ({"account_id": "d-2", "adapter": "sample", "display_name": "x" * 81}, "account.display_name"),
            ]:
                refused = await http.post("/api/im/admin/accounts", json=body)
                assert refused.status_code == 400 and field in refused.text, (body, refused.text)
            for raw in (b"null", b"5", b"[1]", b'"x"'):
                refused = await http.patch(
                    "/api/im/admin/accounts/d-1", content=raw, headers={"content-type": "application/json"}
                )
                assert refused.status_code == 400 and "body" in refused.text, (raw, refused.text)
            patched = await http.patch("/api/im/admin/accounts/d-1", json={"paused": True})
            assert patched.status_code == 200
            shown = (await http.get("/api/im/admin/accounts/d-1")).json()["data"]["account"]
            assert shown["paused"] is True and shown["display_name"] == "" and shown["login_uid"] == "60001"
            kept = next(a for a in await master.store.list_managed_accounts() if a.account_id == "d-1")
            assert kept.login_password == "secret", "a PATCH of one field keeps the others"
            assert (await http.patch("/api/im/admin/accounts/d-1", json={"adapter": "sample"})).status_code == 400
            assert (await http.get("/api/im/admin/accounts/nobody")).status_code == 404
            assert (await http.delete("/api/im/admin/accounts/d-1")).status_code == 200
            assert (await http.get("/api/im/admin/accounts")).json()["data"]["accounts"] == []
            assert (await http.get("/api/im/admin/workers")).json()["data"]["workers"] == []
    finally:
        await channel.close(grace=None)
        await master.stop()


async def test_a_worker_config_s_accounts_are_imported_into_the_fleet(tmp_path: Path) -> None:
    """`imsync account import`: the older form's [[accounts]] become managed accounts (the
    login, the base URL, the seed), twice is harmless, and a session kept elsewhere than
    where a scheduled worker looks is pointed out."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "d-1.json").write_text("{}")
    config = tmp_path / "worker.toml"
    config.write_text(
        # The worker's token stays on the worker's machine: the import does without it.
        'master = "127.0.0.1:1"\nworker_id = "w"\ntoken_file = "not-here.token"\n'
        '[[accounts]]\naccount_id = "d-1"\nadapter = "douyin"\nbase_url = "http://127.0.0.1:9"\n'
        'storage_state = "elsewhere/d-1.json"\nlogin_uid = "60001"\nlogin_password = "secret"\n'
        '[[accounts]]\naccount_id = "s-1"\nadapter = "sample"\nseed = 5\n'
    )
    master = Master(MasterConfig(listen="127.0.0.1:0", retention=KEEP_EVERYTHING))
    port = await master.start()
    try:
        cli = partial(imsync, "account", "import", str(config), "--master", f"127.0.0.1:{port}")
        first = await asyncio.to_thread(cli)
        assert first.returncode == 0, first.stderr
        assert f"move its session {tmp_path / 'elsewhere' / 'd-1.json'} to {tmp_path / 'state' / 'd-1.json'}" in (
            first.stdout
        )
        assert "capacity = 2" in first.stdout
        kept = {a.account_id: a for a in await master.store.list_managed_accounts()}
        assert (kept["d-1"].adapter, kept["d-1"].base_url) == ("douyin", "http://127.0.0.1:9")
        assert (kept["d-1"].login_method, kept["d-1"].login_uid) == (fl.LOGIN_METHOD_PASSWORD, "60001")
        assert kept["d-1"].login_password == "secret"
        assert (kept["s-1"].adapter, kept["s-1"].seed) == ("sample", 5)
        again = await asyncio.to_thread(cli)
        assert again.returncode == 0 and again.stdout.count("already in the fleet") == 2, again.stdout
        none = await asyncio.to_thread(
            imsync, "account", "import", str(tmp_path / "missing.toml"), "--master", f"127.0.0.1:{port}"
        )
        assert none.returncode == 2 and "missing.toml" in none.stderr
    finally:
        await master.stop()


def test_a_worker_config_takes_scheduled_accounts_or_names_its_own(tmp_path: Path) -> None:
    from services.worker.config import ConfigError, load_worker_config

    path = tmp_path / "worker.toml"
    path.write_text('master = "127.0.0.1:1"\nworker_id = "w"\ntoken = "t"\ncapacity = 5\nlabels = { region = "sh" }\n')
    config = load_worker_config(path)
    assert (config.capacity, config.labels, config.accounts) == (5, (("region", "sh"),), ())
    path.write_text('master = "127.0.0.1:1"\nworker_id = "w"\ntoken = "t"\n')
    with pytest.raises(ConfigError, match="capacity"):
        load_worker_config(path)
    path.write_text(
        'master = "127.0.0.1:1"\nworker_id = "w"\ntoken = "t"\ncapacity = 5\n'
        '[[accounts]]\naccount_id = "a"\nadapter = "sample"\n'
    )
    with pytest.raises(ConfigError, match="not both"):
        load_worker_config(path)


async def test_two_masters_over_redis_share_the_accounts_and_never_give_one_twice(
    tmp_path: Path, redis_url: str
) -> None:
    """Each master schedules its own workers; the leases in Redis keep one owner per account."""
    prefix = f"fleet{time.monotonic_ns()}"
    masters: list[tuple[Master, str]] = []
    for name in ("m1", "m2"):
        config = fleet_config(tmp_path, store=redis_url, redis_prefix=prefix, master_id=name)
        master = Master(config)
        masters.append((master, f"127.0.0.1:{await master.start()}"))
    channels = [grpc.aio.insecure_channel(address) for _, address in masters]
    one = Fleet(masters[0][0], masters[0][1], channels[0], tmp_path)
    two = Fleet(masters[1][0], masters[1][1], channels[1], tmp_path)
    try:
        for n in range(6):
            await one.add(sample(f"r-{n}"))
        await one.start("worker-a", capacity=4)
        await two.start("worker-b", capacity=4)

        async def everything_held_once() -> dict[str, str] | None:
            # Either master lists both workers: its own, and the other's as announced.
            held = await one.loads()
            placement = await one.placement()  # the owners as Redis has them, from either master
            if sum(held.values()) == 6 and held == await two.loads() and all(placement.values()):
                return placement
            return None

        placement = await waiting.eventually(everything_held_once, timeout=15, every=0.2)
        assert set(placement.values()) <= {"worker-a", "worker-b"}
        assert placement == await two.placement(), "both masters see the same owners"
        listed = (await one.im.list_workers(fl.ListWorkersRequest())).workers
        assert [(w.worker_id, w.master_id) for w in listed] == [("worker-a", "m1"), ("worker-b", "m2")]

        # The second master placing an account the first one's worker took an instant before
        # (both saw it waiting): placed, not counted as waiting for a worker with room (it
        # was warned of as such, and counted in imsync_fleet_accounts_waiting).
        taken = next(account_id for account_id, worker_id in placement.items() if worker_id == "worker-a")
        session = next(s for s in masters[1][0].hub.sessions.values() if s.worker_id == "worker-b")
        session.capacity += 1  # room for it, whatever the spread
        assert await masters[1][0].hub.scheduler.place(sample(taken), [session])
        session.capacity -= 1
        assert taken not in session.granted and (await one.placement())[taken] == "worker-a"

        # worker-b (on the second master) dies: the first master's worker takes its accounts
        # as far as its capacity goes, without two owners at any moment.
        await two.crash("worker-b")

        async def taken_over() -> bool:
            return await one.loads() == {"worker-a": 4}

        await waiting.eventually(taken_over, timeout=15, every=0.2)
        assert sorted((await one.placement()).values()).count("worker-a") == 4
    finally:
        for rig in (one, two):
            for worker_id in list(rig.workers):
                await rig.stop(worker_id)
        for channel in channels:
            await channel.close(grace=None)
        for master, _ in masters:
            await master.stop()


async def test_a_worker_gone_silent_loses_its_accounts_to_one_that_speaks(tmp_path: Path) -> None:
    """Its connection stays open but nothing more comes: once its lease lapses the account
    goes to the other worker (though the silent one has the more room), never back."""
    config = fleet_config(tmp_path, lease=1.0)
    master = Master(config)
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await master.store.save_managed_account(sample("s-1"), create=True)
        await master.store.save_managed_account(sample("s-2", worker_labels={"region": "b"}), create=True)
        offers = {
            "worker-a": sync_pb2.Hello(capacity=10),
            "worker-b": sync_pb2.Hello(capacity=2, labels={"region": "b"}),
        }
        streams: dict[str, RawStream] = {}
        speaking: dict[str, asyncio.Task[None]] = {}
        for worker_id in ("worker-a", "worker-b"):
            hello = offers[worker_id]
            hello.worker_id = worker_id
            streams[worker_id] = await RawStream(channel, hello).welcomed()
            speaking[worker_id] = asyncio.create_task(streams[worker_id].speaking())
            given = await streams[worker_id].next("assign", timeout=5)
            # s-1 goes to worker-a, the first with room; s-2 asks for region=b.
            assert given.assign.account.account_id == {"worker-a": "s-1", "worker-b": "s-2"}[worker_id]
        speaking.pop("worker-a").cancel()  # worker-a falls silent, its connection open
        try:
            moved = await streams["worker-b"].next("assign", timeout=5)
            assert moved.assign.account.account_id == "s-1"
            await asyncio.sleep(2 * config.sync.lease_duration)
            holder = master.hub.leases.holder("s-1")
            assert holder is not None and holder.worker_id == "worker-b", "never given back to the silent worker"
        finally:
            for task in speaking.values():
                task.cancel()
        for stream in streams.values():
            stream.call.cancel()
    finally:
        await channel.close(grace=None)
        await master.stop()


class Heard:
    """Every response on a stream, with when it came, read in a task of its own."""

    def __init__(self, stream: RawStream) -> None:
        self.responses: list[tuple[float, sync_pb2.SyncDataResponse]] = []
        self._task = asyncio.create_task(self._read(stream.call))

    async def _read(self, call: Any) -> None:
        while (response := await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
            self.responses.append((time.monotonic(), response))

    def assigned(self) -> list[tuple[float, str]]:
        return [(at, r.assign.account.account_id) for at, r in self.responses if r.HasField("assign")]

    def stop(self) -> None:
        self._task.cancel()


@contextlib.asynccontextmanager
async def _holder_and_other(config: MasterConfig) -> AsyncIterator[tuple[Master, grpc.aio.Channel, Held, Held]]:
    """A master with account s-1 given to worker-a, and worker-b with as much room; both
    send heartbeats until their `cut()`. All stopped on the way out."""
    master = Master(config)
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    streams: list[Held] = []
    try:
        await master.store.save_managed_account(sample("s-1"), create=True)
        for worker_id in ("worker-a", "worker-b"):
            stream = await RawStream(channel, sync_pb2.Hello(worker_id=worker_id, capacity=5)).welcomed()
            streams.append(Held(stream, asyncio.create_task(stream.speaking())))
            if worker_id == "worker-a":
                assert (await stream.next("assign")).assign.account.account_id == "s-1"
        yield master, channel, streams[0], streams[1]
    finally:
        for held in streams:
            held.cut()
        await channel.close(grace=None)
        await master.stop()


class Held:
    """A raw worker stream and its heartbeats."""

    def __init__(self, stream: RawStream, heartbeats: asyncio.Task[None]) -> None:
        self.stream = stream
        self.heartbeats = heartbeats

    def cut(self) -> None:
        """The stream ends without a word."""
        self.heartbeats.cancel()
        self.stream.call.cancel()


async def test_an_ended_stream_s_accounts_stay_with_its_worker_for_a_lease(tmp_path: Path) -> None:
    """A stream that ends without Released may leave its worker running the account (a
    killed worker's browser outlives it by a moment; a cut network stops nothing): no other
    worker is given the account until the lease lapses, and the same worker reconnecting
    takes it back at once."""
    config = fleet_config(tmp_path, lease=2.0)
    async with _holder_and_other(config) as (master, channel, first, other):
        heard = Heard(other.stream)
        first.cut()
        cut_at = time.monotonic()
        moved = await waiting.eventually(heard.assigned, timeout=10)
        waited = moved[0][0] - cut_at
        print(f"given to the other worker {waited:.2f} s after the stream ended (lease {config.sync.lease_duration} s)")
        # worker-a was last heard at most one heartbeat (0.2 s) before its stream ended.
        assert waited >= config.sync.lease_duration - 0.2 - 0.05, "not before worker-a's lease lapsed"
        reasons = [e.assignment.reason for e in master.bus.kept_events() if e.type == ev.EVENT_TYPE_ACCOUNT_ASSIGNED]
        assert reasons == ["new", "worker_left"]

        # worker-b's stream ends too, and worker-b reconnects at once: the account is its again.
        heard.stop()
        other.cut()
        hello = sync_pb2.Hello(worker_id="worker-b", capacity=5, accounts=[sync_pb2.AccountVersion(account_id="s-1")])
        back = RawStream(channel, hello)
        welcome = (await back.call.read()).welcome
        assert [a.account_id for a in welcome.accounts] == ["s-1"] and not welcome.refused
        back.call.cancel()


async def test_a_restarted_master_lets_its_workers_take_their_accounts_back(tmp_path: Path) -> None:
    """A master started from its journal knows the accounts, not who ran them (leases live
    in memory): for a lease it places nothing, so a worker that reconnects late still finds
    its accounts its own, not given to the one that came back first."""
    config = fleet_config(tmp_path, lease=2.0, data_dir=tmp_path / "data")
    master = Master(config)
    port = await master.start()
    config = dataclasses.replace(config, listen=f"127.0.0.1:{port}")
    channel = grpc.aio.insecure_channel(config.listen)
    tasks: list[asyncio.Task[None]] = []
    try:
        for n in range(2):
            await master.store.save_managed_account(sample(f"s-{n}"), create=True)
        for worker_id in ("worker-a", "worker-b"):
            stream = await RawStream(channel, sync_pb2.Hello(worker_id=worker_id, capacity=1)).welcomed()
            tasks.append(asyncio.create_task(stream.speaking()))
            await stream.next("assign")
        before = {a: lease.worker_id for a in ("s-0", "s-1") if (lease := master.hub.leases.holder(a)) is not None}
        assert sorted(before.values()) == ["worker-a", "worker-b"]
        for task in tasks:
            task.cancel()
        tasks.clear()
        await master.stop()

        # The same master again; worker-a, with room for both, is back at once.
        master = Master(config)
        await master.start()

        def back(worker_id: str, capacity: int) -> RawStream:
            mine = [sync_pb2.AccountVersion(account_id=a) for a, w in before.items() if w == worker_id]
            return RawStream(channel, sync_pb2.Hello(worker_id=worker_id, capacity=capacity, accounts=mine))

        first = back("worker-a", 2)
        assert len((await first.call.read()).welcome.accounts) == 1
        tasks.append(asyncio.create_task(first.speaking()))
        heard = Heard(first)
        await asyncio.sleep(1.5)  # worker-b's reconnection takes its time, within the lease
        late = back("worker-b", 1)
        welcome = (await late.call.read()).welcome
        assert len(welcome.accounts) == 1 and not welcome.refused, welcome
        tasks.append(asyncio.create_task(late.speaking()))
        await asyncio.sleep(1.0)
        assert heard.assigned() == [], "nothing given to worker-a meanwhile"
        heard.stop()
        for stream in (first, late):
            stream.call.cancel()
    finally:
        for task in tasks:
            task.cancel()
        await channel.close(grace=None)
        await master.stop()


async def test_an_account_another_master_moves_names_the_worker_it_ran_on(tmp_path: Path, redis_url: str) -> None:
    """A master that did not see an account's worker leave (another master's worker had
    it) and gives the account to a worker of its own says which worker it ran on, and why
    as far as it knows: "reassigned". It said "new"."""
    prefix = f"moved{time.monotonic_ns()}"
    masters: list[Master] = []
    channels: list[grpc.aio.Channel] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for name in ("m1", "m2"):
            master = Master(fleet_config(tmp_path, lease=1.0, store=redis_url, redis_prefix=prefix, master_id=name))
            channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{await master.start()}"))
            masters.append(master)
        await masters[0].store.save_managed_account(sample("s-0"), create=True)
        first = await RawStream(channels[0], sync_pb2.Hello(worker_id="worker-a", capacity=1)).welcomed()
        tasks.append(asyncio.create_task(first.speaking()))
        await first.next("assign")
        other = await RawStream(channels[1], sync_pb2.Hello(worker_id="worker-b", capacity=1)).welcomed()
        tasks.append(asyncio.create_task(other.speaking()))

        # worker-a's stream ends; once its lease lapses, the account is worker-b's, on m2.
        tasks[0].cancel()
        first.call.cancel()
        assert (await other.next("assign")).assign.account.account_id == "s-0"

        def moved() -> list[tuple[str, str, str]]:
            events = masters[1].bus.kept_events()
            assigned = [e.assignment for e in events if e.type == ev.EVENT_TYPE_ACCOUNT_ASSIGNED]
            return [(a.worker_id, a.previous_worker_id, a.reason) for a in assigned if a.worker_id == "worker-b"]

        assert await waiting.eventually(moved, timeout=10) == [("worker-b", "worker-a", "reassigned")]
        other.call.cancel()
    finally:
        for task in tasks:
            task.cancel()
        for channel in channels:
            await channel.close(grace=None)
        for master in masters:
            await master.stop()


async def test_a_worker_stops_its_accounts_when_its_master_is_gone_for_most_of_a_lease(tmp_path: Path) -> None:
    """Its accounts' leases lapse on the master, which may give them to another worker: this
    one stops them first. When its master is back, it runs what it is assigned again."""
    config = fleet_config(tmp_path, lease=2.0, data_dir=tmp_path / "data")
    master = Master(config)
    port = await master.start()
    config = dataclasses.replace(config, listen=f"127.0.0.1:{port}")
    channel = grpc.aio.insecure_channel(config.listen)
    rig = Fleet(master, config.listen, channel, tmp_path)
    try:
        for n in range(2):
            await rig.add(sample(f"s-{n}"))
        await rig.start("worker-a", capacity=2, merge_stderr=True)
        await waiting.eventually(lambda: _all_synced(rig), timeout=15)
        worker = rig.workers["worker-a"]
        await master.stop()
        stopped_at = time.monotonic()
        await worker.line_with("stopping 2 accounts before their leases lapse", timeout=10)
        print(f"the worker stopped its accounts {time.monotonic() - stopped_at:.2f} s after its master stopped")
        for n in range(2):
            await worker.line_with(f"account s-{n} released (the master is out of reach)", timeout=10)

        worker.output.clear()
        rig.master = master = Master(config)
        await master.start()
        for n in range(2):
            await worker.line_with(f"account s-{n} assigned", timeout=15)
        assert await rig.loads() == {"worker-a": 2}
    finally:
        for worker_id in list(rig.workers):
            await rig.stop(worker_id)
        await channel.close(grace=None)
        await master.stop()


async def _master_process(tmp_path: Path) -> processes.Child:
    """A master process (lease 2 s, heartbeats every 0.5 s) and its log, for the tests
    that stop processes with signals."""
    return await processes.start(
        [
            "master",
            "--listen",
            "127.0.0.1:0",
            "--worker-tokens",
            str(write_tokens(tmp_path / "tokens.toml", WORKERS)),
            "--data-dir",
            str(tmp_path / "data"),
            "--lease-seconds",
            "2",
            "--heartbeat-seconds",
            "0.5",
        ],
        merge_stderr=True,
    )


@contextlib.asynccontextmanager
async def _processes_rig(tmp_path: Path, accounts: int = 2) -> AsyncIterator[tuple[processes.Child, Fleet]]:
    """A master process with `accounts` sample accounts, and worker-a taking them all,
    each crawled once; every process stopped on the way out."""
    master = await _master_process(tmp_path)
    channel = grpc.aio.insecure_channel(master.address)
    rig = Fleet(None, master.address, channel, tmp_path)  # type: ignore[arg-type]  # a master process
    try:
        for n in range(accounts):
            await rig.add(sample(f"s-{n}"))
        await rig.start("worker-a", capacity=accounts, merge_stderr=True)
        await waiting.eventually(lambda: _crawled_since(rig, 0, accounts), timeout=20)
        yield master, rig
    finally:
        master.process.send_signal(signal.SIGCONT)
        for worker_id in list(rig.workers):
            rig.workers[worker_id].process.send_signal(signal.SIGCONT)
            await rig.stop(worker_id)
        await channel.close(grace=None)
        await master.stop()


async def _crawled_since(rig: Fleet, moment: float, accounts: int) -> bool:
    listed = await rig.im.list_accounts(acc.ListAccountsRequest(count=accounts + 1))
    return len([u for u in listed.users if u.last_crawl_at.ToNanoseconds() / 1e9 > moment]) == accounts


@pytest.mark.e2e
async def test_a_master_frozen_past_the_lease_gets_its_accounts_run_again(tmp_path: Path) -> None:
    """The master process stops (SIGSTOP) for two leases: the worker's stream times out, it
    stops its accounts, and its reconnecting Hello may reach the master before or after
    that; either way, once the master runs again every account is crawled again, none left
    counted as the worker's while nobody runs it."""
    async with _processes_rig(tmp_path) as (master, rig):
        master.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(4.0)
        master.process.send_signal(signal.SIGCONT)
        resumed = time.time()
        await waiting.eventually(lambda: _crawled_since(rig, resumed, 2), timeout=20, every=0.2)
        assert await rig.loads() == {"worker-a": 2}


@pytest.mark.e2e
async def test_a_machine_frozen_past_the_lease_takes_nothing_from_anyone(tmp_path: Path) -> None:
    """Master and worker stop together for two leases (a shared machine froze; in CI every
    process here paused for up to 4 s at once). When they run again the worker's
    heartbeats are waiting in the master's socket and the master's in the worker's: the
    leases hold, the stream stays, no account stops (on the wall clock the master took
    the worker's leases and the worker its stream as they resumed, and every account
    restarted)."""
    async with _processes_rig(tmp_path) as (master, rig):
        worker = rig.workers["worker-a"]
        for child in (master, worker):
            child.output.clear()
            child.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(4.0)
        for child in (master, worker):
            child.process.send_signal(signal.SIGCONT)
        resumed = time.time()
        await waiting.eventually(lambda: _crawled_since(rig, resumed, 2), timeout=20, every=0.2)
        await asyncio.sleep(2.0)  # a lease: what lapsed would show by now
        assert await rig.loads() == {"worker-a": 2}
        assert not [line for line in master.output if "lost account" in line or "released account" in line]
        assert not [line for line in worker.output if "sync stream ended" in line or "released" in line], worker.output


@contextlib.asynccontextmanager
async def _lapsed_while_open(tmp_path: Path) -> AsyncIterator[tuple[Master, RawStream, sync_pb2.Assign]]:
    """A master (2 s leases) that gave s-1 to worker-a, whose stream then fell silent for a
    lease and stayed open: the master took the lease and said so (Release, "its lease
    lapsed"). Yields the master, the stream and the Assign of the lapsed grant."""
    master = Master(fleet_config(tmp_path, lease=2.0))
    port = await master.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await master.store.save_managed_account(sample("s-1"), create=True)
        stream = await RawStream(channel, sync_pb2.Hello(worker_id="worker-a", capacity=5)).welcomed()
        heartbeats = asyncio.create_task(stream.speaking())
        assign = (await stream.next("assign")).assign
        assert assign.account.account_id == "s-1"
        heartbeats.cancel()  # it froze; its stream stays open
        release = (await stream.next("release", timeout=10)).release
        assert (release.account_id, release.reason) == ("s-1", "its lease lapsed")
        yield master, stream, assign
    finally:
        await channel.close(grace=None)
        await master.stop()


async def test_a_lapsed_lease_s_release_answered_after_a_new_grant_frees_nothing(tmp_path: Path) -> None:
    """The worker answers a lapsed lease's Release only after a lease more (stopping the
    account took that long): by then the account was given to it again, with a new epoch.
    Its Released names the lapsed grant, and frees nothing: the worker runs the new grant,
    and the account must not go to another worker meanwhile. Released of the grant held
    now frees it."""
    async with _lapsed_while_open(tmp_path) as (master, stream, assign):
        lapsed = assign.version.lease_epoch
        heard = Heard(stream)
        heartbeats = asyncio.create_task(stream.speaking())  # it wakes, and says nothing of the Release yet
        assert await waiting.eventually(lambda: len(heard.assigned()) == 1, timeout=10)
        again = next(r.assign for _, r in heard.responses if r.HasField("assign")).version.lease_epoch
        assert again > lapsed

        def holder_epoch() -> int | None:
            holder = master.hub.leases.holder("s-1")
            return None if holder is None else holder.epoch

        late = sync_pb2.Released(account_id="s-1", lease_epoch=lapsed)
        stream.send(sync_pb2.SyncDataRequest(released=late))
        await asyncio.sleep(1.5)  # a scheduler round and more
        assert holder_epoch() == again, "the late answer freed the grant held now"
        assert len(heard.assigned()) == 1
        stream.send(sync_pb2.SyncDataRequest(released=sync_pb2.Released(account_id="s-1", lease_epoch=again)))
        # Freed, it is given again (the only worker), under a newer epoch.
        assert await waiting.eventually(lambda: len(heard.assigned()) == 2, timeout=5)
        assert (holder_epoch() or 0) > again
        heartbeats.cancel()
        heard.stop()


@pytest.mark.e2e
async def test_a_worker_frozen_past_its_lease_stops_its_accounts_as_it_wakes(tmp_path: Path) -> None:
    """The worker alone stops for two leases (its machine froze): the master takes its
    leases and says so on the stream, which is still open; the worker reads that first
    when it runs again and stops the accounts at once, instead of crawling them until a
    refusal of its next message tells it (another worker may run them by then)."""
    async with _processes_rig(tmp_path) as (master, rig):
        worker = rig.workers["worker-a"]
        worker.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(4.0)
        worker.process.send_signal(signal.SIGCONT)
        resumed = time.time()

        async def stopped_for_the_lapse() -> bool:
            return sum("released (its lease lapsed)" in line for line in worker.output) == 2

        await waiting.eventually(stopped_for_the_lapse, timeout=10, every=0.2)
        assert sum("its lease lapsed" in line for line in master.output) == 2
        # The only worker, it is given them again.
        await waiting.eventually(lambda: _crawled_since(rig, resumed, 2), timeout=20, every=0.2)
        assert await rig.loads() == {"worker-a": 2}


async def test_a_stopping_worker_is_given_nothing_more(tmp_path: Path) -> None:
    """A worker that releases its accounts because it stops says so: they go to the other
    worker, not back to it (it would take them and die with them leased)."""
    async with _holder_and_other(fleet_config(tmp_path)) as (_, _, leaving, other):
        heard = Heard(leaving.stream)
        # Of two equally loaded workers the scheduler prefers worker-a (by name): only its
        # word that it stops sends the account to worker-b.
        leaving.stream.send(sync_pb2.SyncDataRequest(released=sync_pb2.Released(account_id="s-1", stopping=True)))
        assert (await other.stream.next("assign", timeout=5)).assign.account.account_id == "s-1"
        await asyncio.sleep(1.5)
        assert heard.assigned() == []
        heard.stop()


async def test_goodbye_frees_what_the_worker_never_read_and_ends_the_stream(tmp_path: Path) -> None:
    """A worker stopping as an account was assigned to it has not read the Assign: it says
    Goodbye after its Released, and the master frees every lease the stream still holds at
    once (not a lease later), then ends the stream behind its answers."""
    async with _holder_and_other(fleet_config(tmp_path, lease=30.0)) as (master, _, leaving, other):
        leaving.heartbeats.cancel()
        started = asyncio.get_running_loop().time()
        # The Assign of s-1 was read by the test, not by a worker: nothing says Released.
        leaving.stream.send(sync_pb2.SyncDataRequest(goodbye=sync_pb2.Goodbye()))
        assert await leaving.stream.call.read() is grpc.aio.EOF  # type: ignore[attr-defined]
        assert await leaving.stream.call.code() == grpc.StatusCode.OK
        assert master.hub.leases.holder("s-1") is None
        assert (await other.stream.next("assign", timeout=15)).assign.account.account_id == "s-1"
        assert asyncio.get_running_loop().time() - started < 15  # not after the lease (30 s) lapsed


class _StopsAsAssigned(SyncEngine):
    """A worker told to stop in the instant an Assign came: the stop begins before the
    account's start has run (it is not yet among the engine's accounts)."""

    stopped: asyncio.Task[None] | None = None

    def _assigned(self, assign: sync_pb2.Assign) -> None:
        self.stopped = asyncio.create_task(self.drain())
        super()._assigned(assign)


async def test_a_worker_stopping_as_an_account_starts_hands_it_back_at_once(tmp_path: Path) -> None:
    master = Master(fleet_config(tmp_path, lease=30.0))
    port = await master.start()
    try:
        await master.store.save_managed_account(sample("s-1"), create=True)
        config = EngineConfig(master=f"127.0.0.1:{port}", worker_id="worker-a", token=token_for("worker-a"), capacity=1)
        engine = _StopsAsAssigned(config, [])
        async with running(engine):
            await waiting.eventually(lambda: engine.stopped is not None, timeout=10, every=0.05)
            assert engine.stopped is not None
            await asyncio.wait_for(engine.stopped, 10)
        assert master.hub.leases.holder("s-1") is None  # not a lease (30 s) later
        assert engine.accounts == {}
    finally:
        await master.stop()


async def test_a_lapsed_lease_s_release_is_answered_before_the_account_comes_back(tmp_path: Path) -> None:
    """A worker whose stream stayed open falls silent for a lease: the master takes the
    lease and says so (Release). The worker's Released answers that lapsed grant; the
    account is given to it again only after it (the demo showed the Assign crossing the
    answer, which then freed the new grant: a refused status, an ERROR, one more move)."""
    async with _lapsed_while_open(tmp_path) as (master, stream, _):
        heard = Heard(stream)
        heartbeats = asyncio.create_task(stream.speaking())  # it wakes
        await asyncio.sleep(1.5)  # a scheduler round and more
        assert heard.assigned() == [], "given again before its Released came"
        stream.send(sync_pb2.SyncDataRequest(released=sync_pb2.Released(account_id="s-1")))
        assert [a for _, a in await waiting.eventually(heard.assigned, timeout=5)] == ["s-1"]
        await asyncio.sleep(1.0)
        holder = master.hub.leases.holder("s-1")
        assert holder is not None and holder.worker_id == "worker-a", "the answer freed nothing it holds now"
        heartbeats.cancel()
        heard.stop()


async def test_a_worker_naming_its_own_accounts_lets_them_go_when_it_stops(tmp_path: Path) -> None:
    """The older form of worker ([[accounts]] in its config) stopped by SIGTERM releases its
    accounts as a scheduled one does: a worker taking over does not wait for the lease
    (10 s here) to lapse."""
    master = Master(fleet_config(tmp_path, lease=10.0))
    port = await master.start()
    try:
        config = tmp_path / "worker-a.toml"
        config.write_text(
            f'master = "127.0.0.1:{port}"\nworker_id = "worker-a"\ntoken = "{token_for("worker-a")}"\n'
            'crawl_interval = 0.5\ncommand_log = "worker-a-commands.sqlite3"\n\n'
            '[[accounts]]\naccount_id = "own-1"\nadapter = "sample"\nseed = 1\n'
        )
        worker = await processes.start(["worker", "--config", str(config)])
        await waiting.eventually(lambda: _synced(master, "own-1"), timeout=15, every=0.1)
        assert master.hub.leases.holder("own-1")
        started = asyncio.get_running_loop().time()
        await worker.stop()
        assert master.hub.leases.holder("own-1") is None
        assert asyncio.get_running_loop().time() - started < 5.0
    finally:
        await master.stop()


async def _synced(master: Master, account_id: str) -> bool:
    return (await master.store.account_versions([account_id]))[account_id] > 0
