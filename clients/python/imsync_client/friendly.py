"""The friendly layer over ImClient: lists walked page by page with typed filters, events
followed for good, and the actions a person takes (reply, send, mark read, pin, mute).

    inbox = Inbox(connect("127.0.0.1:50051", api_key=KEY))
    async for conversation in inbox.conversations("douyin-001", is_pinned=True):
        ...
    reply = await inbox.send_message(conversation.conversation_id, "您好", account_id="douyin-001")
    async for event in inbox.events(account_ids=["douyin-001"]):
        ...
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import contents_pb2 as cnt
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import discussions_pb2 as dis
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import messages_pb2 as msg
from imsync.v1 import replies_pb2 as rep
from imsync.v1 import sync_pb2
from imsync.v1 import unified_messages_pb2 as uni

from .query import ImClient

log = logging.getLogger(__name__)

T = TypeVar("T")


class EventsMissed(Exception):
    """The master no longer holds the events after the last one seen (it restarted, or
    the client fell too far behind): reload what is shown, then follow events anew."""


# Failures after which following events reconnects instead of giving up.
_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL}


async def walk(call: Callable[[Any], Awaitable[Any]], request: Any, items: str) -> AsyncIterator[Any]:
    """Every item of a paged list: calls again with each response's cursor until has_more is false."""
    while True:
        page = await call(request)
        for item in getattr(page, items):
            yield item
        if not page.has_more:
            return
        request.cursor = page.cursor


def _stamp(when: datetime | None) -> Timestamp | None:
    if when is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _set(**fields: Any) -> dict[str, Any]:
    """The filters given (None leaves one out, so that "not asked" differs from False)."""
    return {name: value for name, value in fields.items() if value is not None}


