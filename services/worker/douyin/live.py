"""New private messages as the chat page receives them.

While an account's chat page is open, the platform pushes every new message to it over the
page's socket. The worker keeps that page open (one per account, beside the crawls) and
reads the frames the page receives, as the page's own script does: each new message, with
its conversation, is handed on at once, mapped exactly as the crawl maps the history, so
that the crawl that reads it again changes nothing. The periodic crawl stays, as the check
that nothing was missed while the page was away.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from playwright.async_api import BrowserContext, Page, WebSocket
from playwright.async_api import Error as PlaywrightError

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2

from ..adapter import CrawlFailed, LiveSink
from ..browser import close_page, new_page
from .mapping import MappingError, conversation_of, message_of
from .pages import CHAT_PAGE, LIVE_SOCKET, goto, on_login_page

log = logging.getLogger(__name__)


def batch_of(frame: Any, me: e.User, base_url: str) -> sync_pb2.EntityBatch | None:
    """The entities a pushed frame carries; None for a frame that is not a new message."""
    if not isinstance(frame, dict) or frame.get("type") != "new_message":
        return None
    raw_message, raw_conversation = frame.get("message"), frame.get("conversation")
    if not isinstance(raw_message, dict) or not isinstance(raw_conversation, dict):
        return None
    try:
        conversation = conversation_of(raw_conversation, base_url)
        message = message_of(raw_message, me, conversation.participant)
    except (MappingError, TypeError, ValueError, AttributeError):
        return None
    return sync_pb2.EntityBatch(conversations=[conversation], messages=[message])


async def watch_chat(context: BrowserContext, base_url: str, me: Callable[[], e.User], sink: LiveSink) -> None:
    """Keeps a chat page open and hands `sink` every new message it receives, until
    cancelled; raises CrawlFailed when the page finds itself logged out."""
    page = await new_page(context)
    frames: asyncio.Queue[str | bytes] = asyncio.Queue()
    navigated = asyncio.Event()
    # The page closed under the watch: the browser went away or crashed.
    gone = asyncio.Event()
    page.on("close", lambda _: gone.set())
    page.on("crash", lambda _: gone.set())

    def on_socket(socket: WebSocket) -> None:
        if urlparse(socket.url).path == LIVE_SOCKET:
            socket.on("framereceived", frames.put_nowait)

    page.on("websocket", on_socket)
    page.on("framenavigated", lambda frame: navigated.set() if frame == page.main_frame else None)
    try:
        await goto(page, base_url.rstrip("/") + CHAT_PAGE)
        if on_login_page(page):
            raise CrawlFailed("logged out: the chat page went to the login page", login_state=e.LOGIN_STATE_LOGGED_OUT)
        navigated.clear()
        while True:
            frame = await _next(frames, navigated, gone)
            if gone.is_set():
                raise PlaywrightError("the chat page closed under the watch (the browser went away)")
            if frame is None:
                await _check_still_in(page)
                continue
            try:
                batch = batch_of(json.loads(frame), me(), base_url)
            except ValueError:
                log.warning("an unreadable frame on the chat page's socket")
                continue
            if batch is not None:
                sink(batch)
    finally:
        await close_page(page)


async def _next(
    frames: asyncio.Queue[str | bytes], navigated: asyncio.Event, gone: asyncio.Event
) -> str | bytes | None:
    """The next frame, or None once the page navigated (it may have been logged out) or closed."""
    if navigated.is_set():
        navigated.clear()
        return None
    getting = asyncio.ensure_future(frames.get())
    moved = asyncio.ensure_future(navigated.wait())
    closed = asyncio.ensure_future(gone.wait())
    try:
        await asyncio.wait({getting, moved, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        moved.cancel()
        closed.cancel()
        if not getting.done():
            getting.cancel()
    if getting.done() and not getting.cancelled():
        return getting.result()
    navigated.clear()
    return None


async def _check_still_in(page: Page) -> None:
    await page.wait_for_load_state()
    if on_login_page(page):
        raise CrawlFailed("logged out: the chat page went to the login page", login_state=e.LOGIN_STATE_LOGGED_OUT)
