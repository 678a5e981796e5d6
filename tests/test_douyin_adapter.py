"""The Douyin adapter in a real Chromium against the simulator: what a crawl reads equals
what the simulator holds (replies behind buttons that go away, lists that grow while read);
replies are typed into the page; misbehaviour is reported with what was missed; new
messages arrive live; a login is relayed by QR code and SMS code to an operator."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import zxingcpp
from PIL import Image
from playwright.async_api import Response

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.worker.adapter import CrawlFailed, LoginFailed
from services.worker.browser import BrowserPool
from services.worker.douyin import DouyinAdapter, DouyinOptions
from services.worker.douyin.capture import Capture
from services.worker.douyin.pages import CHAT_PAGE, CONVERSATION_LIST, WORKS_PAGE, goto, load_all

from .conftest import sim_subprocess

pytestmark = pytest.mark.e2e

EVERY = {"contents", "comments", "conversations", "messages", "notifications"}


@pytest.fixture
def sim() -> Iterator[tuple[str, str]]:
    with sim_subprocess("--accounts", "2") as running:
        yield running


@pytest_asyncio.fixture
async def pool() -> AsyncIterator[BrowserPool]:
    browsers = BrowserPool(page_timeout=10)
    try:
        yield browsers
    finally:
        await browsers.close()


def douyin(
    sim: tuple[str, str], pool: BrowserPool, tmp_path: Path, *, password: bool = True, **options: Any
) -> DouyinAdapter:
    base, uid = sim
    options = {"page_timeout": 10} | options
    return DouyinAdapter(
        "shop",
        DouyinOptions(
            base_url=base,
            storage_state=tmp_path / "state.json",
            login_uid=uid if password else "",
            login_password="sim" if password else "",
            **options,
        ),
        pool,
    )


@pytest.fixture
def adapter(sim: tuple[str, str], pool: BrowserPool, tmp_path: Path) -> DouyinAdapter:
    return douyin(sim, pool, tmp_path)


def truth(sim: tuple[str, str]) -> dict[str, Any]:
    base, uid = sim
    result: dict[str, Any] = httpx.get(f"{base}/__sim/truth", params={"uid": uid}).json()
    return result


def post(sim: tuple[str, str], path: str, **body: object) -> Any:
    answer = httpx.post(f"{sim[0]}{path}", json=body)
    answer.raise_for_status()
    return answer.json()


def faults(sim: tuple[str, str], **switches: object) -> None:
    post(sim, "/__sim/faults", **switches)


def assert_reads_truth(view: Any, held: dict[str, Any]) -> None:
    entities = view.entities
    assert set(entities["contents"]) == {w["aweme_id"] for w in held["works"]}
    assert set(entities["comments"]) == {c["cid"] for c in held["comments"]}
    assert set(entities["conversations"]) == {c["conversation_id"] for c in held["conversations"]}
    assert set(entities["messages"]) == {m["server_id"] for m in held["messages"]}
    assert set(entities["notifications"]) == {n["nid"] for n in held["notices"]}


async def test_one_crawl_reads_exactly_what_the_platform_holds(adapter: DouyinAdapter, sim: tuple[str, str]) -> None:
    # Replies behind a button that goes away once clicked, a page of 3 then pages of 10:
    # 25 replies under one comment take three clicks, on buttons the page made anew each time.
    parents = [c for c in truth(sim)["comments"] if c["reply_id"] == "0"]
    for index in range(25):
        post(sim, "/__sim/customer", uid=sim[1], kind="reply", parent=parents[0]["cid"], text=f"回复{index}")
    for parent in parents[1:4]:
        post(sim, "/__sim/customer", uid=sim[1], kind="reply", parent=parent["cid"], text="同问")
    result = await adapter.crawl()
    held = truth(sim)
    view = result.view.entities
    assert result.complete == EVERY and not result.errors and not result.missed, result.missed
    assert result.view.account.user_id == sim[1] and result.view.account.account_id == "shop"
    assert_reads_truth(result.view, held)
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
    for raw in held["notices"]:
        notification = view["notifications"][raw["nid"]]
        assert notification.create_time.seconds == raw["create_time"] and notification.text == raw["content"]
        assert notification.notification_type != e.NOTIFICATION_TYPE_UNSPECIFIED


async def test_a_list_that_grows_while_it_is_read_is_still_read_whole(
    adapter: DouyinAdapter, sim: tuple[str, str]
) -> None:
    """Customers keep writing while every answer takes 150 ms: new items shift the pages of
    the lists being read (an item seen twice, never one skipped), and the crawl is whole,
    holding at least everything there was when it began."""
    before = truth(sim)
    faults(sim, slow_ms=150)

    async def customers() -> None:
        for _ in range(40):
            await asyncio.to_thread(post, sim, "/__sim/customer", uid=sim[1], kind="comment", text="又来了")
            await asyncio.to_thread(post, sim, "/__sim/customer", uid=sim[1], kind="message", text="在吗")
            await asyncio.sleep(0.05)

    writing = asyncio.create_task(customers())
    try:
        result = await adapter.crawl()
    finally:
        faults(sim, slow_ms=0)
        await writing
    assert result.complete == EVERY, result.missed
    assert {c["cid"] for c in before["comments"]} <= set(result.view.entities["comments"])
    assert {m["server_id"] for m in before["messages"]} <= set(result.view.entities["messages"])
    again = await adapter.crawl()
    assert_reads_truth(again.view, truth(sim))


async def test_replies_and_messages_are_typed_into_the_page(adapter: DouyinAdapter, sim: tuple[str, str]) -> None:
    held = truth(sim)
    parent = next(c for c in held["comments"] if c["reply_id"] == "0")
    command = sync_pb2.Command(
        request_id="r1",
        account_id="shop",
        reply_to_comment=sync_pb2.ReplyToComment(
            content_id=parent["aweme_id"], comment_id=parent["cid"], text="感谢支持🙏"
        ),
    )
    result = await adapter.perform(command)
    assert result.outcome == sync_pb2.COMMAND_OUTCOME_SENT, result.message
    created = next(c for c in truth(sim)["comments"] if c["cid"] == result.created_id)
    assert (created["text"], created["reply_id"], created["user"]["uid"]) == ("感谢支持🙏", parent["cid"], sim[1])

    conversation_id = held["conversations"][0]["conversation_id"]
    sent = await adapter.perform(
        sync_pb2.Command(
            request_id="r2",
            account_id="shop",
            send_message=sync_pb2.SendMessage(conversation_id=conversation_id, text="在的，亲"),
        )
    )
    assert sent.outcome == sync_pb2.COMMAND_OUTCOME_SENT
    assert any(m["server_id"] == sent.created_id and m["is_self"] for m in truth(sim)["messages"])

    missing = await adapter.perform(
        sync_pb2.Command(
            request_id="r3",
            account_id="shop",
            reply_to_comment=sync_pb2.ReplyToComment(content_id=parent["aweme_id"], comment_id="404", text="x"),
        )
    )
    assert (missing.outcome, missing.reason) == (sync_pb2.COMMAND_OUTCOME_FAILED, e.FAILURE_REASON_TARGET_NOT_FOUND)
    nowhere = await adapter.perform(
        sync_pb2.Command(
            request_id="r4", account_id="shop", send_message=sync_pb2.SendMessage(conversation_id="0:1:1:2", text="x")
        )
    )
    assert (nowhere.outcome, nowhere.reason) == (sync_pb2.COMMAND_OUTCOME_FAILED, e.FAILURE_REASON_TARGET_NOT_FOUND)


async def test_logged_out_unreadable_and_hung_pages_fail_the_crawl_and_it_recovers(
    sim: tuple[str, str], pool: BrowserPool, tmp_path: Path
) -> None:
    no_login = douyin(sim, pool, tmp_path / "p", password=False)
    with pytest.raises(CrawlFailed) as failed:
        await no_login.crawl()
    assert failed.value.login_state == e.LOGIN_STATE_LOGGED_OUT and failed.value.reason == "LOGIN_EXPIRED"
    await no_login.close()

    adapter = douyin(sim, pool, tmp_path / "q", page_timeout=5)
    try:
        await adapter.crawl()
        faults(sim, truncated=True)
        with pytest.raises(CrawlFailed) as unreadable:
            await adapter.crawl()
        assert "unreadable" in str(unreadable.value) and unreadable.value.reason == "UNREADABLE_ANSWER"
        faults(sim, truncated=False, hang=True)
        with pytest.raises(CrawlFailed) as hung:
            await adapter.crawl()
        assert "Timeout" in str(hung.value) or "never finished" in str(hung.value)
        assert hung.value.reason == "PAGE_TIMEOUT"
        faults(sim, hang=False, expire_sessions=True)
        again = await adapter.crawl()  # logs in again through the form
        assert again.complete == EVERY
    finally:
        faults(sim, hang=False, truncated=False)
        await adapter.close()


async def test_a_crawl_that_misses_part_says_which_part_and_why(adapter: DouyinAdapter, sim: tuple[str, str]) -> None:
    parent = next(c for c in truth(sim)["comments"] if c["reply_id"] == "0")
    post(sim, "/__sim/customer", uid=sim[1], kind="reply", parent=parent["cid"], text="在吗")
    faults(sim, broken="/aweme/v1/web/comment/list/reply/")  # every reply list answers garbage
    try:
        result = await adapter.crawl()
    finally:
        faults(sim, broken="")
    assert result.complete == EVERY - {"comments"}
    assert f"replies of comment {parent['cid']}" in result.missed["comments"]
    assert "unreadable" in result.missed["comments"]
    faults(sim, broken="/aweme/v1/im/message/history/")
    try:
        result = await adapter.crawl()
    finally:
        faults(sim, broken="")
    assert result.complete == EVERY - {"messages"}
    assert "conversation 0:1:" in result.missed["messages"]


async def test_a_reply_during_a_crawl_waits_its_turn(adapter: DouyinAdapter, sim: tuple[str, str]) -> None:
    held = truth(sim)
    parent = next(c for c in held["comments"] if c["reply_id"] == "0")
    command = sync_pb2.Command(
        request_id="r-during",
        account_id="shop",
        reply_to_comment=sync_pb2.ReplyToComment(
            content_id=parent["aweme_id"], comment_id=parent["cid"], text="稍等～"
        ),
    )
    crawl = asyncio.create_task(adapter.crawl())
    await asyncio.sleep(0.3)  # the crawl is navigating now
    result = await adapter.perform(command)
    assert result.outcome == sync_pb2.COMMAND_OUTCOME_SENT, result.message
    assert (await crawl).complete == EVERY


async def test_an_answer_gone_before_it_was_read_leaves_its_list_not_whole(
    adapter: DouyinAdapter, sim: tuple[str, str], pool: BrowserPool, tmp_path: Path
) -> None:
    """Chromium drops a page's answers once the page has gone elsewhere: an answer read too
    late holds nothing the crawl has, and its list must not be reported whole (it was, and
    a crawl could then take messages it never read for deleted)."""
    await adapter.crawl()  # logged in
    context = await pool.context("shop", tmp_path / "state.json")
    page = await context.new_page()
    answers: list[Response] = []
    page.on("response", lambda answer: answers.append(answer))
    await goto(page, sim[0] + CHAT_PAGE)
    await load_all(page, 10)
    await goto(page, sim[0] + WORKS_PAGE)  # before those answers were read
    capture = Capture()
    for answer in answers:
        await capture.read(answer)
    assert capture.trouble(CONVERSATION_LIST)
    assert not capture.ended(CONVERSATION_LIST)
    await page.close()


async def test_new_messages_arrive_live_as_the_crawl_would_read_them(
    adapter: DouyinAdapter, sim: tuple[str, str]
) -> None:
    await adapter.crawl()
    arrived: asyncio.Queue[tuple[float, sync_pb2.EntityBatch]] = asyncio.Queue()
    watching = asyncio.create_task(adapter.watch(lambda batch: arrived.put_nowait((time.monotonic(), batch))))
    try:
        await asyncio.sleep(1.0)  # the chat page is open and its socket connected
        latencies = []
        for index in range(5):
            sent = time.monotonic()
            written = await asyncio.to_thread(
                post, sim, "/__sim/customer", uid=sim[1], kind="message", text=f"在吗{index}"
            )
            async with asyncio.timeout(5):
                at, batch = await arrived.get()
            latencies.append(at - sent)
            assert [m.message_id for m in batch.messages] == [written["server_id"]]
            assert batch.conversations[0].last_message.content == f"在吗{index}"
        assert max(latencies) < 1.0, latencies
        live = batch.messages[0]
        crawled = (await adapter.crawl()).view.entities
        assert crawled["messages"][live.message_id] == live, "the crawl reads what arrived live, unchanged"
        assert crawled["conversations"][live.conversation_id] == batch.conversations[0]
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)


class Operator:
    """The person at the console, played by the test: sees challenges, types codes."""

    def __init__(self) -> None:
        self.challenges: list[e.LoginChallenge | None] = []
        self.changed = asyncio.Event()
        self.codes: asyncio.Queue[str] = asyncio.Queue()
        self.answers: list[tuple[bool, str]] = []

    def challenge(self, challenge: e.LoginChallenge | None) -> None:
        copy = None
        if challenge is not None:
            copy = e.LoginChallenge()
            copy.CopyFrom(challenge)
        self.challenges.append(copy)
        self.changed.set()

    async def next_code(self, timeout: float) -> str:
        async with asyncio.timeout(timeout):
            return await self.codes.get()

    def code_answered(self, accepted: bool, message: str) -> None:
        self.answers.append((accepted, message))

    async def shown(self, kind: e.LoginChallengeKind.ValueType, count: int = 1) -> e.LoginChallenge:
        async with asyncio.timeout(15):
            while (
                sum(1 for c in self.challenges if c is not None and c.kind == kind and not c.scanned and not c.error)
                < count
            ):
                self.changed.clear()
                await self.changed.wait()
        found = [c for c in self.challenges if c is not None and c.kind == kind]
        return found[-1]


def scanned_token(png: bytes) -> str:
    """What a phone reads off the QR image."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert found, "the relayed image holds no readable QR code"
    return str(found[0].text).split("token=")[1]


