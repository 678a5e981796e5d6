"""The list reads the embedded gateway takes as JSON: a page of conversations, of messages,
of the unified inbox. Each is its servicer's page (the same arguments, the same errors)
with the store asked for its items as JSON (model/json_views.py) instead of views; the
gateway joins them into its answer without building a message per item. A store that
keeps no encodings answers with views, in the response as usual.

The in-process channel (in_process.py) calls them directly, after the same authorization
and with the same error boundary as every call (rpc/boundary.py), but with no servicer
context and no gRPC-shaped layers between: a page that missed the gateway's cache is the
common read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from google.protobuf.message import Message

from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import messages_pb2 as msg
from imsync.v1 import unified_messages_pb2 as uni
from services.common.protojson import EncodedReply
from services.master.api.queries import ConversationServicer, Guarded, MessageServicer, UnifiedMessageServicer
from services.master.auth.api_keys import Access
from services.master.model.json_views import JsonViews
from services.master.model.store import Page


class PageRead(NamedTuple):
    """A list read of a servicer class: its page for a caller (the servicer, the request,
    the caller's access, the views to encode items with), and the response it answers,
    whose `field` holds the items."""

    servicer: type[Guarded]
    page: Callable[[Any, Any, Access, JsonViews], Awaitable[Page[Any]]]
    response: Callable[..., Message]
    field: str

    def reply(self, page: Page[Any]) -> EncodedReply:
        """The page as a reply: the response without its items, and their JSON."""
        response = self.response(cursor=page.cursor, has_more=page.has_more)
        if page.encoded is None:
            getattr(response, self.field).extend(page.items)
        return EncodedReply(response, self.field, page.encoded)


def _path(module: Any, service: str, method: str) -> str:
    return f"/{module.DESCRIPTOR.services_by_name[service].full_name}/{method}"


# gRPC method path -> its read.
READS: dict[str, PageRead] = {
    _path(conv, "ConversationService", "ListConversations"): PageRead(
        ConversationServicer, ConversationServicer.conversations_page, conv.ListConversationsResponse, "conversations"
    ),
    _path(msg, "MessageService", "ListMessages"): PageRead(
        MessageServicer, MessageServicer.messages_page, msg.ListMessagesResponse, "messages"
    ),
    _path(uni, "UnifiedMessageService", "ListUnifiedMessages"): PageRead(
        UnifiedMessageServicer, UnifiedMessageServicer.unified_page, uni.ListUnifiedMessagesResponse, "messages"
    ),
}
