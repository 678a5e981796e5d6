"""The friendly layer over ImClient: lists walked page by page, events followed for good.

    inbox = Inbox(ImClient.connect("127.0.0.1:50051"))
    async for conversation in inbox.conversations("douyin-001"):
        ...
    async for event in inbox.events(account_ids=["douyin-001"]):
        ...
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import contents_pb2 as cnt
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import discussions_pb2 as dis
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import messages_pb2 as msg
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


class Inbox:
    def __init__(self, client: ImClient, *, page_size: int = 100) -> None:
        self.client = client
        self.page_size = page_size

    def accounts(self, **filters: Any) -> AsyncIterator[e.Account]:
        return walk(self.client.list_accounts, acc.ListAccountsRequest(count=self.page_size, **filters), "users")

    def conversations(self, account_id: str, **filters: Any) -> AsyncIterator[e.Conversation]:
        request = conv.ListConversationsRequest(account_id=account_id, count=self.page_size, **filters)
        return walk(self.client.list_conversations, request, "conversations")

    def messages(self, account_id: str, **filters: Any) -> AsyncIterator[e.Message]:
        request = msg.ListMessagesRequest(account_id=account_id, count=self.page_size, **filters)
        return walk(self.client.list_messages, request, "messages")

    def contents(self, account_id: str, **filters: Any) -> AsyncIterator[e.Content]:
        request = cnt.ListContentsRequest(account_id=account_id, count=self.page_size, **filters)
        return walk(self.client.list_contents, request, "contents")

    def discussions(self, account_id: str, **filters: Any) -> AsyncIterator[e.Comment]:
        request = dis.ListDiscussionsRequest(account_id=account_id, count=self.page_size, **filters)
        return walk(self.client.list_discussions, request, "discussions")

    def unified(self, account_id: str, **filters: Any) -> AsyncIterator[uni.UnifiedMessage]:
        request = uni.ListUnifiedMessagesRequest(account_id=account_id, count=self.page_size, **filters)
        return walk(self.client.list_unified_messages, request, "messages")

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