async def test_a_qr_login_is_relayed_to_the_operator_and_the_account_then_crawls(
    sim: tuple[str, str], pool: BrowserPool, tmp_path: Path
) -> None:
    adapter = douyin(sim, pool, tmp_path, password=False)
    with pytest.raises(CrawlFailed):
        await adapter.crawl()
    operator = Operator()
    login = asyncio.create_task(adapter.log_in(operator))
    qr = await operator.shown(e.LOGIN_CHALLENGE_KIND_QR_CODE)
    assert qr.expire_time.seconds > time.time() and qr.refreshes_left == 3
    await asyncio.to_thread(post, sim, "/__sim/scan", token=scanned_token(qr.qr_png), uid=sim[1])
    async with asyncio.timeout(15):
        await login
    assert operator.challenges[-1] is None, "nothing is asked any more"
    assert (tmp_path / "state.json").is_file(), "the session is kept on disk"
    result = await adapter.crawl()
    assert result.complete == EVERY and result.view.account.user_id == sim[1]

    # Another worker's browser starts from the saved session without a login.
    other = BrowserPool(page_timeout=10)
    try:
        again = DouyinAdapter(
            "shop", DouyinOptions(base_url=sim[0], storage_state=tmp_path / "state.json", page_timeout=10), other
        )
        assert (await again.crawl()).complete == EVERY
    finally:
        await other.close()


