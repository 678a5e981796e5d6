"""Replies through REST become commands to the owning worker; their state is readable."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import pytest_asyncio

from imsync.v1 import sync_pb2
from services.common.sample import SampleAccount
from services.master.model.commands import CommandState

from .conftest import NOW, Master, push_all


@pytest_asyncio.fixture
async def shop(master: Master) -> SampleAccount:
    account = SampleAccount("shop", seed=8, now=NOW)
    account.fill(conversations=3, messages_per_conversation=3, contents=2, comments_per_content=3)
    await push_all(master, [account])
    return account


async def test_a_reply_waits_for_the_worker_and_the_same_request_id_is_idempotent(
    master: Master, gateway: httpx.AsyncClient, shop: SampleAccount
) -> None:
    comment = next(c for c in shop.batch.comments if not c.parent_comment_id)
    body = {"request_id": "req-1", "reply_to_comment": {"comment_id": comment.comment_id, "text": "谢谢支持🙏"}}
    sent = await gateway.post("/api/im/replies", json=body)
    assert sent.status_code == 200, sent.text
    reply = sent.json()["data"]["reply"]
    assert reply["state"] == "pending" and reply["account_id"] == "shop"
    assert reply["reply_to_comment"]["content_id"] == comment.content_id, "the work is found from the comment"
    again = await gateway.post("/api/im/replies", json=body)
    assert again.status_code == 200 and again.json()["data"]["reply"]["create_time"] == reply["create_time"]
    changed = await gateway.post(
        "/api/im/replies", json=body | {"reply_to_comment": {"comment_id": comment.comment_id, "text": "别的"}}
    )
    assert changed.status_code == 409
    assert changed.json()["status_msg"].startswith("request_id:")
    fetched = await gateway.get("/api/im/replies/req-1")
    assert fetched.json()["data"]["reply"]["state"] == "pending"
    # The worker answers: the state follows.
    record = await master.process.book.get("shop", "req-1")
    assert record is not None
    await master.process.book.complete(
        sync_pb2.CommandResult(
            request_id="req-1", account_id="shop", outcome=sync_pb2.COMMAND_OUTCOME_SENT, created_id="c-9"
        )
    )
    done = (await gateway.get("/api/im/replies/req-1")).json()["data"]["reply"]
    assert (done["state"], done["created_id"]) == ("sent", "c-9")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"send_message": {"conversation_id": "x", "text": "hi"}}, 400, "request_id"),
        ({"request_id": "r"}, 400, "target"),
        ({"request_id": "r", "send_message": {"conversation_id": "nope", "text": "hi"}}, 404, ""),
        ({"request_id": "r", "send_message": {"conversation_id": "CID", "text": "  "}}, 400, "send_message.text"),
        (
            {"request_id": "r", "send_message": {"conversation_id": "CID", "text": "长" * 2001}},
            400,
            "send_message.text",
        ),
        # Line breaks and tabs are text; a NUL or a terminal's escape sequence is not.
        ({"request_id": "r", "send_message": {"conversation_id": "CID", "text": "hi\x00"}}, 400, "send_message.text"),
        (
            {"request_id": "r", "send_message": {"conversation_id": "CID", "text": "好\n\t\x1b[31m红"}},
            400,
            "send_message.text",
        ),
    ],
)
async def test_bad_replies_are_refused_and_nothing_is_queued(
    master: Master, gateway: httpx.AsyncClient, shop: SampleAccount, body: dict[str, object], status: int, field: str
) -> None:
    conversation_id = shop.batch.conversations[0].conversation_id
    text = json.dumps(body).replace("CID", conversation_id)
    response = await gateway.post("/api/im/replies", content=text.encode())
    assert response.status_code == status, response.text
    if field:
        assert response.json()["status_msg"].startswith(f"{field}:")
    assert not await master.process.book.find("r")


async def test_pin_and_mute_through_rest(gateway: httpx.AsyncClient, shop: SampleAccount) -> None:
    oldest = min(shop.batch.conversations, key=lambda c: c.last_message.create_time.seconds).conversation_id
    pinned = await gateway.put(f"/api/im/conversations/{oldest}/pin")
    assert pinned.json()["data"]["conversation"]["is_pinned"] is True
    listed = (await gateway.get("/api/im/conversations", params={"account_id": "shop"})).json()["data"]
    assert listed["conversations"][0]["conversation_id"] == oldest
    await gateway.delete(f"/api/im/conversations/{oldest}/pin")
    muted = await gateway.put(f"/api/im/conversations/{oldest}/mute")
    assert muted.json()["data"]["conversation"]["is_muted"] is True
    unmuted = await gateway.delete(f"/api/im/conversations/{oldest}/mute")
    assert unmuted.json()["data"]["conversation"]["is_muted"] is False
    only_muted = (await gateway.get("/api/im/conversations", params={"account_id": "shop", "is_muted": "true"})).json()
    assert only_muted["data"]["conversations"] == []


async def test_reply_states_are_pushed_as_events_and_an_absent_worker_makes_them_expire(
    master: Master, gateway: httpx.AsyncClient, shop: SampleAccount
) -> None:
    from imsync.v1 import entities_pb2 as entities
    from imsync.v1 import events_pb2 as ev
    from imsync.v1 import replies_pb2 as rep

    master.process.book.ttl = 0.5  # nobody performs commands in this test: the worker is away
    seen: list[ev.Event] = []

    async def follow() -> None:
        request = ev.StreamEventsRequest(account_ids=["shop"], types=[ev.EVENT_TYPE_REPLY_STATE_CHANGED])
        async for response in master.im.stream_events(request):
            seen.append(response.event)

    follower = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.2)
        conversation_id = shop.batch.conversations[0].conversation_id
        body = {"request_id": "away-1", "send_message": {"conversation_id": conversation_id, "text": "在的"}}
        assert (await gateway.post("/api/im/replies", json=body)).status_code == 200
        async with asyncio.timeout(10):
            while len(seen) < 2:
                await asyncio.sleep(0.05)
        assert [e.reply.state for e in seen] == [rep.REPLY_STATE_PENDING, rep.REPLY_STATE_FAILED]
        assert seen[1].reply.reason == entities.FAILURE_REASON_EXPIRED
        state = (await gateway.get("/api/im/replies/away-1")).json()["data"]["reply"]
        assert (state["state"], state["reason"]) == ("failed", "expired")
        assert "expired" in state["detail"]
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    assert await master.process.book.get("shop", "away-1") is not None
    assert CommandState.FAILED is (await master.process.book.get("shop", "away-1")).state  # type: ignore[union-attr]
