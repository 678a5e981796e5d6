"""Two masters in this process over one real redis-server: a worker syncs to A, a client
reads, listens and replies through B. (The processes, killed and restarted, are in
test_e2e_redis_masters.py.)"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import events_pb2 as ev
from imsync.v1 import events_pb2_grpc as ev_grpc
from imsync.v1 import replies_pb2 as rep
from imsync.v1 import sync_pb2
from imsync.v1 import threads_pb2 as thr
from imsync_client import ImClient, SyncClient, SyncRefused, walk
from services.common.rpc_errors import reason_of
from services.common.sample import SampleAccount
from services.gateway.app import Gateway, create_app
from services.master.auth.api_keys import create_api_key
from services.master.model.retention import KEEP_EVERYTHING
from services.master.redis.store import RedisStore
from services.master.server import Master as MasterProcess
from services.master.server import MasterConfig
from services.master.sync.hub import SyncConfig

from .conftest import NOW, token_for, write_tokens
from .sync_harness import crawl_of, master_copy, view_copy
from .waiting import eventually

_prefixes = itertools.count(1)


class Pair:
    """Masters A and B on one Redis, each with a channel."""

    def __init__(self, a: MasterProcess, b: MasterProcess, a_address: str, b_address: str) -> None:
        self.a, self.b = a, b
        self.a_channel = grpc.aio.insecure_channel(a_address)
        self.b_channel = grpc.aio.insecure_channel(b_address)
        self.im_b = ImClient(self.b_channel)

    def sync_a(self, worker_id: str = "test-worker") -> SyncClient:
        return SyncClient(self.a_channel, worker_id, token=token_for(worker_id))


@pytest_asyncio.fixture
async def pair(tmp_path: Path, redis_url: str) -> AsyncIterator[Pair]:
    prefix = f"pair{next(_prefixes)}"
    tokens = write_tokens(tmp_path / "tokens.toml")
    masters = []
    for name in ("a", "b"):
        config = MasterConfig(
            listen="127.0.0.1:0",
            worker_tokens=tokens,
            sync=SyncConfig(heartbeat_interval=0.5, lease_duration=2.0),
            retention=KEEP_EVERYTHING,
            store=redis_url,
            redis_prefix=prefix,
            master_id=name,
        )
        master = MasterProcess(config)
        masters.append((master, f"127.0.0.1:{await master.start()}"))
    (a, a_address), (b, b_address) = masters
    pair = Pair(a, b, a_address, b_address)
    try:
        yield pair
    finally:
        await pair.a_channel.close(grace=None)
        await pair.b_channel.close(grace=None)
        await a.stop()
        await b.stop()


def _sample(account_id: str, seed: int) -> SampleAccount:
    sample = SampleAccount(account_id, seed=seed, now=NOW)
    sample.fill(conversations=8, messages_per_conversation=3, contents=3, comments_per_content=3)
    return sample


async def test_a_client_on_b_sees_what_a_worker_on_a_synced(pair: Pair) -> None:
    samples = [_sample("shop-1", 1), _sample("shop-2", 2)]
    sync = pair.sync_a()
    await sync.open({s.account_id: 0 for s in samples})
    for sample in samples:
        assert await sync.push_snapshot(sample.account_id, 1, sample.account, sample.batch) == 1
    for sample in samples:
        # B's store is A's: what B serves is exactly the worker's crawl.
        assert await master_copy(pair.b.store, sample.account_id) == view_copy(crawl_of(sample), sample.account_id)
        listed = [
            c
            async for c in walk(
                pair.im_b.list_conversations,
                conv.ListConversationsRequest(account_id=sample.account_id, count=3),
                "conversations",
            )
        ]
        assert len(listed) == len(sample.batch.conversations)
    await sync.close()


async def test_events_of_a_reach_clients_of_b_and_resume_on_either(pair: Pair) -> None:
    sample = _sample("shop-1", 3)
    sync = pair.sync_a()
    await sync.open({"shop-1": 0})
    assert await sync.push_snapshot("shop-1", 1, sample.account, sample.batch) == 1

    heard: list[ev.Event] = []

    async def listen(im: ImClient, after: str, wanted: int) -> None:
        async for response in im.stream_events(ev.StreamEventsRequest(account_ids=["shop-1"], after_event_id=after)):
            event = response.event
            if event.type == ev.EVENT_TYPE_NEW_MESSAGE:
                heard.append(event)
                if len(heard) >= wanted:
                    return

    listener = asyncio.create_task(listen(pair.im_b, "", 1))
    await asyncio.sleep(0.3)  # subscribed
    before = {m.message_id for m in sample.batch.messages}
    sample.grow(NOW + 100)
    assert await sync.push_snapshot("shop-1", 2, sample.account, sample.batch) == 2
    await asyncio.wait_for(listener, 10)
    assert heard[0].message.message_id in {m.message_id for m in sample.batch.messages} - before

    # The id B gave resumes on A: the next event, and only it, comes.
    resumed = asyncio.create_task(listen(ImClient(pair.a_channel), heard[0].event_id, 2))
    sample.grow(NOW + 200)
    assert await sync.push_snapshot("shop-1", 3, sample.account, sample.batch) == 3
    await asyncio.wait_for(resumed, 10)
    first, second = (tuple(map(int, event.event_id.split("-"))) for event in heard[:2])
    assert second > first
    await sync.close()


async def test_a_reply_sent_through_b_is_performed_by_the_worker_on_a(pair: Pair) -> None:
    sample = _sample("shop-1", 4)
    sync = pair.sync_a()
    await sync.open({"shop-1": 0})
    assert await sync.push_snapshot("shop-1", 1, sample.account, sample.batch) == 1
    conversation = sample.batch.conversations[0]

    states: list[int] = []

    async def listen() -> None:
        async for response in pair.im_b.stream_events(ev.StreamEventsRequest(account_ids=["shop-1"])):
            event = response.event
            if event.type == ev.EVENT_TYPE_REPLY_STATE_CHANGED:
                states.append(event.reply.state)
                if event.reply.state == rep.REPLY_STATE_SENT:
                    return

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.3)
    sent = await pair.im_b.send_reply(
        rep.SendReplyRequest(
            request_id="r-1",
            send_message=sync_pb2.SendMessage(conversation_id=conversation.conversation_id, text="hello"),
        )
    )
    assert sent.reply.state == rep.REPLY_STATE_PENDING
    # The worker, connected to A, is handed the command B took.
    command = await asyncio.wait_for(sync.next_command(), 10)
    assert command.request_id == "r-1" and command.send_message.text == "hello"
    await sync.write(
        sync_pb2.SyncDataRequest(
            command_result=sync_pb2.CommandResult(
                request_id="r-1", account_id="shop-1", outcome=sync_pb2.COMMAND_OUTCOME_SENT, created_id="m-new"
            )
        )
    )
    await asyncio.wait_for(listener, 10)
    assert states == [rep.REPLY_STATE_PENDING, rep.REPLY_STATE_SENT], "each change announced once"
    got = await pair.im_b.get_reply(rep.GetReplyRequest(request_id="r-1"))
    assert (got.reply.state, got.reply.created_id) == (rep.REPLY_STATE_SENT, "m-new")
    # The same request id again is the same reply; with another text it is refused.
    again = await pair.im_b.send_reply(
        rep.SendReplyRequest(
            request_id="r-1",
            send_message=sync_pb2.SendMessage(conversation_id=conversation.conversation_id, text="hello"),
        )
    )
    assert again.reply.state == rep.REPLY_STATE_SENT
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await pair.im_b.send_reply(
            rep.SendReplyRequest(
                request_id="r-1",
                send_message=sync_pb2.SendMessage(conversation_id=conversation.conversation_id, text="other"),
            )
        )
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await sync.close()


async def test_a_second_worker_on_b_is_refused_an_account_a_worker_holds_on_a(pair: Pair) -> None:
    sample = _sample("shop-1", 5)
    owner = pair.sync_a("worker-a")
    await owner.open({"shop-1": 0})
    assert await owner.push_snapshot("shop-1", 1, sample.account, sample.batch) == 1
    other = SyncClient(pair.b_channel, "worker-b", token=token_for("worker-b"))
    welcome = await other.open({"shop-1": 0})
    assert "shop-1" not in welcome
    await other.close()
    await owner.close()


async def test_a_dead_master_s_workers_are_shown_offline_once_their_leases_lapse(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, prefix=f"orphans{next(_prefixes)}")
    try:
        for account_id in ("kept", "orphaned"):
            await store.set_presence(account_id, "worker-1", True)
        # A live lease for one; the other's master died and its lease lapsed.
        await store.redis.hset(store.keys("kept").lease, mapping={"master": "a", "worker": "worker-1", "epoch": "1"})
        assert await store.show_orphans_offline() == 1
        assert (await store.get_account("kept")).online
        assert not (await store.get_account("orphaned")).online
        assert await store.show_orphans_offline() == 0
    finally:
        await store.close()


async def test_events_a_dead_master_left_in_an_outbox_reach_the_stream(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, prefix=f"outbox{next(_prefixes)}")
    try:
        await store.set_presence("acc", "worker-1", True)
        before = await store.redis.xlen(store.events_key)
        # As if a master committed a change and died before moving its event on.
        await store.redis.rpush(store.keys("acc").outbox, b"\x08\x01")
        assert await store.flush_outboxes() == 1
        assert await store.redis.xlen(store.events_key) == before + 1
        assert await store.flush_outboxes() == 0
    finally:
        await store.close()


async def test_two_masters_flushing_one_outbox_move_each_event_once_in_order(redis_url: str) -> None:
    prefix = f"outbox{next(_prefixes)}"
    stores = [RedisStore.from_url(redis_url, prefix=prefix) for _ in range(2)]
    try:
        queued = [f"event-{n:03}".encode() for n in range(250)]
        await stores[0].redis.rpush(stores[0].keys("acc").outbox, *queued)
        await asyncio.gather(*(store.flush_outbox(store.keys("acc")) for store in stores))
        entries = await stores[0].redis.xrange(stores[0].events_key) or []
        assert [fields[b"e"] for _, fields in entries if fields is not None] == queued
        assert await stores[0].redis.llen(stores[0].keys("acc").outbox) == 0
    finally:
        for store in stores:
            await store.close()


async def test_a_stream_fenced_by_a_newer_claim_on_another_master_cannot_write(pair: Pair) -> None:
    """The same worker reconnects through B while its old stream on A still lives (a
    partition): B's claim takes a newer epoch, and A's store commit refuses the old one."""
    sample = _sample("shop-1", 6)
    old = pair.sync_a()
    await old.open({"shop-1": 0})
    assert await old.push_snapshot("shop-1", 1, sample.account, sample.batch) == 1
    new = SyncClient(pair.b_channel, "test-worker", token=token_for("test-worker"))
    assert await new.open({"shop-1": 1}) == {"shop-1": 1}

    sample.grow(NOW + 500)
    delta = sync_pb2.Delta(account_id="shop-1", base_version=1, version=2)
    delta.upserts.messages.append(sample.batch.messages[-1])
    with pytest.raises(SyncRefused) as refused:
        await old.send([sync_pb2.SyncDataRequest(delta=delta)])
    assert reason_of(refused.value.status) == "NOT_OWNER"
    assert (await pair.b.store.get_account("shop-1")).version == 1
    assert await new.send([sync_pb2.SyncDataRequest(delta=delta)]) == 2
    await new.close()
    await old.close()


async def test_a_gateway_in_front_of_masters_over_redis_keeps_no_answers(pair: Pair) -> None:
    """B cannot hear of A's changes in time to tell a gateway before A acknowledges them."""
    app = create_app(channel=pair.b_channel, watch=True)
    gateway: Gateway = app.state.gateway
    async with gateway.lifespan(app):
        assert gateway.watch is not None
        await eventually(lambda: gateway.watch is not None and gateway.watch.refused != "")
        assert gateway.watch.refused.startswith("FAILED_PRECONDITION")
        assert gateway.watch.stamp("") is None