class Inbox:
    """Everything a person does with the inbox, over an ImClient. Filters are keyword
    arguments with their types (a typo is a type error); None leaves a filter out."""

    def __init__(self, client: ImClient, *, page_size: int = 100) -> None:
        self.client = client
        self.page_size = page_size

    # lists, walked page by page

    def accounts(
        self, *, status: e.AccountStatus.ValueType | None = None, platform: e.Platform.ValueType | None = None
    ) -> AsyncIterator[e.Account]:
        request = acc.ListAccountsRequest(count=self.page_size, **_set(status=status, platform=platform))
        return walk(self.client.list_accounts, request, "users")

    def conversations(
        self,
        account_id: str,
        *,
        status: e.ConversationStatus.ValueType | None = None,
        is_pinned: bool | None = None,
        is_muted: bool | None = None,
    ) -> AsyncIterator[e.Conversation]:
        request = conv.ListConversationsRequest(
            account_id=account_id, count=self.page_size, **_set(status=status, is_pinned=is_pinned, is_muted=is_muted)
        )
        return walk(self.client.list_conversations, request, "conversations")

    def messages(
        self,
        account_id: str,
        *,
        conversation_id: str | None = None,
        sender_id: str | None = None,
        receiver_id: str | None = None,
        status: e.MessageStatus.ValueType | None = None,
        message_type: e.MessageType.ValueType | None = None,
        since: datetime | None = None,
    ) -> AsyncIterator[e.Message]:
        request = msg.ListMessagesRequest(
            account_id=account_id,
            count=self.page_size,
            **_set(
                conversation_id=conversation_id,
                sender_id=sender_id,
                receiver_id=receiver_id,
                status=status,
                message_type=message_type,
                since_time=_stamp(since),
            ),
        )
        return walk(self.client.list_messages, request, "messages")

    def contents(
        self, account_id: str, *, content_type: e.ContentType.ValueType | None = None, is_new: bool | None = None
    ) -> AsyncIterator[e.Content]:
        request = cnt.ListContentsRequest(
            account_id=account_id, count=self.page_size, **_set(content_type=content_type, is_new=is_new)
        )
        return walk(self.client.list_contents, request, "contents")

    def discussions(
        self,
        account_id: str,
        *,
        content_id: str | None = None,
        parent_comment_id: str | None = None,
        is_read: bool | None = None,
        is_new: bool | None = None,
    ) -> AsyncIterator[e.Comment]:
        request = dis.ListDiscussionsRequest(
            account_id=account_id,
            count=self.page_size,
            **_set(
                content_id=content_id,
                parent_comment_id=parent_comment_id,
                is_read=is_read,
                is_new=is_new,
            ),
        )
        return walk(self.client.list_discussions, request, "discussions")

    def unified(
        self,
        account_id: str,
        *,
        types: Iterable[uni.UnifiedMessageType.ValueType] = (),
        is_read: bool | None = None,
        is_new: bool | None = None,
        since: datetime | None = None,
    ) -> AsyncIterator[uni.UnifiedMessage]:
        request = uni.ListUnifiedMessagesRequest(
            account_id=account_id,
            count=self.page_size,
            types=list(types),
            **_set(is_read=is_read, is_new=is_new, since_time=_stamp(since)),
        )
        return walk(self.client.list_unified_messages, request, "messages")

    async def stats(self, account_id: str) -> uni.GetUnifiedStatsResponse:
        """What is unread in the account's inbox."""
        return await self.client.get_unified_stats(uni.GetUnifiedStatsRequest(account_id=account_id))

    # replies

    async def reply_to_comment(
        self, comment_id: str, text: str, *, account_id: str = "", request_id: str | None = None
    ) -> rep.Reply:
        """Answers a comment under a work; returns the reply (pending until its worker has
        typed it; see wait_for_reply). Sending again with the same request id is safe."""
        request = rep.SendReplyRequest(
            account_id=account_id,
            request_id=request_id or _new_request_id(),
            reply_to_comment=sync_pb2.ReplyToComment(comment_id=comment_id, text=text),
        )
        return (await self.client.send_reply(request)).reply

    async def send_message(
        self, conversation_id: str, text: str, *, account_id: str = "", request_id: str | None = None
    ) -> rep.Reply:
        """Sends a private message in a conversation; as reply_to_comment otherwise."""
        request = rep.SendReplyRequest(
            account_id=account_id,
            request_id=request_id or _new_request_id(),
            send_message=sync_pb2.SendMessage(conversation_id=conversation_id, text=text),
        )
        return (await self.client.send_reply(request)).reply

    async def wait_for_reply(
        self, request_id: str, *, account_id: str = "", timeout: float = 120.0, every: float = 0.5
    ) -> rep.Reply:
        """The reply once it is sent or failed (TimeoutError if it is still pending after `timeout`)."""
        async with asyncio.timeout(timeout):
            while True:
                reply = (
                    await self.client.get_reply(rep.GetReplyRequest(request_id=request_id, account_id=account_id))
                ).reply
                if reply.state != rep.REPLY_STATE_PENDING:
                    return reply
                await asyncio.sleep(every)

    # marks

    async def mark_read(self, item_id: str, *, account_id: str = "") -> uni.UnifiedMessage:
        """Marks one inbox item read ("comment:<id>", "message:<id>", "notification:<id>")."""
        request = uni.MarkUnifiedMessageReadRequest(account_id=account_id, id=item_id)
        return (await self.client.mark_unified_message_read(request)).message

    async def mark_many_read(self, item_ids: Iterable[str], *, account_id: str = "") -> int:
        """Marks inbox items read; returns how many were unread."""
        request = uni.MarkUnifiedMessagesReadRequest(account_id=account_id, ids=list(item_ids))
        return (await self.client.mark_unified_messages_read(request)).marked_count

    async def mark_conversation_read(self, conversation_id: str, *, account_id: str = "") -> e.Conversation:
        request = conv.MarkConversationReadRequest(account_id=account_id, conversation_id=conversation_id)
        return (await self.client.mark_conversation_read(request)).conversation

    async def pin(self, conversation_id: str, *, account_id: str = "") -> e.Conversation:
        request = conv.PinConversationRequest(account_id=account_id, conversation_id=conversation_id)
        return (await self.client.pin_conversation(request)).conversation

    async def unpin(self, conversation_id: str, *, account_id: str = "") -> e.Conversation:
        request = conv.UnpinConversationRequest(account_id=account_id, conversation_id=conversation_id)
        return (await self.client.unpin_conversation(request)).conversation

    async def mute(self, conversation_id: str, *, account_id: str = "") -> e.Conversation:
        request = conv.MuteConversationRequest(account_id=account_id, conversation_id=conversation_id)
        return (await self.client.mute_conversation(request)).conversation

    async def unmute(self, conversation_id: str, *, account_id: str = "") -> e.Conversation:
        request = conv.UnmuteConversationRequest(account_id=account_id, conversation_id=conversation_id)
        return (await self.client.unmute_conversation(request)).conversation

    # events

    async def events(
        self,
        *,
        account_ids: Iterable[str] = (),
        types: Iterable[ev.EventType.ValueType] = (),
        after_event_id: str = "",
        backoff_max: float = 10.0,
    ) -> AsyncIterator[ev.Event]:
        """Events as they happen, for good: a broken stream is resumed after the last event
        seen, with backoff and jitter. Raises EventsMissed when resuming is impossible (the
        caller reloads, then follows again), and ends only with an error that retrying
        cannot mend."""
        last = after_event_id
        attempt = 0
        while True:
            request = ev.StreamEventsRequest(account_ids=list(account_ids), types=list(types), after_event_id=last)
            try:
                async for response in self.client.stream_events(request):
                    attempt = 0
                    last = response.event.event_id
                    yield response.event
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.OUT_OF_RANGE:
                    raise EventsMissed(error.details()) from error
                if error.code() not in _TRANSIENT:
                    raise
                log.info("event stream broke (%s); resuming after %r", error.code().name, last)
            attempt += 1
            await asyncio.sleep(random.uniform(0, min(backoff_max, 0.1 * 2**attempt)))


def _new_request_id() -> str:
    return f"py-{secrets.token_hex(8)}"
