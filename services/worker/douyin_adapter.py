"""The Douyin adapter: a logged-in Chromium per account, reading what the creator center's
pages load, and typing replies into them.

Each account has its own persistent browser profile on disk (cookies survive restarts).
A crawl opens the works, comments and private-message pages as a person would, scrolls
and expands until the pages say they have everything, and keeps the JSON responses the
pages received. A collection is reported complete only when every page of it arrived
intact; otherwise only what was seen is upserted. The same adapter runs against the
simulator or the real site: only `base_url` differs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from playwright.async_api import BrowserContext, Page, Playwright, Response, async_playwright
from playwright.async_api import Error as PlaywrightError

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2

from .account_state import AccountView
from .adapter import CrawlFailed, CrawlResult
from .browser import launch_options
from .douyin_mapping import (
    MappingError,
    account_of,
    comment_of,
    content_of,
    conversation_of,
    message_of,
    user_of,
)

log = logging.getLogger(__name__)

WORKS_PAGE = "/creator-micro/content/manage"
COMMENTS_PAGE = "/creator-micro/interactive/comment"
CHAT_PAGE = "/creator-micro/data/following/chat"
USER_INFO = "/aweme/v1/creator/user/info/"
WORK_LIST = "/aweme/v1/creator/item/list/"
COMMENT_LIST = "/aweme/v1/web/comment/list/select/"
REPLY_LIST = "/aweme/v1/web/comment/list/reply/"
CONVERSATION_LIST = "/aweme/v1/im/conversation/list/"
MESSAGE_HISTORY = "/aweme/v1/im/message/history/"
PUBLISH = "/aweme/v1/web/comment/publish/"
SEND = "/aweme/v1/im/message/send/"

NOT_LOGGED_IN = 8
_REFUSALS = {
    NOT_LOGGED_IN: e.FAILURE_REASON_LOGIN_EXPIRED,
    2100: e.FAILURE_REASON_TARGET_NOT_FOUND,
    2149: e.FAILURE_REASON_REPLY_BLOCKED,
    2150: e.FAILURE_REASON_RATE_LIMITED,
}


@dataclass(frozen=True)
class DouyinOptions:
    base_url: str
    profile_dir: Path
    # Only where the login page is a form (the simulator); the real site asks for a QR scan.
    login_uid: str = ""
    login_password: str = ""
    page_timeout: float = 20.0
    headless: bool = True


@dataclass
class _Capture:
    """The JSON responses a page received, by endpoint path, and what went wrong."""

    bodies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    broken: dict[str, int] = field(default_factory=dict)
    # Answers whose body could no longer be read (the page had navigated away): what they
    # held is unknown, so their lists are not whole.
    lost: dict[str, int] = field(default_factory=dict)
    logged_out: bool = False
    pending: set[asyncio.Task[None]] = field(default_factory=set)

    def attach(self, page: Page) -> None:
        page.on("response", self._on_response)

    def detach(self, page: Page) -> None:
        page.remove_listener("response", self._on_response)

    def _on_response(self, response: Response) -> None:
        self._track(asyncio.ensure_future(self._read(response)))

    def _track(self, task: asyncio.Future[None]) -> None:
        self.pending.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self.pending.discard)

    async def _read(self, response: Response) -> None:
        path = urlparse(response.url).path
        if not path.startswith("/aweme/v1/"):
            return
        try:
            raw = await response.body()
        except PlaywrightError:
            # The page navigated away before the answer was read: not the platform's fault,
            # but what it held is not in this crawl.
            self.lost[path] = self.lost.get(path, 0) + 1
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            self.broken[path] = self.broken.get(path, 0) + 1
            return
        if body.get("status_code") == NOT_LOGGED_IN:
            self.logged_out = True
        self.bodies.setdefault(path, []).append(body)

    def forget(self) -> None:
        self.bodies.clear()
        self.broken.clear()
        self.lost.clear()
        self.logged_out = False

    async def settle(self) -> None:
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)

    def items(self, path: str, key: str) -> list[dict[str, Any]]:
        return [item for body in self.bodies.get(path, []) for item in (body.get(key) or []) if isinstance(item, dict)]

    def intact(self, *paths: str) -> bool:
        """Whether every answer of these endpoints was read and understood."""
        return not any(self.broken.get(path) or self.lost.get(path) for path in paths)

    def ended(self, path: str) -> bool:
        """Whether every list of this endpoint was read to its last page, intact."""
        bodies = self.bodies.get(path, [])
        return self.intact(path) and bool(bodies) and not bodies[-1].get("has_more")


class DouyinAdapter:
    def __init__(self, account_id: str, options: DouyinOptions) -> None:
        self.account_id = account_id
        self.options = options
        self._playwright: Playwright | None = None
        self._context: BrowserContext | None = None
        # A crawl and a reply must not navigate the account's page at the same time.
        self._turn = asyncio.Lock()

    # ------------------------------------------------------------------ browser

    async def _browser(self) -> BrowserContext:
        if self._context is None:
            if self._playwright is None:
                self._playwright = await async_playwright().start()
            self.options.profile_dir.mkdir(parents=True, exist_ok=True)
            self._context = await self._playwright.chromium.launch_persistent_context(
                str(self.options.profile_dir), **launch_options(headless=self.options.headless)
            )
            self._context.set_default_timeout(self.options.page_timeout * 1000)
            self._context.on("close", lambda _: self._forget())
        return self._context

    def _forget(self) -> None:
        self._context = None  # crashed or closed: the next crawl starts a new browser

    async def close(self) -> None:
        if self._context is not None:
            try:
                await self._context.close()
            except PlaywrightError:
                pass
            self._context = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None

    async def _page(self) -> Page:
        context = await self._browser()
        for extra in context.pages[1:]:
            await extra.close()
        return context.pages[0] if context.pages else await context.new_page()

    async def _goto(self, page: Page, url: str) -> None:
        """page.goto, again when the page's own scripts navigated elsewhere meanwhile (a page
        that found itself logged out sends the browser to /login, as real sites do)."""
        for attempt in range(3):
            try:
                await page.goto(url)
                return
            except PlaywrightError as error:
                if "interrupted by another navigation" not in str(error) or attempt == 2:
                    raise
                await page.wait_for_load_state()

    async def _open(self, page: Page, path: str, first: _Capture | None = None) -> None:
        """Goes to a creator page, logging in through the form where there is one. `first`:
        the capture of a crawl this page begins, which forgets what came before the login."""
        url = self.options.base_url.rstrip("/") + path
        await self._goto(page, url)
        if urlparse(page.url).path.rstrip("/") != "/login":
            return
        if not self.options.login_uid:
            raise CrawlFailed("logged out: the login page replaced the creator pages", login_state=e.LOGIN_STATE_LOGGED_OUT)
        await page.select_option("select[name=uid]", self.options.login_uid)
        await page.fill("input[name=password]", self.options.login_password)
        await page.click("button[type=submit]")
        await page.wait_for_load_state()
        if urlparse(page.url).path.rstrip("/") == "/login":
            raise CrawlFailed("logged out: the login form refused the credentials", login_state=e.LOGIN_STATE_LOGGED_OUT)
        # The page the login lands on loads its answers too: they are let finish (the next
        # navigation would cut them off, unread) and, on a crawl's first page, forgotten.
        await page.wait_for_load_state("networkidle")
        if first is not None:
            await first.settle()
            first.forget()
        await self._goto(page, url)

    async def _load_all(self, page: Page) -> None:
        """Scrolls until the page says everything is loaded."""
        deadline = asyncio.get_running_loop().time() + self.options.page_timeout
        while await page.evaluate("document.body.dataset.loaded") != "all":
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the page never finished loading")
            await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            await page.wait_for_timeout(100)

    # -------------------------------------------------------------------- crawl

    async def crawl(self) -> CrawlResult:
        async with self._turn:
            return await self._crawl_once()

    async def _crawl_once(self) -> CrawlResult:
        try:
            return await self._crawl()
        except TimeoutError as error:
            raise CrawlFailed(f"the works page: {error}") from None
        except PlaywrightError as error:
            if "closed" in str(error).lower():
                self._forget()
            raise CrawlFailed(f"browser: {error.message.splitlines()[0] if error.message else error}") from None

    async def _crawl(self) -> CrawlResult:
        page = await self._page()
        capture = _Capture()
        capture.attach(page)
        try:
            return await self._crawl_pages(page, capture)
        finally:
            capture.detach(page)

    async def _crawl_pages(self, page: Page, capture: _Capture) -> CrawlResult:
        errors: list[str] = []

        await self._open(page, WORKS_PAGE, first=capture)
        try:
            await self._load_all(page)
        finally:
            await capture.settle()
            if capture.broken:
                unreadable = ", ".join(capture.broken)
                raise CrawlFailed(f"unreadable answers from {unreadable}")
        if capture.logged_out:
            raise CrawlFailed("logged out: the platform answered 'not logged in'", login_state=e.LOGIN_STATE_LOGGED_OUT)
        users = [body["user"] for body in capture.bodies.get(USER_INFO, []) if isinstance(body.get("user"), dict)]
        profile = account_of(self.account_id, users[0] if users else {}, self.options.base_url)
        me = e.User(user_id=profile.user_id, user_name=profile.user_name, avatar=profile.avatar)
        works = capture.items(WORK_LIST, "item_info_list")
        complete: set[str] = set()
        if capture.ended(WORK_LIST):
            complete.add("contents")

        comments_whole = True
        for work in works:
            item_id = str(work.get("aweme_id") or work.get("item_id") or "")
            try:
                await self._open(page, f"{COMMENTS_PAGE}?item_id={item_id}")
                await self._load_all(page)
                for button in await page.locator("button.more-replies").all():
                    await button.click()
                await page.wait_for_load_state("networkidle")
            except (TimeoutError, PlaywrightError) as error:
                comments_whole = False
                errors.append(f"comments of {item_id}: {error}")
            # Every answer read before the page goes elsewhere: after that its body is gone.
            await capture.settle()
        if comments_whole and "contents" in complete and capture.intact(COMMENT_LIST, REPLY_LIST):
            complete.add("comments")

        conversations: list[dict[str, Any]] = []
        try:
            await self._open(page, CHAT_PAGE)
            await self._load_all(page)
            await capture.settle()
            conversations = capture.items(CONVERSATION_LIST, "conversations")
            for conversation in conversations:
                await self._open(page, f"{CHAT_PAGE}?conversation_id={conversation['conversation_id']}")
                await self._load_all(page)
                await capture.settle()  # as above: before the next conversation's page
            if capture.ended(CONVERSATION_LIST) and capture.intact(MESSAGE_HISTORY):
                complete.update(("conversations", "messages"))
        except (TimeoutError, PlaywrightError) as error:
            errors.append(f"private messages: {error}")
        await capture.settle()
        if capture.logged_out:
            raise CrawlFailed("logged out during the crawl", login_state=e.LOGIN_STATE_LOGGED_OUT)
        for path, count in capture.broken.items():
            errors.append(f"{count} unreadable answer(s) from {path}")
        for path, count in capture.lost.items():
            errors.append(f"{count} answer(s) from {path} gone before they were read")

        view, mapping_errors = self._view(profile, me, works, capture, conversations)
        errors += mapping_errors
        if mapping_errors:
            complete.clear()  # what could not be read must not be taken for deleted
        return CrawlResult(view, frozenset(complete), e.LOGIN_STATE_LOGGED_IN, errors)

    def _view(
        self,
        profile: e.Account,
        me: e.User,
        works: list[dict[str, Any]],
        capture: _Capture,
        conversations: list[dict[str, Any]],
    ) -> tuple[AccountView, list[str]]:
        base = self.options.base_url
        errors: list[str] = []
        batch = sync_pb2.EntityBatch()

        def add(target: Any, convert: Any, raw: dict[str, Any], *args: Any) -> Any:
            try:
                entity = convert(raw, *args)
            except (MappingError, TypeError, ValueError) as error:
                errors.append(f"unreadable item: {error}")
                return None
            target.append(entity)
            return entity

        for work in works:
            add(batch.contents, content_of, work, base)
        for raw in capture.items(COMMENT_LIST, "comments") + capture.items(REPLY_LIST, "comments"):
            add(batch.comments, comment_of, raw, base)
        participants: dict[str, e.User] = {}
        for raw in conversations:
            conversation = add(batch.conversations, conversation_of, raw, base)
            if conversation is not None:
                participants[conversation.conversation_id] = conversation.participant
        for raw in capture.items(MESSAGE_HISTORY, "messages"):
            participant = participants.get(str(raw.get("conversation_id")), user_of({}, base))
            add(batch.messages, message_of, raw, me, participant)
        return AccountView.from_batch(profile, batch), errors

    # ----------------------------------------------------------------- commands

    async def perform(self, command: sync_pb2.Command) -> sync_pb2.CommandResult:
        async with self._turn:
            return await self._perform(command)

    async def _perform(self, command: sync_pb2.Command) -> sync_pb2.CommandResult:
        try:
            page = await self._page()
            if command.HasField("reply_to_comment"):
                return await self._reply(page, command.reply_to_comment)
            if command.HasField("send_message"):
                return await self._send(page, command.send_message)
            return _failed(e.FAILURE_REASON_PLATFORM_ERROR, "unknown command")
        except CrawlFailed as error:
            return _failed(e.FAILURE_REASON_LOGIN_EXPIRED, str(error))
        except (TimeoutError, PlaywrightError) as error:
            return _failed(e.FAILURE_REASON_PLATFORM_ERROR, f"browser: {str(error).splitlines()[0]}")

    async def _reply(self, page: Page, reply: sync_pb2.ReplyToComment) -> sync_pb2.CommandResult:
        await self._open(page, f"{COMMENTS_PAGE}?item_id={reply.content_id}")
        await self._load_all(page)
        target = page.locator(f'li.comment[data-cid="{reply.comment_id}"]')
        if await target.count() == 0:
            return _failed(e.FAILURE_REASON_TARGET_NOT_FOUND, f"no comment {reply.comment_id} on work {reply.content_id}")
        await target.locator("textarea").first.fill(reply.text)
        async with page.expect_response(lambda r: urlparse(r.url).path == PUBLISH) as answer:
            await target.locator(".reply-box button").first.click()
        return _result(await (await answer.value).json(), "comment", "cid")

    async def _send(self, page: Page, message: sync_pb2.SendMessage) -> sync_pb2.CommandResult:
        await self._open(page, f"{CHAT_PAGE}?conversation_id={message.conversation_id}")
        await self._load_all(page)
        box = page.locator("#chat textarea")
        if await box.count() == 0:
            return _failed(e.FAILURE_REASON_TARGET_NOT_FOUND, f"no conversation {message.conversation_id}")
        await box.fill(message.text)
        async with page.expect_response(lambda r: urlparse(r.url).path == SEND) as answer:
            await page.locator("#chat button").click()
        return _result(await (await answer.value).json(), "message", "server_id")


def _result(body: dict[str, Any], key: str, id_key: str) -> sync_pb2.CommandResult:
    status = int(body.get("status_code", -1))
    if status == 0:
        result = sync_pb2.CommandResult(outcome=sync_pb2.COMMAND_OUTCOME_SENT, created_id=str((body.get(key) or {}).get(id_key, "")))
        result.performed_at.GetCurrentTime()
        return result
    return _failed(_REFUSALS.get(status, e.FAILURE_REASON_PLATFORM_ERROR), str(body.get("status_msg", f"status {status}")))


def _failed(reason: e.FailureReason.ValueType, message: str) -> sync_pb2.CommandResult:
    return sync_pb2.CommandResult(outcome=sync_pb2.COMMAND_OUTCOME_FAILED, reason=reason, message=message)
