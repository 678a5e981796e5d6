"""The Douyin adapter in a real Chromium against the simulator: what a crawl reads equals
what the simulator holds; replies are typed into the page; misbehaviour is reported."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Response

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.worker.adapter import CrawlFailed
from services.worker.douyin_adapter import CHAT_PAGE, CONVERSATION_LIST, WORKS_PAGE, DouyinAdapter, DouyinOptions, _Capture

from .conftest import sim_subprocess

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim() -> Iterator[tuple[str, str]]:
    with sim_subprocess("--accounts", "2") as running:
        yield running


@pytest_asyncio.fixture
async def adapter(sim: tuple[str, str], tmp_path: Path) -> AsyncIterator[DouyinAdapter]:
    base, uid = sim
    options = DouyinOptions(base_url=base, profile_dir=tmp_path / "profile", login_uid=uid, login_password="sim", page_timeout=10)
    adapter = DouyinAdapter("shop", options)
    try:
        yield adapter
    finally:
        await adapter.close()


def truth(sim: tuple[str, str]) -> dict[str, Any]:
    base, uid = sim
    result: dict[str, Any] = httpx.get(f"{base}/__sim/truth", params={"uid": uid}).json()
    return result


def faults(sim: tuple[str, str], **switches: object) -> None:
    httpx.post(f"{sim[0]}/__sim/faults", json=switches).raise_for_status()


async def test_one_crawl_reads_exactly_what_the_platform_holds(adapter: DouyinAdapter, sim: tuple[str, str]) -> None:
    result = await adapter.crawl()
    held = truth(sim)
    view = result.view.entities
    assert result.complete == {"contents", "comments", "conversations", "messages"}
    assert not result.errors
    assert result.view.account.user_id == sim[1] and result.view.account.account_id == "shop"
    assert set(view["contents"]) == {w["aweme_id"] for w in held["works"]}
    assert set(view["comments"]) == {c["cid"] for c in held["comments"]}
    assert set(view["conversations"]) == {c["conversation_id"] for c in held["conversations"]}
    assert set(view["messages"]) == {m["server_id"] for m in held["messages"]}
    for raw in held["comments"]:
        comment = view["comments"][raw["cid"]]
        assert comment.created_at.seconds == raw["create_time"], "seconds became a Timestamp"
        assert comment.parent_comment_id == ("" if raw["reply_id"] == "0" else raw["reply_id"])
        assert (comment.content, comment.author.user_id) == (raw["text"], raw["user"]["uid"])
    for raw in held["messages"]:
        message = view["messages"][raw["server_id"]]
        assert message.create_time.ToMilliseconds() == raw["create_time"], "milliseconds became a Timestamp"
        assert message.direction == (e.DIRECTION_OUTBOUND if raw["is_self"] else e.DIRECTION_INBOUND)
        assert (message.sender.user_id == sim[1]) == raw["is_self"]


async def test_replies_and_messages_are_typed_into_the_page(adapter: DouyinAdapter, sim: tuple[str, str]) -> None:
    held = truth(sim)
    parent = next(c for c in held["comments"] if c["reply_id"] == "0")
    command = sync_pb2.Command(
        request_id="r1", account_id="shop",
        reply_to_comment=sync_pb2.ReplyToComment(content_id=parent["aweme_id"], comment_id=parent["cid"], text="感谢支持🙏"),
    )
    result = await adapter.perform(command)
    assert result.outcome == sync_pb2.COMMAND_OUTCOME_SENT, result.message
    created = next(c for c in truth(sim)["comments"] if c["cid"] == result.created_id)
    assert (created["text"], created["reply_id"], created["user"]["uid"]) == ("感谢支持🙏", parent["cid"], sim[1])

    conversation_id = held["conversations"][0]["conversation_id"]
    sent = await adapter.perform(
        sync_pb2.Command(request_id="r2", account_id="shop", send_message=sync_pb2.SendMessage(conversation_id=conversation_id, text="在的，亲"))
    )
    assert sent.outcome == sync_pb2.COMMAND_OUTCOME_SENT
    assert any(m["server_id"] == sent.created_id and m["is_self"] for m in truth(sim)["messages"])

    missing = await adapter.perform(
        sync_pb2.Command(request_id="r3", account_id="shop", reply_to_comment=sync_pb2.ReplyToComment(content_id=parent["aweme_id"], comment_id="404", text="x"))
    )
    assert (missing.outcome, missing.reason) == (sync_pb2.COMMAND_OUTCOME_FAILED, e.FAILURE_REASON_TARGET_NOT_FOUND)


async def test_logged_out_unreadable_and_hung_pages_fail_the_crawl_and_it_recovers(
    sim: tuple[str, str], tmp_path: Path
) -> None:
    base, uid = sim
    no_login = DouyinAdapter("shop", DouyinOptions(base_url=base, profile_dir=tmp_path / "p", page_timeout=10))
    try:
        with pytest.raises(CrawlFailed) as failed:
            await no_login.crawl()
        assert failed.value.login_state == e.LOGIN_STATE_LOGGED_OUT
    finally:
        await no_login.close()

    adapter = DouyinAdapter("shop", DouyinOptions(base_url=base, profile_dir=tmp_path / "q", login_uid=uid, login_password="sim", page_timeout=5))
    try:
        await adapter.crawl()
        faults(sim, truncated=True)
        with pytest.raises(CrawlFailed) as unreadable:
            await adapter.crawl()
        assert "unreadable" in str(unreadable.value)
        faults(sim, truncated=False, hang=True)
        with pytest.raises(CrawlFailed) as hung:
            await adapter.crawl()
        assert "Timeout" in str(hung.value) or "never finished" in str(hung.value)
        faults(sim, hang=False, expire_sessions=True)
        again = await adapter.crawl()  # logs in again through the form
        assert again.complete == {"contents", "comments", "conversations", "messages"}
    finally:
        faults(sim, hang=False, truncated=False)
        await adapter.close()


async def test_a_reply_during_a_crawl_waits_its_turn(adapter: DouyinAdapter, sim: tuple[str, str]) -> None:
    import asyncio

    held = truth(sim)
    parent = next(c for c in held["comments"] if c["reply_id"] == "0")
    command = sync_pb2.Command(
        request_id="r-during", account_id="shop",
        reply_to_comment=sync_pb2.ReplyToComment(content_id=parent["aweme_id"], comment_id=parent["cid"], text="稍等～"),
    )
    crawl = asyncio.create_task(adapter.crawl())
    await asyncio.sleep(0.3)  # the crawl is navigating now
    result = await adapter.perform(command)
    assert result.outcome == sync_pb2.COMMAND_OUTCOME_SENT, result.message
    assert (await crawl).complete == {"contents", "comments", "conversations", "messages"}


async def test_an_answer_gone_before_it_was_read_leaves_its_list_not_whole(adapter: DouyinAdapter) -> None:
    """Chromium drops a page's answers once the page has gone elsewhere: an answer read too
    late holds nothing the crawl has, and its list must not be reported whole (it was, and
    a crawl could then take messages it never read for deleted)."""
    page = await adapter._page()
    await adapter._open(page, CHAT_PAGE)
    answers: list[Response] = []
    page.on("response", lambda answer: answers.append(answer))
    await adapter._open(page, CHAT_PAGE)
    await adapter._load_all(page)
    await adapter._open(page, WORKS_PAGE)  # before those answers were read
    capture = _Capture()
    for answer in answers:
        await capture._read(answer)
    assert capture.lost.get(CONVERSATION_LIST)
    assert not capture.intact(CONVERSATION_LIST) and not capture.ended(CONVERSATION_LIST)
