"""The typed client covers every query RPC, and its calls reach a real master."""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import grpc
import pytest

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import accounts_pb2_grpc, conversations_pb2_grpc, sync_pb2
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import replies_pb2 as rep
from imsync_client import ImClient, SyncClient
from services.gateway.app import im_services

from .conftest import Master, token_for


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_query_rpc_has_a_typed_wrapper() -> None:
    for service in im_services():
        for method in service.methods:
            wrapper = getattr(ImClient, snake(method.name), None)
            assert wrapper is not None, f"ImClient lacks {snake(method.name)} for {method.full_name}"
            hints = inspect.signature(wrapper)
            assert list(hints.parameters)[:2] == ["self", "request"]
            assert {"timeout", "metadata"} <= set(hints.parameters)
            assert method.input_type.name in str(hints.parameters["request"].annotation)
            assert method.output_type.name in str(hints.return_annotation)


async def test_calls_carry_timeout_and_status(master: Master) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await master.im.list_conversations(conv.ListConversationsRequest(account_id="nobody"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_friendly_layer_walks_every_page(master: Master) -> None:
    from imsync_client import Inbox
    from services.common.sample import SampleAccount

    from .conftest import NOW, push_all

    account = SampleAccount("shop", seed=12, now=NOW)
    account.fill(conversations=30, messages_per_conversation=5, contents=3, comments_per_content=4)
    await push_all(master, [account])
    inbox = Inbox(master.im, page_size=7)
    assert [a.account_id async for a in inbox.accounts()] == ["shop"]
    assert sorted([c.conversation_id async for c in inbox.conversations("shop")]) == sorted(
        c.conversation_id for c in account.batch.conversations
    )
    assert len([m async for m in inbox.messages("shop")]) == len(account.batch.messages)
    assert len([c async for c in inbox.discussions("shop")]) == len(account.batch.comments)
    assert len([c async for c in inbox.contents("shop")]) == len(account.batch.contents)
    unread = [item async for item in inbox.unified("shop", is_read=False)]
    assert len(unread) == (await master.store.unified_stats("shop")).total_unread


def test_every_im_client_method_says_what_its_rpc_does() -> None:
    from services.common import proto_docs

    for service in im_services():
        for method in service.methods:
            doc = getattr(ImClient, snake(method.name)).__doc__ or ""
            words = " ".join(doc.split())
            assert words.startswith(proto_docs.comment(method.full_name)), (method.full_name, doc)
            assert f"`{method.full_name}`" in words


async def test_refusals_are_one_exception_with_their_details_decoded(master: Master) -> None:
    from imsync_client import FieldViolation, ImsyncError, connect

    async with connect(master.address) as client:
        with pytest.raises(ImsyncError) as missing:
            await client.list_conversations(conv.ListConversationsRequest())
        assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert missing.value.field_violations == [FieldViolation("account_id", "required")]
        assert str(missing.value) == "INVALID_ARGUMENT: account_id: required"
        with pytest.raises(ImsyncError) as unknown:
            await client.list_conversations(conv.ListConversationsRequest(account_id="nobody"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND and "nobody" in unknown.value.message
        assert isinstance(unknown.value, grpc.aio.AioRpcError), "still what gRPC callers catch"


async def test_an_api_key_goes_with_every_call(tmp_path: Path) -> None:
    from imsync_client import ImsyncError, connect
    from services.master.auth.api_keys import create_api_key
    from services.master.model.retention import KEEP_EVERYTHING
    from services.master.server import Master as MasterProcess
    from services.master.server import MasterConfig

    keys = tmp_path / "keys.toml"
    key = create_api_key(keys, "reader", ["*"], ["read"])
    master = MasterProcess(MasterConfig(listen="127.0.0.1:0", api_keys=keys, retention=KEEP_EVERYTHING))
    port = await master.start()
    try:
        async with connect(f"127.0.0.1:{port}", api_key=key) as client:
            assert (await client.list_accounts(acc.ListAccountsRequest())).users == []
        async with connect(f"127.0.0.1:{port}") as anonymous:
            with pytest.raises(ImsyncError) as refused:
                await anonymous.list_accounts(acc.ListAccountsRequest())
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await master.stop()


class Flaky(accounts_pb2_grpc.AccountServiceServicer, conversations_pb2_grpc.ConversationServiceServicer):
    """Unavailable for the first two calls of each method, as a master restarting is."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def _maybe_fail(self, name: str, context: Any) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.calls[name] <= 2:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")

    async def ListAccounts(self, request: acc.ListAccountsRequest, context: Any) -> acc.ListAccountsResponse:
        await self._maybe_fail("ListAccounts", context)
        return acc.ListAccountsResponse()

    async def PinConversation(self, request: conv.PinConversationRequest, context: Any) -> conv.PinConversationResponse:
        await self._maybe_fail("PinConversation", context)
        return conv.PinConversationResponse()


async def test_reads_are_retried_while_the_master_is_unavailable_and_writes_are_not() -> None:
    from imsync_client import ImsyncError, connect

    flaky = Flaky()  # type: ignore[abstract]  # only the two methods the test calls
    server = grpc.aio.server()
    accounts_pb2_grpc.add_AccountServiceServicer_to_server(flaky, server)
    conversations_pb2_grpc.add_ConversationServiceServicer_to_server(flaky, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with connect(f"127.0.0.1:{port}") as client:
            await client.list_accounts(acc.ListAccountsRequest())
            assert flaky.calls["ListAccounts"] == 3, "two UNAVAILABLE, then the answer"
            with pytest.raises(ImsyncError) as refused:
                await client.pin_conversation(conv.PinConversationRequest(conversation_id="c"))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and flaky.calls["PinConversation"] == 1
        async with connect(f"127.0.0.1:{port}", retry_reads=False) as plain:
            flaky.calls.clear()
            with pytest.raises(ImsyncError):
                await plain.list_accounts(acc.ListAccountsRequest())
    finally:
        await server.stop(None)


async def test_the_inbox_replies_marks_pins_and_mutes(master: Master) -> None:
    from imsync_client import Inbox, connect
    from services.common.sample import SampleAccount

    from .conftest import NOW, push_all

    account = SampleAccount("shop", seed=13, now=NOW)
    account.fill(conversations=4, messages_per_conversation=3, contents=2, comments_per_content=2)
    worker = await push_all(master, [account])
    conversation = account.batch.conversations[0].conversation_id
    async with connect(master.address) as client:
        inbox = Inbox(client)
        assert (await inbox.pin(conversation)).is_pinned
        assert [c.conversation_id async for c in inbox.conversations("shop", is_pinned=True)] == [conversation]
        assert not (await inbox.unpin(conversation)).is_pinned
        assert (await inbox.mute(conversation, account_id="shop")).is_muted
        assert not (await inbox.unmute(conversation)).is_muted
        unread = [item.id async for item in inbox.unified("shop", is_read=False)]
        assert (await inbox.mark_read(unread[0])).is_read
        assert await inbox.mark_many_read(unread) == len(unread) - 1
        assert (await inbox.stats("shop")).total_unread == 0
        assert (await inbox.mark_conversation_read(conversation)).unread_count == 0

        sent = await inbox.send_message(conversation, "您好", request_id="py-1")
        assert sent.state == rep.REPLY_STATE_PENDING and sent.account_id == "shop"
        command = await worker.next_command()
        assert command.send_message.text == "您好"
        await worker.write(
            sync_pb2.SyncDataRequest(
                command_result=sync_pb2.CommandResult(
                    request_id=command.request_id,
                    account_id="shop",
                    outcome=sync_pb2.COMMAND_OUTCOME_SENT,
                    created_id="m-1",
                )
            )
        )
        done = await inbox.wait_for_reply("py-1", timeout=10)
        assert done.state == rep.REPLY_STATE_SENT and done.created_id == "m-1"
        comment = account.batch.comments[0].comment_id
        under = await inbox.reply_to_comment(comment, "谢谢")
        assert under.request_id.startswith("py-") and under.state == rep.REPLY_STATE_PENDING
    await worker.close()


async def test_a_sync_stream_that_never_starts_ends_in_its_welcome_timeout(master: Master) -> None:
    """SyncClient.open waits for the Welcome at most its timeout: here a listener that accepts
    and never speaks HTTP/2 (what gRPC does with a connection the master closed as it was
    made, worker/welcome.py), then the stream is cancelled and the client opens again on a
    real master."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as silent:
            client = SyncClient(silent, "test-worker", token=token_for("test-worker"))
            started = asyncio.get_running_loop().time()
            with pytest.raises(TimeoutError, match=r"^no Welcome from the master in 0.5 s$"):
                await client.open({"a": 0}, timeout=0.5)
            assert asyncio.get_running_loop().time() - started < 5
            assert held, "the client reached the listener"
            await client.close()  # nothing left to close
    finally:
        for writer in held:
            writer.close()
        listener.close()
        await listener.wait_closed()
    client = master.sync()
    assert await client.open({"a": 0}, timeout=0.5) == {"a": 0}
    await client.close()
