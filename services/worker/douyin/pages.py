"""The creator center's addresses, and moving about its pages as a person would: going to
a page (again, when the page's own script went elsewhere meanwhile), scrolling a list until
it says it is all loaded, and expanding every comment's replies."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlparse

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from .capture import Capture

WORKS_PAGE = "/creator-micro/content/manage"
COMMENTS_PAGE = "/creator-micro/interactive/comment"
CHAT_PAGE = "/creator-micro/data/following/chat"
NOTICE_PAGE = "/creator-micro/interactive/notice"
LOGIN_PAGE = "/login"

USER_INFO = "/aweme/v1/creator/user/info/"
WORK_LIST = "/aweme/v1/creator/item/list/"
COMMENT_LIST = "/aweme/v1/web/comment/list/select/"
REPLY_LIST = "/aweme/v1/web/comment/list/reply/"
CONVERSATION_LIST = "/aweme/v1/im/conversation/list/"
MESSAGE_HISTORY = "/aweme/v1/im/message/history/"
NOTICE_LIST = "/aweme/v1/web/notice/"
PUBLISH = "/aweme/v1/web/comment/publish/"
SEND = "/aweme/v1/im/message/send/"
GET_QRCODE = "/passport/web/get_qrcode/"
CHECK_QRCODE = "/passport/web/check_qrconnect/"
SMS_VERIFY = "/passport/web/sms_verify/"
LIVE_SOCKET = "/ws/im"

# A button that still does nothing after this long is taken for stuck.
_STALL_SECONDS = 3.0


def on_login_page(page: Page) -> bool:
    return urlparse(page.url).path.rstrip("/") == LOGIN_PAGE


async def goto(page: Page, url: str) -> None:
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


class Unreadable(Exception):
    """An answer the page needed to go on could not be read: it will not finish loading."""


async def load_all(page: Page, timeout: float, capture: Capture | None = None) -> None:
    """Scrolls until the page says everything is loaded; with `capture`, gives up as soon
    as one of the page's answers is unreadable (the page's script stops there)."""
    deadline = time.monotonic() + timeout
    troubles = len(capture.troubles) if capture is not None else 0
    while await page.evaluate("document.body.dataset.loaded") != "all":
        if capture is not None and len(capture.troubles) > troubles:
            trouble = capture.troubles[-1]
            raise Unreadable(
                f"an answer of {trouble.path} was {'unreadable' if trouble.kind == 'unreadable' else 'lost'}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"the list never finished loading ({timeout:g} s)")
        await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        await page.wait_for_timeout(50)


async def expand_replies(page: Page, capture: Capture, item_id: str, timeout: float) -> None:
    """Clicks "more replies" until every comment of the work whose replies the page offers
    has them read to their last page.

    The page removes each button it was clicked and may add a new one for the next page,
    so a button is always looked up afresh (never by its position), one click at a time,
    each awaited until its answer is read; what the answers say, not the buttons, decides
    when it is done."""
    deadline = time.monotonic() + timeout
    stalled_since: float | None = None
    while True:
        await capture.settle()
        waiting = _comments_with_unread_replies(capture, item_id)
        if not waiting:
            return
        button = page.locator("button.more-replies").first
        if await button.count() == 0:
            # The answer came but the page has not drawn the next button yet, or never will.
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > _STALL_SECONDS or time.monotonic() > deadline:
                raise TimeoutError(f"the replies of {len(waiting)} comment(s) never finished loading")
            await asyncio.sleep(0.03)
            continue
        stalled_since = None
        if time.monotonic() > deadline:
            raise TimeoutError(f"the replies of {len(waiting)} comment(s) still loading after {timeout:g} s")
        try:
            async with page.expect_response(
                lambda answer: urlparse(answer.url).path == REPLY_LIST, timeout=timeout * 1000
            ):
                await button.click(timeout=_STALL_SECONDS * 1000)
        except PlaywrightError as error:
            if "Timeout" not in str(error):
                raise
            # The button went away as it was clicked (the page redrew): look again.


def _comments_with_unread_replies(capture: Capture, item_id: str) -> list[str]:
    """Comments of the work whose replies the list says exist but are not read to the end."""
    out = []
    for comment in capture.items(COMMENT_LIST, "comments", item_id=item_id):
        cid = str(comment.get("cid", ""))
        if int(comment.get("reply_comment_total") or 0) > 0 and not capture.ended(REPLY_LIST, comment_id=cid):
            if not capture.trouble(REPLY_LIST, comment_id=cid):  # a broken answer is reported, not retried
                out.append(cid)
    return out
