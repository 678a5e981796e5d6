"""The list reads the embedded gateway takes as JSON: a page of conversations, of messages,
of the unified inbox. Each is its servicer's read (the same authorization, the same
errors) with the store asked for its items as JSON (model/json_views.py) instead of
views; the gateway joins them into its answer without building a message per item.
A store that keeps no encodings answers with views, in the response as usual."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message

from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import messages_pb2 as msg
from imsync.v1 import unified_messages_pb2 as uni
from services.common.protojson import EncodedReply
from services.master.api.queries import ConversationServicer, MessageServicer, UnifiedMessageServicer
from services.master.model.json_views import JsonViews
from services.master.model.store import Page

Read = Callable[[Any, Any, Any, JsonViews], Awaitable[EncodedReply]]


def _reply(response: Message, field: str, page: Page[Any]) -> EncodedReply:
    if page.encoded is None:
        getattr(response, field).extend(page.items)
    return EncodedReply(response, field, page.encoded)


async def _conversations(
    servicer: ConversationServicer, request: conv.ListConversationsRequest, context: Any, views: JsonViews
) -> EncodedReply:
    page = await servicer.conversations_page(request, context, views)
    return _reply(conv.ListConversationsResponse(cursor=page.cursor, has_more=page.has_more), "conversations", page)


async def _messages(
    servicer: MessageServicer, request: msg.ListMessagesRequest, context: Any, views: JsonViews
) -> EncodedReply:
    page = await servicer.messages_page(request, context, views)
    return _reply(msg.ListMessagesResponse(cursor=page.cursor, has_more=page.has_more), "messages", page)


async def _unified(
    servicer: UnifiedMessageServicer, request: uni.ListUnifiedMessagesRequest, context: Any, views: JsonViews
) -> EncodedReply:
    page = await servicer.unified_page(request, context, views)
    return _reply(uni.ListUnifiedMessagesResponse(cursor=page.cursor, has_more=page.has_more), "messages", page)


def _path(module: Any, service: str, method: str) -> str:
    return f"/{module.DESCRIPTOR.services_by_name[service].full_name}/{method}"


# gRPC method path -> the servicer class it is read from, and the read.
READS: dict[str, tuple[type, Read]] = {
    _path(conv, "ConversationService", "ListConversations"): (ConversationServicer, _conversations),
    _path(msg, "MessageService", "ListMessages"): (MessageServicer, _messages),
    _path(uni, "UnifiedMessageService", "ListUnifiedMessages"): (UnifiedMessageServicer, _unified),
}
