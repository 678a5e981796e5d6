"""What attacks from outside found, each closed: a revoked key's open event streams, a worker
answering another's reply, two identities in one request, memory a caller can tie up,
a version that wedges an account, 5xx for a client's mistake, request ids shared across
accounts, and oversized sync messages. Each test failed on the code before the fix."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import conversations_pb2_grpc, sync_pb2
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import replies_pb2 as rep
from imsync_client import ImClient, SyncClient
from services.common.rpc_errors import reason_of
from services.common.sample import SampleAccount
from services.gateway.app import create_app
from services.gateway.cache import Answer, ResponseCache
from services.master.auth.api_keys import create_api_key, revoke_api_key
from services.master.auth.worker_tokens import add_worker_token
from services.master.in_process import InProcessChannel
from services.master.model.events import EventBus
from services.master.model.retention import KEEP_EVERYTHING
from services.master.server import Master, MasterConfig
from services.master.sync.hub import SyncConfig

from .conftest import NOW, token_for, write_tokens

MiB = 1024 * 1024


class Rig:
    def __init__(
        self, master: Master, channel: grpc.aio.Channel, keys: dict[str, str], keys_file: Path, tokens: dict[str, str]
    ) -> None:
        self.master, self.channel, self.keys, self.keys_file = master, channel, keys, keys_file
        # Workers limited to one account each: worker-a to shop-a, worker-b to shop-b.
        self.tokens = tokens
        self.im = ImClient(channel)
        self.a = SampleAccount("shop-a", seed=1, now=NOW)
        self.b = SampleAccount("shop-b", seed=2, now=NOW)

    def as_key(self, name: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[name]}"),)

    def header(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


async def _rig(tmp_path: Path, **sync: Any) -> Rig:
    keys_file = tmp_path / "api-keys.toml"
    keys = {
        "a-reader": create_api_key(keys_file, "a-reader", ["shop-a"], ["read"]),
        "a-agent": create_api_key(keys_file, "a-agent", ["shop-a"], ["read", "reply"]),
        "b-agent": create_api_key(keys_file, "b-agent", ["shop-b"], ["read", "reply"]),
        "admin": create_api_key(keys_file, "admin", ["*"], ["read", "reply"]),
    }
    tokens = tmp_path / "tokens.toml"
    write_tokens(tokens)
    limited = {worker: add_worker_token(tokens, worker, [f"shop-{worker[-1]}"]) for worker in ("worker-a", "worker-b")}
    config = MasterConfig(
        listen="127.0.0.1:0",
        worker_tokens=tokens,
        api_keys=keys_file,
        rate_limit=0,
        retention=KEEP_EVERYTHING,
        sync=SyncConfig(heartbeat_interval=0.5, lease_duration=2.0, **sync),
        data_dir=tmp_path / "data",
    )
    master = Master(config)
    port = await master.start()
    return Rig(master, grpc.aio.insecure_channel(f"127.0.0.1:{port}"), keys, keys_file, limited)


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    made = await _rig(tmp_path)
    loader = SyncClient(made.channel, "test-worker", token=token_for("test-worker"))
    await loader.open({"shop-a": 0, "shop-b": 0})
    for account in (made.a, made.b):
        account.fill(conversations=3, messages_per_conversation=2, contents=2, comments_per_content=2)
        await loader.push_snapshot(account.account_id, 1, account.account, account.batch)
    await loader.close()
    try:
        yield made
    finally:
        await made.channel.close(grace=None)
        await made.master.stop()


def gateway_of(rig: Rig, kind: str) -> httpx.AsyncClient:
    channel: Any = rig.channel if kind == "grpc" else InProcessChannel(rig.master.im_servicers, rig.master.keys)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(channel=channel)), base_url="http://gw", timeout=10
    )


# 1 ------------------------------------------------------------------------ revocation


async def test_a_revoked_key_loses_its_open_grpc_event_stream(rig: Rig) -> None:
    stream = rig.im.stream_events(ev.StreamEventsRequest(), metadata=rig.as_key("a-reader"))
    ended: asyncio.Future[grpc.StatusCode] = asyncio.get_running_loop().create_future()

    async def follow() -> None:
        try:
            async for _ in stream:
                pass
        except grpc.aio.AioRpcError as error:
            ended.set_result(error.code())

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    assert revoke_api_key(rig.keys_file, "a-reader")
    async with asyncio.timeout(1.0):
        assert await ended == grpc.StatusCode.UNAUTHENTICATED
    await follower


@pytest_asyncio.fixture(params=["gateway process", "embedded gateway"])
async def deployment(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Path, str]]:
    """A master with API keys and its gateway, in processes: (gateway base URL, keys file, a key of shop-a)."""
    from services import processes

    keys_file = tmp_path / "api-keys.toml"
    key = create_api_key(keys_file, "a-reader", ["shop-a"], ["read"])
    args = [
        "master",
        "--listen",
        "127.0.0.1:0",
        "--worker-tokens",
        str(write_tokens(tmp_path / "tokens.toml")),
        "--api-keys",
        str(keys_file),
    ]
    if request.param == "embedded gateway":
        master = await processes.start([*args, "--gateway-listen", "127.0.0.1:0", "--gateway-console", "none"])
        try:
            yield f"http://{master.address}", keys_file, key
        finally:
            await master.stop()
        return
    master = await processes.start(args)
    gateway = await processes.start(["gateway", "--listen", "127.0.0.1:0", "--master", master.address])
    try:
        yield f"http://{gateway.address}", keys_file, key
    finally:
        await gateway.stop()
        await master.stop()


@pytest.mark.e2e
@pytest.mark.parametrize("accept", ["text/event-stream", "application/json"])
async def test_a_revoked_key_loses_its_open_http_event_stream_with_a_last_error(
    deployment: tuple[str, Path, str], accept: str
) -> None:
    base, keys_file, key = deployment
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        async with http.stream(
            "GET", "/api/im/events", headers={"Authorization": f"Bearer {key}", "Accept": accept}
        ) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            await asyncio.sleep(0.5)
            revoke_api_key(keys_file, "a-reader")
            last = ""
            async with asyncio.timeout(1.5):
                async for line in lines:
                    if line.strip() and not line.startswith(":"):
                        last = line
    body = json.loads(last.removeprefix("data: "))
    error = body.get("error") or body
    assert error["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0], body
    assert "revoked" in error["message"]


async def test_a_key_whose_accounts_change_loses_its_stream(rig: Rig) -> None:
    ended: asyncio.Future[grpc.StatusCode] = asyncio.get_running_loop().create_future()

    async def follow() -> None:
        try:
            async for _ in rig.im.stream_events(ev.StreamEventsRequest(), metadata=rig.as_key("a-agent")):
                pass
        except grpc.aio.AioRpcError as error:
            ended.set_result(error.code())

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    text = rig.keys_file.read_text()
    rig.keys_file.write_text(
        text.replace(
            'accounts = ["shop-a"]\nscopes = ["read", "reply"]', 'accounts = ["shop-a"]\nscopes = ["reply"]', 1
        )
    )
    async with asyncio.timeout(1.0):
        assert await ended == grpc.StatusCode.PERMISSION_DENIED
    await follower


# 2 ----------------------------------------------------------- another worker's reply


async def test_a_worker_cannot_complete_a_reply_it_was_not_given(rig: Rig) -> None:
    conversation = rig.b.batch.conversations[0].conversation_id
    await rig.im.send_reply(
        rep.SendReplyRequest(
            account_id="shop-b",
            request_id="r-b",
            send_message=sync_pb2.SendMessage(conversation_id=conversation, text="hi"),
        ),
        metadata=rig.as_key("b-agent"),
    )
    intruder = SyncClient(rig.channel, "worker-a", token=rig.tokens["worker-a"])
    await intruder.open({"shop-a": 0})
    for naming in ("shop-b", "shop-a"):
        await intruder.write(
            sync_pb2.SyncDataRequest(
                command_result=sync_pb2.CommandResult(
                    request_id="r-b",
                    account_id=naming,
                    outcome=sync_pb2.COMMAND_OUTCOME_SENT,
                    created_id="made-up",
                )
            )
        )
        nack = (await intruder.receive()).nack
        assert nack.status.message.startswith("command_result."), nack.status.message
    reply = (await rig.im.get_reply(rep.GetReplyRequest(request_id="r-b"), metadata=rig.as_key("b-agent"))).reply
    assert reply.state == rep.REPLY_STATE_PENDING and not reply.created_id
    # The worker it was delivered to completes it.
    owner = SyncClient(rig.channel, "worker-b", token=rig.tokens["worker-b"])
    await owner.open({"shop-b": 0})
    command = await owner.next_command()
    await owner.write(
        sync_pb2.SyncDataRequest(
            command_result=sync_pb2.CommandResult(
                request_id=command.request_id,
                account_id="shop-b",
                outcome=sync_pb2.COMMAND_OUTCOME_SENT,
                created_id="c-1",
            )
        )
    )
    async with asyncio.timeout(5):
        while (
            await rig.im.get_reply(rep.GetReplyRequest(request_id="r-b"), metadata=rig.as_key("b-agent"))
        ).reply.state != rep.REPLY_STATE_SENT:
            await asyncio.sleep(0.05)
    await intruder.close()
    await owner.close()


# 3 ------------------------------------------------------------- one identity a request


@pytest.mark.parametrize("kind", ["grpc", "in-process"])
async def test_two_identities_in_one_request_are_refused_before_anything(rig: Rig, kind: str) -> None:
    async with gateway_of(rig, kind) as http:
        both = rig.header("a-reader") | {"Grpc-Metadata-Authorization": f"Bearer {rig.keys['admin']}"}
        refused = await http.get("/api/im/conversations", params={"account_id": "shop-b"}, headers=both)
        assert refused.status_code == 400 and refused.json()["status_msg"].startswith("Authorization:")
        assert (
            await http.get("/api/im/conversations", params={"account_id": "shop-b"}, headers=rig.header("a-reader"))
        ).status_code == 403
    with pytest.raises(grpc.aio.AioRpcError) as twice:
        await rig.im.list_accounts(acc.ListAccountsRequest(), metadata=rig.as_key("a-reader") + rig.as_key("admin"))
    assert twice.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_answers_are_kept_under_the_identity_the_master_authorized(rig: Rig) -> None:
    """With a cache in front (the embedded gateway's), a key of A never gets B's page."""
    from services.embedded import embedded_app

    app, cache = embedded_app(rig.master, console=None)
    assert cache is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        page = "/api/im/conversations?account_id=shop-b"
        assert (await http.get(page, headers=rig.header("admin"))).status_code == 200  # kept now
        both = rig.header("a-reader") | {"Grpc-Metadata-Authorization": f"Bearer {rig.keys['admin']}"}
        assert (await http.get(page, headers=both)).status_code == 400
        assert (
            await http.get(page, headers={"Grpc-Metadata-Authorization": f"Bearer {rig.keys['a-reader']}"})
        ).status_code == 403
        assert (await http.get(page, headers=rig.header("a-reader"))).status_code == 403


# 4 --------------------------------------------------------------------- bounded memory


def test_the_response_cache_holds_its_byte_budget_and_a_caller_its_share() -> None:
    cache = ResponseCache(lambda account: 1, lambda metadata: None, max_bytes=1 * MiB, key_share=0.25)
    body = b"x" * 10_000
    for index in range(1000):  # one caller varying a parameter nobody reads
        cache.put(("/p", f"unused={index}".encode(), "im", "attacker"), "a", 1, Answer(body, {"ETag": '"1"'}))
    assert cache.bytes <= 0.25 * MiB + 20_000
    for index in range(50):
        cache.put(("/p", f"q={index}".encode(), "im", "team"), "a", 1, Answer(body, {"ETag": '"1"'}))
    assert cache.get(("/p", b"q=49", "im", "team")) is not None, "the attacker pushed out only its own answers"
    assert cache.bytes <= 1 * MiB


def test_the_event_history_holds_its_byte_budget() -> None:
    bus = EventBus(history=10_000, history_bytes=100_000)
    for _ in range(2000):
        bus.publish(ev.Event(type=ev.EVENT_TYPE_NEW_MESSAGE, account_id="a", message=e.Message(content="长" * 300)))
    assert sum(event.ByteSize() for event in bus.kept_events()) <= 100_000


async def test_snapshot_chunks_never_marked_last_are_bounded_in_bytes(tmp_path: Path) -> None:
    rig = await _rig(tmp_path, max_pending_bytes=2 * MiB)
    try:
        worker = SyncClient(rig.channel, "test-worker", token=token_for("test-worker"))
        await worker.open({"shop-a": 0})
        chunk = sync_pb2.EntityBatch(
            messages=[e.Message(message_id=f"m{i}", conversation_id="c", content="x" * 900) for i in range(1000)]
        )
        for index in range(10):  # 9 MiB of a snapshot never marked last
            await worker.write(
                sync_pb2.SyncDataRequest(
                    snapshot=sync_pb2.Snapshot(account_id="shop-a", version=1, chunk_index=index, entities=chunk)
                )
            )
        refused = (await worker.receive()).nack  # one Nack; its later chunks are dropped quietly
        assert refused.status.message.startswith("snapshot:") and "bytes" in refused.status.message
        assert rig.master.hub.pending_bytes["test-worker"] == 0, "what it held is let go"
        # The stream goes on: a whole snapshot of a sane size is taken.
        rig.a.fill(conversations=1, messages_per_conversation=1, contents=1, comments_per_content=1)
        assert await worker.push_snapshot("shop-a", 2, rig.a.account, rig.a.batch) == 2
        await worker.close()
    finally:
        await rig.channel.close(grace=None)
        await rig.master.stop()


async def test_a_hello_may_name_and_create_only_so_many_accounts(tmp_path: Path) -> None:
    rig = await _rig(tmp_path, max_hello_accounts=100, max_accounts=50)
    try:
        worker = SyncClient(rig.channel, "test-worker", token=token_for("test-worker"))
        with pytest.raises(Exception) as too_many:
            await worker.open({f"ghost-{i}": 0 for i in range(101)})
        assert "hello.accounts" in str(too_many.value)
        await worker.close()
        worker = SyncClient(rig.channel, "test-worker", token=token_for("test-worker"))
        granted = await worker.open({f"ghost-{i}": 0 for i in range(60)})
        assert len(granted) == 50, "the master holds at most 50 accounts"
        assert len(worker.refused) == 10
        assert all(reason_of(r.status) == "ACCOUNT_LIMIT" for r in worker.refused.values())
        await worker.close()
    finally:
        await rig.channel.close(grace=None)
        await rig.master.stop()
    # Accounts a worker only named are not kept across a clean stop.
    again = Master(rig.master.config)
    await again.start()
    try:
        assert await again.store.account_count() == 0
    finally:
        await again.stop()


# 5 -------------------------------------------------------------------------- versions


async def test_a_version_far_past_the_applied_one_is_refused_and_an_operator_can_reset(rig: Rig) -> None:
    from services.master.admin import reset_version_in_journal

    worker = SyncClient(rig.channel, "test-worker", token=token_for("test-worker"))
    await worker.open({"shop-a": 0})
    wedge = sync_pb2.Delta(account_id="shop-a", base_version=1, version=2**64 - 1)
    await worker.write(sync_pb2.SyncDataRequest(delta=wedge))
    nack = (await worker.receive()).nack
    assert nack.status.message.startswith("delta.version:") and reason_of(nack.status) == "VERSION_JUMP"
    assert await worker.push_snapshot("shop-a", 2, rig.a.account, rig.a.batch) == 2, "the account still moves on"
    await worker.close()
    read = rig.a.batch.conversations[0].conversation_id
    await rig.im.mark_conversation_read(
        conv.MarkConversationReadRequest(account_id="shop-a", conversation_id=read), metadata=rig.as_key("a-agent")
    )
    await rig.channel.close(grace=None)
    await rig.master.stop()
    assert await reset_version_in_journal(rig.master.config.data_dir, "shop-a") == 2  # type: ignore[arg-type]
    again = Master(rig.master.config)
    port = await again.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        worker = SyncClient(channel, "test-worker", token=token_for("test-worker"))
        assert (await worker.open({"shop-a": 0}))["shop-a"] == 0
        assert await worker.push_snapshot("shop-a", 1, rig.a.account, rig.a.batch) == 1
        shown = await ImClient(channel).get_conversation(
            conv.GetConversationRequest(account_id="shop-a", conversation_id=read), metadata=rig.as_key("a-agent")
        )
        assert shown.conversation.unread_count == 0, "the read marks outlived the reset"
        await worker.close()
    await again.stop()


# 6 ------------------------------------------------------- a client's mistake is a 4xx


@pytest.mark.parametrize("kind", ["grpc", "in-process"])
async def test_malformed_headers_and_bodies_are_4xx(rig: Rig, kind: str) -> None:
    key = rig.keys["a-agent"]
    cases: list[tuple[dict[str, str], int]] = [
        ({"Authorization": f"Bearer {key}\t"}, 400),
        ({"Authorization": "Bearer ключ"}, 400),
        ({"Authorization": f"Bearer {key}", "Grpc-Metadata-X-Note": "ключ"}, 400),
        ({"Authorization": f"Bearer {key}", "Grpc-Metadata-Trace-Bin": "***"}, 400),
        ({"Authorization": f"Bearer {key}", "Grpc-Metadata-Grpc-Status": "0"}, 400),
        ({"Authorization": f"Bearer {key}", "Grpc-Metadata-Content-Type": "text/plain"}, 400),
        ({"Authorization": f"Bearer {key}", "Grpc-Metadata-Note": "x" * 60_000}, 431),
        ({"Authorization": f"Bearer {key}", **{f"Grpc-Metadata-N{i}": "v" * 20 for i in range(1000)}}, 431),
        ({"Authorization": f"Bearer {key}", "Grpc-Timeout": "99999999H"}, 200),
        (
            {
                "Authorization": f"Bearer {key}",
                "X-Forwarded-For": ", ".join(f"10.0.{i // 250}.{i % 250}" for i in range(10_000)),
            },
            200,
        ),
    ]
    async with gateway_of(rig, kind) as http:
        for headers, status in cases:
            raw = [(name.encode(), value.encode()) for name, value in headers.items()]  # UTF-8 where not ASCII
            response = await http.get("/api/im/conversations", params={"account_id": "shop-a"}, headers=raw)
            assert response.status_code == status, (list(headers)[-1], response.status_code, response.text[:200])
        deep = b'{"account_id": "shop-a", "ids": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        response = await http.put(
            "/api/im/unified-messages/read-many", content=deep, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 400 and "nested" in response.json()["status_msg"]


@pytest.mark.parametrize("kind", ["grpc", "in-process"])
async def test_an_id_too_long_to_echo_is_still_its_own_error(rig: Rig, kind: str) -> None:
    """A status echoes what the caller sent ("account '...' not found"); an id of 6,000
    characters (three bytes each in UTF-8, nine percent-encoded in grpc-message) made
    trailers the gateway's channel refused, answered as its own 429. It is shortened."""
    long_id = "店" * 6_000
    async with gateway_of(rig, kind) as http:
        for name, status in (("admin", 404), ("a-agent", 403)):
            response = await http.get("/api/im/conversations", params={"account_id": long_id}, headers=rig.header(name))
            assert response.status_code == status, (name, response.status_code, response.text[:300])
            message = response.json()["status_msg"]
            assert "characters left out" in message and len(message) < 1_000, message[:300]
    stub = conversations_pb2_grpc.ConversationServiceStub(rig.channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListConversations(conv.ListConversationsRequest(account_id=long_id), metadata=rig.as_key("admin"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


# 7 ------------------------------------------------------------ request ids per account


async def test_request_ids_are_each_accounts_own(rig: Rig) -> None:
    def reply(account: SampleAccount, text: str) -> rep.SendReplyRequest:
        conversation = account.batch.conversations[0].conversation_id
        return rep.SendReplyRequest(
            account_id=account.account_id,
            request_id="same-id",
            send_message=sync_pb2.SendMessage(conversation_id=conversation, text=text),
        )

    await rig.im.send_reply(reply(rig.b, "B's"), metadata=rig.as_key("b-agent"))
    # A's key uses the same id: no conflict, and nothing of B's shows.
    mine = (await rig.im.send_reply(reply(rig.a, "A's"), metadata=rig.as_key("a-agent"))).reply
    assert mine.account_id == "shop-a" and mine.send_message.text == "A's"
    found = (await rig.im.get_reply(rep.GetReplyRequest(request_id="same-id"), metadata=rig.as_key("a-agent"))).reply
    assert found.account_id == "shop-a"
    with pytest.raises(grpc.aio.AioRpcError) as ambiguous:
        await rig.im.get_reply(rep.GetReplyRequest(request_id="same-id"), metadata=rig.as_key("admin"))
    assert ambiguous.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "account_id" in (
        ambiguous.value.details() or ""
    )
    named = await rig.im.get_reply(
        rep.GetReplyRequest(request_id="same-id", account_id="shop-b"), metadata=rig.as_key("admin")
    )
    assert named.reply.send_message.text == "B's"


# 9 ------------------------------------------------------------------- big sync messages


async def test_a_sync_message_up_to_the_transport_cap_is_refused_and_the_stream_goes_on(tmp_path: Path) -> None:
    rig = await _rig(tmp_path, max_message_bytes=1 * MiB)
    try:
        worker = SyncClient(rig.channel, "test-worker", token=token_for("test-worker"), chunk_bytes=32 * MiB)
        await worker.open({"shop-a": 0})
        big = sync_pb2.EntityBatch(
            messages=[e.Message(message_id=f"m{i}", conversation_id="c", content="x" * 1000) for i in range(20_000)]
        )
        await worker.write(
            sync_pb2.SyncDataRequest(
                snapshot=sync_pb2.Snapshot(account_id="shop-a", version=1, last=True, entities=big)
            )
        )
        nack = (await worker.receive()).nack
        assert nack.status.message.startswith("snapshot:") and "over the limit" in nack.status.message
        rig.a.fill(conversations=1, messages_per_conversation=1, contents=1, comments_per_content=1)
        assert await worker.push_snapshot("shop-a", 1, rig.a.account, rig.a.batch) == 1
        await worker.close()
    finally:
        await rig.channel.close(grace=None)
        await rig.master.stop()
