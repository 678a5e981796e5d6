"""Live events: the bus, the RPC, and the gateway's NDJSON and SSE over real processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from imsync.v1 import events_pb2 as ev
from imsync_client import SyncClient
from services import processes
from services.common.sample import SampleAccount
from services.master.model.errors import InvalidArgument, OutOfRange, ResourceExhausted
from services.master.model.events import EventBus

from .conftest import NOW, Master, push_all, token_for, write_tokens


def event(account_id: str, kind: int = ev.EVENT_TYPE_NEW_MESSAGE) -> ev.Event:
    return ev.Event(type=kind, account_id=account_id)  # type: ignore[arg-type]


async def drain(bus: EventBus, subscription: object, count: int) -> list[ev.Event]:
    out: list[ev.Event] = []
    follower: Any = bus.follow(subscription)  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        async for item in follower:
            out.append(item)
            if len(out) == count:
                break
    await follower.aclose()
    return out


async def test_resuming_after_an_id_misses_nothing_and_repeats_nothing() -> None:
    bus = EventBus(history=100, epoch=7)
    for index in range(10):
        bus.publish(event("a" if index % 2 else "b"))
    resumed = bus.subscribe(["a"], [], after_event_id="7-4")
    bus.publish(event("a"))
    got = await drain(bus, resumed, 4)
    assert [x.event_id for x in got] == ["7-6", "7-8", "7-10", "7-11"]


async def test_an_id_of_an_earlier_run_is_out_of_range() -> None:
    """A master that restarted cannot know what a client missed: it says so."""
    before = EventBus(epoch=1)
    before.publish(event("a"))
    last = before.subscribe([], [], after_event_id="1-0").queue.get_nowait()
    assert isinstance(last, ev.Event) and last.event_id == "1-1"
    after = EventBus(epoch=2)
    after.publish(event("a"))
    with pytest.raises(OutOfRange, match="earlier run"):
        after.subscribe([], [], after_event_id=last.event_id)
    with pytest.raises(InvalidArgument):
        after.subscribe([], [], after_event_id="12")


async def test_history_too_old_and_slow_subscribers() -> None:
    bus = EventBus(history=5, buffer=3, epoch=3)
    for _ in range(10):
        bus.publish(event("a"))
    with pytest.raises(OutOfRange):
        bus.subscribe([], [], after_event_id="3-2")
    assert bus.subscribe([], [], after_event_id="3-8")  # 9 and 10 are held, and fit the buffer
    with pytest.raises(ResourceExhausted):
        bus.subscribe([], [], after_event_id="3-5")  # 6..10 are held, but more than the buffer
    slow = bus.subscribe([], [], after_event_id="")
    for _ in range(5):
        bus.publish(event("a"))
    assert slow.dropped, "a subscriber that does not read is dropped, not buffered without end"


async def test_rpc_events_for_arrivals_reads_and_replies(master: Master) -> None:
    account = SampleAccount("shop", seed=4, now=NOW)
    account.fill(conversations=2, messages_per_conversation=2, contents=1, comments_per_content=1)
    sync = await push_all(master, [account])
    seen: list[ev.Event] = []

    async def follow() -> None:
        request = ev.StreamEventsRequest(
            account_ids=["shop"], types=[ev.EVENT_TYPE_NEW_MESSAGE, ev.EVENT_TYPE_READ_STATE_CHANGED]
        )
        async for response in master.im.stream_events(request):
            seen.append(response.event)

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    message = account.add_message(account.batch.conversations[0], NOW + 5, inbound=True)
    await sync.push_snapshot("shop", 2, account.account, account.batch)
    await master.store.mark_message_read("shop", message.message_id, 1)
    async with asyncio.timeout(5):
        while len(seen) < 2:
            await asyncio.sleep(0.02)
    follower.cancel()
    assert seen[0].type == ev.EVENT_TYPE_NEW_MESSAGE and seen[0].message.message_id == message.message_id
    assert seen[1].read_state.item_ids == [f"message:{message.message_id}"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in master.im.stream_events(ev.StreamEventsRequest(after_event_id="soon")):
            pass
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def sse_events(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], count: int, ready: asyncio.Event
) -> list[tuple[str, dict[str, object]]]:
    out: list[tuple[str, dict[str, object]]] = []
    async with http.stream("GET", url, headers={"Accept": "text/event-stream", **headers}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event_id = ""
        async for line in response.aiter_lines():
            if line.startswith(": stream open"):
                ready.set()
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                out.append((event_id, json.loads(line[6:])))
                if len(out) == count:
                    return out
    return out


async def ndjson_events(http: httpx.AsyncClient, url: str, count: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    async with http.stream("GET", url) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line:
                out.append(json.loads(line))
                if len(out) == count:
                    return out
    return out


@pytest.fixture(params=["gateway process", "embedded gateway"])
async def deployment(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    tokens = write_tokens(tmp_path / "tokens.toml")
    args = ["master", "--listen", "127.0.0.1:0", "--retention", "none", "--worker-tokens", str(tokens)]
    if request.param == "embedded gateway":
        # The gateway announces itself first, then the master.
        master = await processes.start([*args, "--gateway-listen", "127.0.0.1:0", "--gateway-console", "none"])
        gateway_base = f"http://{master.address}"
        said = await master.line_with("master listening on")
        try:
            yield said.rpartition(" ")[2], gateway_base
        finally:
            await master.stop()
        return
    master = await processes.start(args)
    gateway = await processes.start(["gateway", "--listen", "127.0.0.1:0", "--master", master.address])
    try:
        yield master.address, f"http://{gateway.address}"
    finally:
        await gateway.stop()
        await master.stop()


@pytest.mark.e2e
async def test_sse_and_ndjson_clients_see_new_messages_and_resume_exactly(deployment: tuple[str, str]) -> None:
    master, base = deployment
    account = SampleAccount("shop", seed=6, now=NOW)
    account.fill(conversations=3, messages_per_conversation=2, contents=0, comments_per_content=0)
    async with grpc.aio.insecure_channel(master) as channel, httpx.AsyncClient(base_url=base, timeout=10) as http:
        sync = SyncClient(channel, "test-worker", token=token_for("test-worker"))
        await sync.open({"shop": 0})
        await sync.push_snapshot("shop", 1, account.account, account.batch)
        url = "/api/im/events?account_ids=shop&types=new_message"
        ready = asyncio.Event()
        sse = asyncio.create_task(sse_events(http, url, {}, 2, ready))
        ndjson = asyncio.create_task(ndjson_events(http, url, 2))
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.sleep(0.3)  # the NDJSON client subscribes too
        first = account.add_message(account.batch.conversations[0], NOW + 10, inbound=True)
        await sync.push_snapshot("shop", 2, account.account, account.batch)
        second = account.add_message(account.batch.conversations[1], NOW + 20, inbound=True)
        await sync.push_snapshot("shop", 3, account.account, account.batch)
        got_sse = await asyncio.wait_for(sse, 10)
        got_ndjson = await asyncio.wait_for(ndjson, 10)
        assert [data["event"]["message"]["message_id"] for _, data in got_sse] == [first.message_id, second.message_id]  # type: ignore[index]
        ndjson_ids = [line["result"]["event"]["message"]["message_id"] for line in got_ndjson]  # type: ignore[index]
        assert ndjson_ids == [first.message_id, second.message_id]
        assert got_sse[0][1]["event"]["type"] == "new_message"  # type: ignore[index]

        # The SSE client went away after the first event; while away, two more arrive.
        last_seen = got_sse[0][0]
        third = account.add_message(account.batch.conversations[2], NOW + 30, inbound=True)
        await sync.push_snapshot("shop", 4, account.account, account.batch)
        ready = asyncio.Event()
        resumed = await asyncio.wait_for(sse_events(http, url, {"Last-Event-ID": last_seen}, 2, ready), 10)
        assert [data["event"]["message"]["message_id"] for _, data in resumed] == [second.message_id, third.message_id]  # type: ignore[index]

        too_old = await http.get("/api/im/events", params={"after_event_id": "nonsense"})
        assert too_old.status_code == 400 and too_old.json()["status_msg"].startswith("after_event_id:")


async def test_the_friendly_follower_survives_a_master_restart(tmp_path: Path) -> None:
    """Across a restart the follower is told it may have missed events, and follows anew."""
    from imsync_client import EventsMissed, ImClient, Inbox
    from services.master.sync.hub import SyncConfig

    from .sync_harness import MasterHandle

    master = MasterHandle(tmp_path, SyncConfig(heartbeat_interval=0.3, lease_duration=1.0))
    await master.start()
    client = ImClient.connect(master.address)
    seen: list[ev.Event] = []
    missed: list[str] = []

    async def follow() -> None:
        while True:
            try:
                async for item in Inbox(client).events(types=[ev.EVENT_TYPE_ACCOUNT_STATUS_CHANGED]):
                    seen.append(item)
            except EventsMissed as error:
                missed.append(str(error))  # a console would reload its lists here

    follower = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.2)
        await master.store.set_presence("shop", "w", True)
        async with asyncio.timeout(5):
            while len(seen) < 1:
                await asyncio.sleep(0.02)
        await master.restart()
        async with asyncio.timeout(10):
            while not missed:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # following anew
        await master.store.set_presence("shop", "w", False)
        async with asyncio.timeout(10):
            while len(seen) < 2:
                await asyncio.sleep(0.05)
        assert [x.account.online for x in seen] == [True, False]
        assert "earlier run" in missed[0]
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await client.close()
        await master.stop()
