"""One account on the worker, without a browser: how crawls and live arrivals make its
view (a deletion taken only when two whole crawls agree; what arrived live kept), and how
its loop reports health and relays a login both ways."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.worker.account_book import AccountBook
from services.worker.account_runner import AccountRunner, RunnerConfig
from services.worker.account_state import AccountView
from services.worker.adapter import CrawlFailed, CrawlResult, LiveSink, LoginFailed, LoginOperator
from services.worker.engine_config import EngineConfig
from services.worker.sync_engine import SyncEngine

EVERY = frozenset({"contents", "comments", "conversations", "messages", "notifications"})


def view(*message_ids: str, comments: tuple[str, ...] = ()) -> AccountView:
    batch = sync_pb2.EntityBatch(
        messages=[e.Message(message_id=m, conversation_id="c", content=m) for m in message_ids],
        comments=[e.Comment(comment_id=c, content_id="w") for c in comments],
    )
    return AccountView.from_batch(e.Account(account_id="shop"), batch)


def crawl(*message_ids: str, complete: frozenset[str] = EVERY, comments: tuple[str, ...] = ()) -> CrawlResult:
    return CrawlResult(view(*message_ids, comments=comments), complete)


def test_a_deletion_is_taken_only_when_two_whole_crawls_agree() -> None:
    book = AccountBook()
    book.crawled(crawl("m1", "m2", comments=("c1", "c2")), started=1.0)
    # One whole crawl misses c2 (a page shifted under it while it was read): c2 stays.
    after = book.crawled(crawl("m1", "m2", comments=("c1",)), started=2.0)
    assert set(after.entities["comments"]) == {"c1", "c2"}
    # Seen again: it was never gone.
    book.crawled(crawl("m1", "m2", comments=("c1", "c2")), started=3.0)
    book.crawled(crawl("m1", "m2", comments=("c1",)), started=4.0)
    assert "c2" in book.view.entities["comments"]
    # Missed by the next whole crawl too: deleted.
    assert "c2" not in book.crawled(crawl("m1", "m2", comments=("c1",)), started=5.0).entities["comments"]
    # A crawl that did not read comments whole deletes nothing.
    book.crawled(crawl("m1", "m2", comments=(), complete=EVERY - {"comments"}), started=6.0)
    book.crawled(crawl("m1", "m2", comments=(), complete=EVERY - {"comments"}), started=7.0)
    assert set(book.view.entities["comments"]) == {"c1"}


def test_what_arrived_live_is_kept_until_a_crawl_that_began_after_it() -> None:
    book = AccountBook()
    book.crawled(crawl("m1"), started=1.0)
    live = e.Message(message_id="m2", conversation_id="c", content="live")
    assert book.arrived(sync_pb2.EntityBatch(messages=[live]), at=2.5)
    assert not book.arrived(sync_pb2.EntityBatch(messages=[live]), at=2.6), "the same again changes nothing"
    # A whole crawl that began before it could not see it: it stays, and is not counted missing.
    assert "m2" in book.crawled(crawl("m1"), started=2.0).entities["messages"]
    assert "m2" in book.crawled(crawl("m1", "m2"), started=3.0).entities["messages"]
    # A crawl that began after it and does not list it (twice): it was deleted.
    book.crawled(crawl("m1"), started=4.0)
    assert "m2" not in book.crawled(crawl("m1"), started=5.0).entities["messages"]


def test_an_entity_updated_live_after_a_crawl_began_keeps_the_newer_version() -> None:
    book = AccountBook()
    book.crawled(crawl("m1"), started=1.0)
    conversation = e.Conversation(conversation_id="c", last_message=e.MessagePreview(content="newest"))
    book.arrived(sync_pb2.EntityBatch(conversations=[conversation]), at=3.0)
    stale = crawl("m1")
    older = e.Conversation(conversation_id="c", last_message=e.MessagePreview(content="older"))
    stale.view.entities["conversations"]["c"] = older  # type: ignore[index]
    assert book.crawled(stale, started=2.5).entities["conversations"]["c"].last_message.content == "newest"


class FakePlatform:
    """An account that starts logged out and asks, once scanned, for a code by SMS."""

    collections: tuple[str, ...] = tuple(sorted(EVERY))

    def __init__(self) -> None:
        self.logged_in = False
        self.scanned = asyncio.Event()
        self.crawls = 0
        self.partial = False

    async def crawl(self) -> CrawlResult:
        if not self.logged_in:
            raise CrawlFailed("logged out: the login page", login_state=e.LOGIN_STATE_LOGGED_OUT)
        self.crawls += 1
        if self.partial:
            return CrawlResult(
                view("m1"),
                EVERY - {"comments"},
                missed={"comments": "work 1: its last page never came"},
                errors=["comments: work 1"],
            )
        return crawl("m1")

    async def perform(self, command: sync_pb2.Command) -> sync_pb2.CommandResult:
        return sync_pb2.CommandResult(outcome=sync_pb2.COMMAND_OUTCOME_SENT)

    async def log_in(self, operator: LoginOperator) -> None:
        operator.challenge(e.LoginChallenge(kind=e.LOGIN_CHALLENGE_KIND_QR_CODE, qr_png=b"png", refreshes_left=3))
        await self.scanned.wait()
        for tries in (2, 1):
            operator.challenge(e.LoginChallenge(kind=e.LOGIN_CHALLENGE_KIND_SMS_CODE, prompt="code?", tries_left=tries))
            code = await operator.next_code(5)
            if code == "123456":
                operator.code_answered(True, "taken")
                self.logged_in = True
                return
            operator.code_answered(False, "wrong code")
        raise LoginFailed("too many wrong codes", reason="LOGIN_FAILED")

    async def watch(self, sink: LiveSink) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        pass


def code(text: str) -> sync_pb2.Command:
    return sync_pb2.Command(
        request_id=f"login-{text}", account_id="shop", submit_login_code=sync_pb2.SubmitLoginCode(code=text)
    )


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_login_is_relayed_both_ways_and_health_is_reported() -> None:
    platform = FakePlatform()
    engine = SyncEngine(EngineConfig(master="127.0.0.1:1", worker_id="w", token="t"), ["shop"])
    runner = AccountRunner(
        "shop", platform, engine, RunnerConfig(crawl_interval=0.05, crawl_jitter=0), asyncio.Semaphore(1)
    )
    running = asyncio.create_task(runner.run())
    try:
        await until(lambda: runner.report().login.kind == e.LOGIN_CHALLENGE_KIND_QR_CODE)
        report = runner.report()
        assert report.login_state == e.LOGIN_STATE_LOGGING_IN and report.crawl_state == e.CRAWL_STATE_NEEDS_LOGIN
        assert report.last_error_reason == "LOGIN_EXPIRED" and report.login.qr_png == b"png"
        # A code before the platform asks for one is refused, and says why.
        early = await runner.on_command(code("123456"))
        assert early.outcome == sync_pb2.COMMAND_OUTCOME_FAILED and early.reason == e.FAILURE_REASON_TARGET_NOT_FOUND
        platform.scanned.set()
        await until(lambda: runner.report().login.kind == e.LOGIN_CHALLENGE_KIND_SMS_CODE)
        wrong = await runner.on_command(code("000000"))
        assert (wrong.outcome, wrong.message) == (sync_pb2.COMMAND_OUTCOME_FAILED, "wrong code")
        assert runner.report().login.tries_left == 1
        taken = await runner.on_command(code("123456"))
        assert taken.outcome == sync_pb2.COMMAND_OUTCOME_SENT
        await until(lambda: runner.report().crawl_state == e.CRAWL_STATE_WHOLE)
        report = runner.report()
        assert report.login_state == e.LOGIN_STATE_LOGGED_IN and not report.HasField("login") and not report.last_error
        assert all(c.HasField("last_whole_time") and not c.missed for c in report.collections)
        assert engine.accounts["shop"].current is not None, "the crawl went to the sync engine"
        # A partial crawl is reported with what it missed; the other collections keep their times.
        platform.partial = True
        await until(lambda: runner.report().crawl_state == e.CRAWL_STATE_PARTIAL)
        report = runner.report()
        missed = {c.collection: c.missed for c in report.collections}
        assert missed["comments"].startswith("work 1") and report.last_error_reason == "PARTIAL"
        assert not missed["messages"]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_an_operator_can_start_a_login_over() -> None:
    platform = FakePlatform()
    engine = SyncEngine(EngineConfig(master="127.0.0.1:1", worker_id="w", token="t"), ["shop"])
    runner = AccountRunner(
        "shop", platform, engine, RunnerConfig(crawl_interval=0.05, crawl_jitter=0), asyncio.Semaphore(1)
    )
    shown: list[int] = []
    original = runner.challenge

    def seen(challenge: e.LoginChallenge | None) -> None:
        shown.append(challenge.kind if challenge is not None else 0)
        original(challenge)

    runner.challenge = seen  # type: ignore[method-assign]
    running = asyncio.create_task(runner.run())
    try:
        await until(lambda: shown.count(e.LOGIN_CHALLENGE_KIND_QR_CODE) == 1)
        restarted = await runner.on_command(
            sync_pb2.Command(request_id="r", account_id="shop", restart_login=sync_pb2.RestartLogin())
        )
        assert restarted.outcome == sync_pb2.COMMAND_OUTCOME_SENT
        await until(lambda: shown.count(e.LOGIN_CHALLENGE_KIND_QR_CODE) == 2)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