async def test_two_agents_claiming_one_conversation_through_two_masters_at_once(tmp_path: Path, redis_url: str) -> None:
    """王芳 claims through A while 李雷 claims through B, many times over: each time one owns
    it and the other is told who, whichever master answered."""
    keys_file = tmp_path / "api-keys.toml"
    keys = {
        "fang": create_api_key(keys_file, "fang", ["*"], ["read", "reply"], agent="王芳"),
        "lei": create_api_key(keys_file, "lei", ["*"], ["read", "reply"], agent="李雷"),
    }
    prefix = f"claims{next(_prefixes)}"
    masters = []
    for name in ("a", "b"):
        config = MasterConfig(
            listen="127.0.0.1:0",
            worker_tokens=write_tokens(tmp_path / "tokens.toml"),
            api_keys=keys_file,
            retention=KEEP_EVERYTHING,
            rate_limit=0,
            store=redis_url,
            redis_prefix=prefix,
            master_id=name,
        )
        master = MasterProcess(config)
        masters.append((master, await master.start()))
    (a, a_port), (b, b_port) = masters
    sample = _sample("shop-1", 9)
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{a_port}") as on_a,
            grpc.aio.insecure_channel(f"127.0.0.1:{b_port}") as on_b,
        ):
            sync = SyncClient(on_a, "test-worker", token=token_for("test-worker"))
            await sync.open({"shop-1": 0})
            await sync.push_snapshot("shop-1", 1, sample.account, sample.batch)
            await sync.close()
            clients = {"fang": ImClient(on_a), "lei": ImClient(on_b)}

            async def claim(who: str, conversation_id: str) -> str:
                try:
                    answer = await clients[who].claim_conversation(
                        thr.ClaimConversationRequest(account_id="shop-1", conversation_id=conversation_id),
                        metadata=(("authorization", f"Bearer {keys[who]}"),),
                    )
                    return answer.conversation.assignee
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
                    return f"refused: {error.details()}"

            for conversation in sample.batch.conversations:
                outcomes = await asyncio.gather(*(claim(who, conversation.conversation_id) for who in ("fang", "lei")))
                owners = [o for o in outcomes if not o.startswith("refused")]
                assert len(owners) == 1, outcomes
                refused = next(o for o in outcomes if o.startswith("refused"))
                assert owners[0] in refused, "the other is told who owns it"
    finally:
        await a.stop()
        await b.stop()


