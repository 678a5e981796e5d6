"""One crawl of an account's creator center, on a page of its own: works, every work's
comments with their replies, the private-message conversations with their histories, and
the notifications. It reads every page of every list, or says which it could not and why.

A collection counts as read whole only when each of its lists was read to its last page
with every answer intact; a collection that is not whole is reported with what it missed
(`CrawlResult.missed`), and nothing missing from it is taken for deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2

from ..account_state import AccountView
from ..adapter import CrawlFailed, CrawlResult
from .capture import Capture
from .mapping import (
    MappingError,
    account_of,
    comment_of,
    content_of,
    conversation_of,
    message_of,
    notification_of,
    user_of,
)
from .pages import (
    CHAT_PAGE,
    COMMENT_LIST,
    COMMENTS_PAGE,
    CONVERSATION_LIST,
    MESSAGE_HISTORY,
    NOTICE_LIST,
    NOTICE_PAGE,
    REPLY_LIST,
    USER_INFO,
    WORK_LIST,
    WORKS_PAGE,
    Unreadable,
    expand_replies,
    goto,
    load_all,
    on_login_page,
)

COLLECTIONS: tuple[str, ...] = ("contents", "comments", "conversations", "messages", "notifications")


def _short(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass
class Crawl:
    page: Page
    capture: Capture
    base_url: str
    account_id: str
    timeout: float
    # Collection -> what of it was missed (parts joined with "; ").
    missed: dict[str, list[str]] = field(default_factory=dict)

    def miss(self, collection: str, what: str) -> None:
        self.missed.setdefault(collection, []).append(what)

    async def open(self, path: str) -> None:
        await goto(self.page, self.base_url.rstrip("/") + path)
        if on_login_page(self.page):
            raise CrawlFailed(
                "logged out: the login page replaced the creator pages", login_state=e.LOGIN_STATE_LOGGED_OUT
            )

    async def run(self) -> CrawlResult:
        await self._works()
        works = self.capture.items(WORK_LIST, "item_info_list")
        for work in works:
            await self._comments(str(work.get("aweme_id") or work.get("item_id") or ""))
        conversations = await self._chat()
        await self._notices()
        await self.capture.settle()
        if self.capture.logged_out:
            raise CrawlFailed("logged out during the crawl", login_state=e.LOGIN_STATE_LOGGED_OUT)
        return self._result(works, conversations)

    # ------------------------------------------------------------ collections

    async def _works(self) -> None:
        await self.open(WORKS_PAGE)
        try:
            await load_all(self.page, self.timeout, self.capture)
        except (TimeoutError, Unreadable):
            await self.capture.settle()
            if trouble := self.capture.trouble(WORK_LIST) or self.capture.trouble(USER_INFO):
                raise CrawlFailed(f"the works page: {trouble}", reason="UNREADABLE_ANSWER") from None
            raise
        await self.capture.settle()
        if self.capture.logged_out:
            raise CrawlFailed("logged out: the platform answered 'not logged in'", login_state=e.LOGIN_STATE_LOGGED_OUT)
        if not self.capture.bodies(USER_INFO) or not self.capture.bodies(WORK_LIST):
            trouble = self.capture.trouble(WORK_LIST) or self.capture.trouble(USER_INFO) or "no answer came"
            raise CrawlFailed(f"the works page: {trouble}", reason="UNREADABLE_ANSWER")
        if why := self.capture.unread_pages(WORK_LIST):
            self.miss("contents", f"the works list: {why}")
            self.miss("comments", "the works list was not read whole")

    async def _read(self, path: str) -> str:
        """Opens a page and loads all of it; "" or what stopped it."""
        try:
            await self.open(path)
            await load_all(self.page, self.timeout, self.capture)
        except (TimeoutError, PlaywrightError, Unreadable) as error:
            return _short(error)
        finally:
            await self.capture.settle()  # every answer read before the page goes elsewhere
        return ""

    def _whole(self, collection: str, what: str, stopped: str, path: str, **wanted: str) -> bool:
        """Whether a list was read to its end; if not, notes once what was missed and why
        (what the answers say first, else what stopped the page)."""
        why = self.capture.unread_pages(path, **wanted)
        if not why:
            return True
        self.miss(collection, f"{what}: {self.capture.trouble(path, **wanted) or stopped or why}")
        return False

    async def _comments(self, item_id: str) -> None:
        stopped = await self._read(f"{COMMENTS_PAGE}?item_id={item_id}")
        if not stopped:
            try:
                await expand_replies(self.page, self.capture, item_id, self.timeout)
            except (TimeoutError, PlaywrightError) as error:
                stopped = _short(error)
            finally:
                await self.capture.settle()
        if not self._whole("comments", f"work {item_id}", stopped, COMMENT_LIST, item_id=item_id):
            return
        for comment in self.capture.items(COMMENT_LIST, "comments", item_id=item_id):
            cid = str(comment.get("cid", ""))
            if int(comment.get("reply_comment_total") or 0) > 0:
                self._whole(
                    "comments", f"replies of comment {cid} on work {item_id}", stopped, REPLY_LIST, comment_id=cid
                )

    async def _chat(self) -> list[dict[str, Any]]:
        stopped = await self._read(CHAT_PAGE)
        if not self._whole("conversations", "the conversation list", stopped, CONVERSATION_LIST):
            self.miss("messages", "the conversation list was not read whole")
            if stopped:
                return self.capture.items(CONVERSATION_LIST, "conversations")
        conversations = self.capture.items(CONVERSATION_LIST, "conversations")
        for conversation in {str(c.get("conversation_id", "")): c for c in conversations}:
            opened = ""
            try:
                await self._open_conversation(conversation)
            except (TimeoutError, PlaywrightError) as error:
                opened = _short(error)
            await self.capture.settle()
            self._whole(
                "messages", f"conversation {conversation}", opened, MESSAGE_HISTORY, conversation_id=conversation
            )
        return conversations

    async def _open_conversation(self, conversation_id: str) -> None:
        """Opens a conversation in place, as a click on it does, and waits for its history."""
        item = self.page.locator(f'li.conversation[data-conversation-id="{conversation_id}"] a')
        await item.click()
        await self.page.wait_for_function(
            """id => new URLSearchParams(location.search).get("conversation_id") === id
                    && document.getElementById("chat").dataset.loaded === "all" """,
            arg=conversation_id,
            timeout=self.timeout * 1000,
        )

    async def _notices(self) -> None:
        stopped = await self._read(NOTICE_PAGE)
        self._whole("notifications", "the notification list", stopped, NOTICE_LIST)

    # ----------------------------------------------------------------- result

    def _result(self, works: list[dict[str, Any]], conversations: list[dict[str, Any]]) -> CrawlResult:
        capture, base = self.capture, self.base_url
        users = [body["user"] for body in capture.bodies(USER_INFO) if isinstance(body.get("user"), dict)]
        profile = account_of(self.account_id, users[0] if users else {}, base)
        me = e.User(user_id=profile.user_id, user_name=profile.user_name, avatar=profile.avatar)
        batch = sync_pb2.EntityBatch()
        unreadable: dict[str, int] = {}

        def add(collection: str, target: Any, convert: Any, raw: dict[str, Any], *args: Any) -> Any:
            try:
                entity = convert(raw, *args)
            except (MappingError, TypeError, ValueError, AttributeError):
                unreadable[collection] = unreadable.get(collection, 0) + 1
                return None
            target.append(entity)
            return entity

        for work in works:
            add("contents", batch.contents, content_of, work, base)
        for raw in capture.items(COMMENT_LIST, "comments") + capture.items(REPLY_LIST, "comments"):
            add("comments", batch.comments, comment_of, raw, base)
        participants: dict[str, e.User] = {}
        for raw in conversations:
            conversation = add("conversations", batch.conversations, conversation_of, raw, base)
            if conversation is not None:
                participants[conversation.conversation_id] = conversation.participant
        for raw in capture.items(MESSAGE_HISTORY, "messages"):
            participant = participants.get(str(raw.get("conversation_id")), user_of({}, base))
            add("messages", batch.messages, message_of, raw, me, participant)
        for raw in capture.items(NOTICE_LIST, "notice_list_v2"):
            add("notifications", batch.notifications, notification_of, raw, base)
        for collection, count in unreadable.items():
            # What could not be read must not be taken for deleted.
            self.miss(collection, f"{count} item(s) the adapter could not read")
        missed = {collection: "; ".join(parts) for collection, parts in self.missed.items()}
        complete = frozenset(c for c in COLLECTIONS if c not in missed)
        errors = [f"{collection}: {what}" for collection, what in missed.items()]
        return CrawlResult(AccountView.from_batch(profile, batch), complete, e.LOGIN_STATE_LOGGED_IN, errors, missed)
