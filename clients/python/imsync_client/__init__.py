"""The typed Python client of imsync.

    from imsync_client import Inbox, connect

    async with connect("127.0.0.1:50051", api_key=KEY) as client:
        inbox = Inbox(client)
        async for item in inbox.unified("douyin-001", is_read=False):
            ...

`connect()` / ImClient: one typed call per IM RPC (an ImsyncError when refused). Inbox: lists
walked for you with typed filters, replies, marks, pins and events followed for good.
SyncClient: a SyncData stream driven step by step. The request and entity messages are
importable from here (or from `imsync_client.messages`, which has every one).
"""

from .errors import FieldViolation, ImsyncError
from .friendly import EventsMissed, Inbox, walk
from .messages import (
    Account,
    Comment,
    Content,
    Conversation,
    Event,
    EventType,
    GetReplyRequest,
    ListConversationsRequest,
    ListDiscussionsRequest,
    ListMessagesRequest,
    ListUnifiedMessagesRequest,
    MarkUnifiedMessagesReadRequest,
    Message,
    Reply,
    ReplyToComment,
    SendMessage,
    SendReplyRequest,
    UnifiedMessage,
    UnifiedMessageType,
)
from .query import SERVICE_CONFIG, ImClient, Tls, connect
from .sync import SyncClient, SyncRefused, split_batch

__all__ = [
    "SERVICE_CONFIG",
    "Account",
    "Comment",
    "Content",
    "Conversation",
    "Event",
    "EventType",
    "EventsMissed",
    "FieldViolation",
    "GetReplyRequest",
    "ImClient",
    "ImsyncError",
    "Inbox",
    "ListConversationsRequest",
    "ListDiscussionsRequest",
    "ListMessagesRequest",
    "ListUnifiedMessagesRequest",
    "MarkUnifiedMessagesReadRequest",
    "Message",
    "Reply",
    "ReplyToComment",
    "SendMessage",
    "SendReplyRequest",
    "SyncClient",
    "SyncRefused",
    "Tls",
    "UnifiedMessage",
    "UnifiedMessageType",
    "connect",
    "split_batch",
    "walk",
]
