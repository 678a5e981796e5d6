"""The Douyin adapter: an account's context in the worker's Chromium, reading what the
creator center's pages load, logging in through an operator, watching the chat page, and
typing replies into the pages.

Every task opens a page of its own in the account's context and closes it after; crawls
and replies take turns (a reply typed while a crawl reads would be read half-done), the
live chat page stays open beside them. The same adapter runs against the simulator or the
real site: only `base_url` differs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from playwright.async_api import BrowserContext, Page
from playwright.async_api import Error as PlaywrightError

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.observability import tracer

from ..adapter import CrawlFailed, CrawlResult, LiveSink, LoginFailed, LoginOperator
from ..browser import BrowserPool, close_page, new_page
from .capture import Capture
from .crawl import COLLECTIONS, Crawl
from .live import watch_chat
from .login import LoginOptions, log_in, password_login
from .pages import CHAT_PAGE, COMMENTS_PAGE, PUBLISH, SEND, Unreadable, goto, load_all, on_login_page

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
    # The account's storage state (cookies, local storage): its logged-in session.
    storage_state: Path
    # Only where the login page has a password form (the simulator); the real site asks
    # for a QR scan, relayed to an operator.
    login_uid: str = ""
    login_password: str = ""
    page_timeout: float = 20.0
    # New QR codes asked for after the first expires, before the login gives up.
    qr_refreshes: int = 3
    # How long an operator may take to type a code sent by SMS.
    code_wait: float = 300.0
    # Whether the chat page stays open to catch new messages as they come (else only the
    # crawls bring them).
    live_chat: bool = True


class DouyinAdapter:
    collections = COLLECTIONS

    def __init__(self, account_id: str, options: DouyinOptions, pool: BrowserPool) -> None:
        self.account_id = account_id
        self.options = options
        self.pool = pool
        # A crawl and a reply must not use the account's pages at the same time.
        self._turn = asyncio.Lock()
        # The account as the platform last showed it: who "me" is in a live message.
        self._me = e.User()

    @property
    def _login(self) -> LoginOptions:
        o = self.options
        return LoginOptions(o.base_url, o.login_uid, o.login_password, o.qr_refreshes, o.code_wait, o.page_timeout)

    async def _context(self) -> BrowserContext:
        return await self.pool.context(self.account_id, self.options.storage_state)

    @contextlib.asynccontextmanager
    async def _page(self) -> AsyncIterator[Page]:
        page = await new_page(await self._context())
        try:
            yield page
        finally:
            await close_page(page)

    async def close(self) -> None:
        await self.pool.discard(self.account_id)

    # -------------------------------------------------------------------- crawl

    async def crawl(self) -> CrawlResult:
        async with self._turn:
            try:
                return await self._crawl()
            except TimeoutError as error:
                raise CrawlFailed(f"the works page: {error}", reason="PAGE_TIMEOUT") from None
            except Unreadable as error:
                raise CrawlFailed(f"the works page: {error}", reason="UNREADABLE_ANSWER") from None
            except PlaywrightError as error:
                first = error.message.splitlines()[0] if error.message else str(error)
                raise CrawlFailed(
                    f"browser: {first}", reason="PAGE_TIMEOUT" if "Timeout" in first else "BROWSER_ERROR"
                ) from None

    async def _crawl(self) -> CrawlResult:
        async with self._page() as page:
            capture = Capture()
            capture.attach(page)
            options = self.options
            try:
                try:
                    result = await Crawl(page, capture, options.base_url, self.account_id, options.page_timeout).run()
                except CrawlFailed as failed:
                    if failed.login_state != e.LOGIN_STATE_LOGGED_OUT or not options.login_uid:
                        raise
                    # The simulator's shortcut: log in through its form, then read from scratch.
                    await password_login(page, self._login)
                    # The page the login lands on loads its answers too: they are let
                    # finish (the next navigation would cut them off, unread), then forgotten.
                    await page.wait_for_load_state("networkidle")
                    await capture.settle()
                    capture.forget()
                    result = await Crawl(page, capture, options.base_url, self.account_id, options.page_timeout).run()
            except LoginFailed as failed:
                raise CrawlFailed(f"logged out: {failed}", login_state=e.LOGIN_STATE_LOGGED_OUT) from None
            finally:
                capture.detach(page)
        account = result.view.account
        self._me = e.User(user_id=account.user_id, user_name=account.user_name, avatar=account.avatar)
        await self.pool.save(self.account_id)  # the platform may have renewed the session
        return result

    # -------------------------------------------------------------------- login

    async def log_in(self, operator: LoginOperator) -> None:
        async with self._page() as page:
            await log_in(page, self._login, operator)
        await self.pool.save(self.account_id)

    # --------------------------------------------------------------------- live

    async def watch(self, sink: LiveSink) -> None:
        if not self.options.live_chat:
            await asyncio.Event().wait()  # the crawls bring everything
        await watch_chat(await self._context(), self.options.base_url, lambda: self._me, sink)

    # ----------------------------------------------------------------- commands

    async def perform(self, command: sync_pb2.Command) -> sync_pb2.CommandResult:
        async with self._turn:
            try:
                async with self._page() as page:
                    if command.HasField("reply_to_comment"):
                        return await self._reply(page, command.reply_to_comment)
                    if command.HasField("send_message"):
                        return await self._send(page, command.send_message)
                    return _failed(e.FAILURE_REASON_PLATFORM_ERROR, "unknown command")
            except CrawlFailed as error:
                return _failed(e.FAILURE_REASON_LOGIN_EXPIRED, str(error))
            except (TimeoutError, PlaywrightError) as error:
                return _failed(e.FAILURE_REASON_PLATFORM_ERROR, f"browser: {str(error).splitlines()[0]}")

    async def _open(self, page: Page, path: str) -> None:
        await goto(page, self.options.base_url.rstrip("/") + path)
        if on_login_page(page):
            if not self.options.login_uid:
                raise CrawlFailed(
                    "logged out: the login page replaced the creator pages", login_state=e.LOGIN_STATE_LOGGED_OUT
                )
            await password_login(page, self._login)
            await goto(page, self.options.base_url.rstrip("/") + path)

    async def _reply(self, page: Page, reply: sync_pb2.ReplyToComment) -> sync_pb2.CommandResult:
        with tracer.start_as_current_span("open the work's comments"):
            await self._open(page, f"{COMMENTS_PAGE}?item_id={reply.content_id}")
            await load_all(page, self.options.page_timeout)
        target = page.locator(f'li.comment[data-cid="{reply.comment_id}"]')
        if await target.count() == 0:
            return _failed(
                e.FAILURE_REASON_TARGET_NOT_FOUND, f"no comment {reply.comment_id} on work {reply.content_id}"
            )
        with tracer.start_as_current_span("type the reply"):
            await target.locator("textarea").first.fill(reply.text)
        with tracer.start_as_current_span("click reply"):
            async with page.expect_response(lambda r: urlparse(r.url).path == PUBLISH) as answer:
                await target.locator(".reply-box button").first.click()
            return _result(await (await answer.value).json(), "comment", "cid")

    async def _send(self, page: Page, message: sync_pb2.SendMessage) -> sync_pb2.CommandResult:
        with tracer.start_as_current_span("open the conversation"):
            await self._open(page, f"{CHAT_PAGE}?conversation_id={message.conversation_id}")
            await load_all(page, self.options.page_timeout)
        box = page.locator("#chat textarea")
        if await box.count() == 0:  # the page opens the conversation as it loads, if it has it
            return _failed(e.FAILURE_REASON_TARGET_NOT_FOUND, f"no conversation {message.conversation_id}")
        with tracer.start_as_current_span("type the message"):
            await box.fill(message.text)
        with tracer.start_as_current_span("click send"):
            async with page.expect_response(lambda r: urlparse(r.url).path == SEND) as answer:
                await page.locator("#chat button").click()
            return _result(await (await answer.value).json(), "message", "server_id")


def _result(body: dict[str, Any], key: str, id_key: str) -> sync_pb2.CommandResult:
    status = int(body.get("status_code", -1))
    if status == 0:
        result = sync_pb2.CommandResult(
            outcome=sync_pb2.COMMAND_OUTCOME_SENT, created_id=str((body.get(key) or {}).get(id_key, ""))
        )
        result.performed_at.GetCurrentTime()
        return result
    return _failed(
        _REFUSALS.get(status, e.FAILURE_REASON_PLATFORM_ERROR), str(body.get("status_msg", f"status {status}"))
    )


def _failed(reason: e.FailureReason.ValueType, message: str) -> sync_pb2.CommandResult:
    return sync_pb2.CommandResult(outcome=sync_pb2.COMMAND_OUTCOME_FAILED, reason=reason, message=message)
