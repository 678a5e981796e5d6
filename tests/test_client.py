"""The typed client covers every query RPC, and its calls reach a real master."""

from __future__ import annotations

import inspect
import re

import grpc
import pytest

from imsync.v1 import conversations_pb2 as conv
from imsync_client import ImClient
from services.gateway.app import im_services

from .conftest import Master


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