async def test_a_key_gets_its_rate_in_total_across_two_masters(tmp_path: Path, redis_url: str) -> None:
    """A key limited to R requests a second, calling A and B in turn as fast as it can, is
    answered about R a second in all (its burst of 2R, then R a second), not R by each."""
    keys_file = tmp_path / "api-keys.toml"
    key = create_api_key(keys_file, "busy", ["*"], ["read"])
    rate, seconds = 10.0, 2.0
    prefix = f"rates{next(_prefixes)}"
    masters = []
    for name in ("a", "b"):
        config = MasterConfig(
            listen="127.0.0.1:0",
            api_keys=keys_file,
            retention=KEEP_EVERYTHING,
            rate_limit=rate,
            store=redis_url,
            redis_prefix=prefix,
            master_id=name,
        )
        master = MasterProcess(config)
        masters.append((master, await master.start()))
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{masters[0][1]}") as on_a,
            grpc.aio.insecure_channel(f"127.0.0.1:{masters[1][1]}") as on_b,
        ):
            clients = [ImClient(on_a), ImClient(on_b)]
            answered = refused = 0
            loop = asyncio.get_running_loop()
            started = loop.time()
            while loop.time() - started < seconds:
                try:
                    await clients[(answered + refused) % 2].list_accounts(
                        acc.ListAccountsRequest(), metadata=(("authorization", f"Bearer {key}"),)
                    )
                    answered += 1
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    refused += 1
            elapsed = loop.time() - started
    finally:
        for master, _ in masters:
            await master.stop()
    allowed = 2 * rate + rate * elapsed  # the burst, then the rate
    assert refused > answered, "the key was held back"
    assert allowed * 0.8 <= answered <= allowed * 1.1, (answered, allowed)