async def test_an_sms_step_takes_the_operators_code_and_a_wrong_one_comes_back(
    sim: tuple[str, str], pool: BrowserPool, tmp_path: Path
) -> None:
    post(sim, "/__sim/login", sms_uids=[sim[1]], sms_tries=3)
    adapter = douyin(sim, pool, tmp_path, password=False)
    operator = Operator()
    login = asyncio.create_task(adapter.log_in(operator))
    qr = await operator.shown(e.LOGIN_CHALLENGE_KIND_QR_CODE)
    await asyncio.to_thread(post, sim, "/__sim/scan", token=scanned_token(qr.qr_png), uid=sim[1])
    asked = await operator.shown(e.LOGIN_CHALLENGE_KIND_SMS_CODE)
    assert "验证码" in asked.prompt and asked.tries_left == 3
    operator.codes.put_nowait(
        "000000"
        if httpx.get(f"{sim[0]}/__sim/sms", params={"uid": sim[1]}).json()["codes"][-1] != "000000"
        else "111111"
    )
    async with asyncio.timeout(15):
        while not operator.answers:
            await asyncio.sleep(0.05)
    assert operator.answers[-1][0] is False
    again = operator.challenges[-1]
    assert again is not None and again.error and again.tries_left == 2, again
    code = httpx.get(f"{sim[0]}/__sim/sms", params={"uid": sim[1]}).json()["codes"][-1]
    operator.codes.put_nowait(code)
    async with asyncio.timeout(15):
        await login
    assert operator.answers[-1][0] is True, (
        operator.answers,
        [(c.kind, c.error, c.tries_left) if c else None for c in operator.challenges],
    )
    assert (await adapter.crawl()).complete == EVERY


async def test_an_expired_code_is_refreshed_a_bounded_number_of_times_then_the_login_says_why(
    sim: tuple[str, str], pool: BrowserPool, tmp_path: Path
) -> None:
    post(sim, "/__sim/login", qr_ttl_s=1.0)
    adapter = douyin(sim, pool, tmp_path, password=False, qr_refreshes=2)
    operator = Operator()
    with pytest.raises(LoginFailed) as failed:
        async with asyncio.timeout(30):
            await adapter.log_in(operator)
    codes = [c for c in operator.challenges if c is not None and c.kind == e.LOGIN_CHALLENGE_KIND_QR_CODE]
    assert len({c.qr_png for c in codes}) == 3, "the first code and two refreshes, each a new image"
    assert [c.refreshes_left for c in codes] == [2, 1, 0]
    assert "expired 3 times" in str(failed.value) and failed.value.reason == "LOGIN_EXPIRED"
    assert operator.challenges[-1] is None