async def test_a_key_holds_its_most_event_streams_across_two_masters(tmp_path: Path, redis_url: str) -> None:
    """A key allowed two event streams opens them through A; a third through B is refused,
    and once one on A ends, B lets it open."""
    keys_file = tmp_path / "api-keys.toml"
    key = create_api_key(keys_file, "watcher", ["*"], ["read"])
    prefix = f"seats{next(_prefixes)}"
    masters = []
    for name in ("a", "b"):
        config = MasterConfig(
            listen="127.0.0.1:0",
            api_keys=keys_file,
            retention=KEEP_EVERYTHING,
            rate_limit=0,
            max_streams_per_key=2,
            store=redis_url,
            redis_prefix=prefix,
            master_id=name,
        )
        master = MasterProcess(config)
        masters.append((master, await master.start()))
    metadata = (("authorization", f"Bearer {key}"),)
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{masters[0][1]}") as on_a,
            grpc.aio.insecure_channel(f"127.0.0.1:{masters[1][1]}") as on_b,
        ):
            stub_a, stub_b = ev_grpc.EventServiceStub(on_a), ev_grpc.EventServiceStub(on_b)
            open_on_a = [stub_a.StreamEvents(ev.StreamEventsRequest(), metadata=metadata) for _ in range(2)]
            for call in open_on_a:
                await call.initial_metadata()  # open: its seat is taken
            third = stub_b.StreamEvents(ev.StreamEventsRequest(), metadata=metadata)
            ended = asyncio.ensure_future(third.code())
            await asyncio.wait({ended}, timeout=5)
            third.cancel()
            assert ended.done() and ended.result() == grpc.StatusCode.RESOURCE_EXHAUSTED, "a third stream is refused"
            open_on_a[0].cancel()

            async def opens_on_b() -> bool:
                call = stub_b.StreamEvents(ev.StreamEventsRequest(), metadata=metadata)
                try:
                    await call.initial_metadata()
                    return not call.done()  # open, not refused
                finally:
                    call.cancel()

            await eventually(opens_on_b)
            open_on_a[1].cancel()
    finally:
        for master, _ in masters:
            await master.stop()
