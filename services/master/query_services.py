"""The IM query services: each RPC turns its request into one store call.

Store errors become gRPC statuses in `answer`, the one boundary between them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import accounts_pb2_grpc
from imsync.v1 import contents_pb2 as cnt
from imsync.v1 import contents_pb2_grpc
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import conversations_pb2_grpc
from imsync.v1 import discussions_pb2 as dis
from imsync.v1 import discussions_pb2_grpc
from imsync.v1 import messages_pb2 as msg
from imsync.v1 import messages_pb2_grpc
from imsync.v1 import unified_messages_pb2 as uni
from imsync.v1 import unified_messages_pb2_grpc

from .account_state import ns_of
from .errors import StoreError
from .journal import JournalFailed
from .status import grpc_status_of
from .store import Store

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


async def answer(store: Store, context: Context, compute: Callable[[], T]) -> T:
    """Runs a store call; its errors end the RPC with their status.

    The answer waits until every change made so far is on disk (the store's journal), so
    that nothing a client is told, its own mark or another's, can be lost by a crash.
    """
    try:
        result = compute()
    except StoreError as error:
        status = grpc_status_of(error)
        await context.abort(status.code, status.details, status.trailing_metadata)
        raise  # abort() raises; this line is never reached
    persisted = store.persisted()
    if persisted is not None:
        try:
            await persisted
        except JournalFailed as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the master cannot store changes: {error}")
    return result


def _optional(message: Any, name: str) -> bool | None:
    return bool(getattr(message, name)) if message.HasField(name) else None


class AccountServicer(accounts_pb2_grpc.AccountServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def ListAccounts(self, request: acc.ListAccountsRequest, context: Context) -> acc.ListAccountsResponse:
        page = await answer(
            self._store, context,
            lambda: self._store.list_accounts(
                status=request.status, platform=request.platform, cursor=request.cursor, count=request.count
            ),
        )
        return acc.ListAccountsResponse(users=page.items, cursor=page.cursor, has_more=page.has_more)

    async def GetAccount(self, request: acc.GetAccountRequest, context: Context) -> acc.GetAccountResponse:
        account = await answer(self._store, context, lambda: self._store.get_account(request.account_id))
        return acc.GetAccountResponse(user=account)


class ConversationServicer(conversations_pb2_grpc.ConversationServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def ListConversations(
        self, request: conv.ListConversationsRequest, context: Context
    ) -> conv.ListConversationsResponse:
        page = await answer(
            self._store, context,
            lambda: self._store.list_conversations(
                request.account_id,
                status=request.status,
                is_pinned=_optional(request, "is_pinned"),
                is_muted=_optional(request, "is_muted"),
                cursor=request.cursor,
                count=request.count,
            ),
        )
        return conv.ListConversationsResponse(conversations=page.items, cursor=page.cursor, has_more=page.has_more)

    async def GetConversation(
        self, request: conv.GetConversationRequest, context: Context
    ) -> conv.GetConversationResponse:
        found = await answer(self._store, context, lambda: self._store.get_conversation(request.account_id, request.conversation_id))
        return conv.GetConversationResponse(conversation=found)

    async def MarkConversationRead(
        self, request: conv.MarkConversationReadRequest, context: Context
    ) -> conv.MarkConversationReadResponse:
        marked, found = await answer(
            self._store, context,
            lambda: self._store.mark_conversation_read(request.account_id, request.conversation_id, time.time_ns()),
        )
        return conv.MarkConversationReadResponse(marked_count=marked, conversation=found)

    async def PinConversation(
        self, request: conv.PinConversationRequest, context: Context
    ) -> conv.PinConversationResponse:
        found = await answer(self._store, context, lambda: self._store.set_pinned(request.account_id, request.conversation_id, True))
        return conv.PinConversationResponse(conversation=found)

    async def UnpinConversation(
        self, request: conv.UnpinConversationRequest, context: Context
    ) -> conv.UnpinConversationResponse:
        found = await answer(self._store, context, lambda: self._store.set_pinned(request.account_id, request.conversation_id, False))
        return conv.UnpinConversationResponse(conversation=found)

    async def MuteConversation(
        self, request: conv.MuteConversationRequest, context: Context
    ) -> conv.MuteConversationResponse:
        found = await answer(self._store, context, lambda: self._store.set_muted(request.account_id, request.conversation_id, True))
        return conv.MuteConversationResponse(conversation=found)

    async def UnmuteConversation(
        self, request: conv.UnmuteConversationRequest, context: Context
    ) -> conv.UnmuteConversationResponse:
        found = await answer(self._store, context, lambda: self._store.set_muted(request.account_id, request.conversation_id, False))
        return conv.UnmuteConversationResponse(conversation=found)


class MessageServicer(messages_pb2_grpc.MessageServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def ListMessages(self, request: msg.ListMessagesRequest, context: Context) -> msg.ListMessagesResponse:
        since = ns_of(request.since_time) if request.HasField("since_time") else None
        page = await answer(
            self._store, context,
            lambda: self._store.list_messages(
                request.account_id,
                conversation_id=request.conversation_id,
                sender_id=request.sender_id,
                receiver_id=request.receiver_id,
                status=request.status,
                message_type=request.message_type,
                since_ns=since,
                cursor=request.cursor,
                count=request.count,
            ),
        )
        return msg.ListMessagesResponse(messages=page.items, cursor=page.cursor, has_more=page.has_more)

    async def GetMessage(self, request: msg.GetMessageRequest, context: Context) -> msg.GetMessageResponse:
        found = await answer(self._store, context, lambda: self._store.get_message(request.account_id, request.message_id))
        return msg.GetMessageResponse(message=found)

    async def MarkMessageRead(
        self, request: msg.MarkMessageReadRequest, context: Context
    ) -> msg.MarkMessageReadResponse:
        found = await answer(
            self._store, context, lambda: self._store.mark_message_read(request.account_id, request.message_id, time.time_ns())
        )
        return msg.MarkMessageReadResponse(message=found)


class ContentServicer(contents_pb2_grpc.ContentServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def ListContents(self, request: cnt.ListContentsRequest, context: Context) -> cnt.ListContentsResponse:
        page = await answer(
            self._store, context,
            lambda: self._store.list_contents(
                request.account_id,
                content_type=request.content_type,
                is_new=_optional(request, "is_new"),
                cursor=request.cursor,
                count=request.count,
            ),
        )
        return cnt.ListContentsResponse(contents=page.items, cursor=page.cursor, has_more=page.has_more)

    async def GetContent(self, request: cnt.GetContentRequest, context: Context) -> cnt.GetContentResponse:
        found = await answer(self._store, context, lambda: self._store.get_content(request.account_id, request.content_id))
        return cnt.GetContentResponse(content=found)

    async def GetContentStats(
        self, request: cnt.GetContentStatsRequest, context: Context
    ) -> cnt.GetContentStatsResponse:
        found = await answer(self._store, context, lambda: self._store.get_content(request.account_id, request.content_id))
        return cnt.GetContentStatsResponse(stats=found.stats)

    async def MarkContentRead(
        self, request: cnt.MarkContentReadRequest, context: Context
    ) -> cnt.MarkContentReadResponse:
        marked, found = await answer(
            self._store, context, lambda: self._store.mark_content_read(request.account_id, request.content_id, time.time_ns())
        )
        return cnt.MarkContentReadResponse(marked_count=marked, content=found)


class DiscussionServicer(discussions_pb2_grpc.DiscussionServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def ListDiscussions(
        self, request: dis.ListDiscussionsRequest, context: Context
    ) -> dis.ListDiscussionsResponse:
        page = await answer(
            self._store, context,
            lambda: self._store.list_discussions(
                request.account_id,
                content_id=request.content_id,
                parent_comment_id=request.parent_comment_id,
                is_read=_optional(request, "is_read"),
                is_new=_optional(request, "is_new"),
                cursor=request.cursor,
                count=request.count,
            ),
        )
        return dis.ListDiscussionsResponse(discussions=page.items, cursor=page.cursor, has_more=page.has_more)

    async def GetDiscussion(self, request: dis.GetDiscussionRequest, context: Context) -> dis.GetDiscussionResponse:
        found = await answer(self._store, context, lambda: self._store.get_discussion(request.account_id, request.comment_id))
        return dis.GetDiscussionResponse(discussion=found)

    async def MarkDiscussionRead(
        self, request: dis.MarkDiscussionReadRequest, context: Context
    ) -> dis.MarkDiscussionReadResponse:
        found = await answer(
            self._store, context, lambda: self._store.mark_discussion_read(request.account_id, request.comment_id, time.time_ns())
        )
        return dis.MarkDiscussionReadResponse(discussion=found)


class UnifiedMessageServicer(unified_messages_pb2_grpc.UnifiedMessageServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def ListUnifiedMessages(
        self, request: uni.ListUnifiedMessagesRequest, context: Context
    ) -> uni.ListUnifiedMessagesResponse:
        page = await answer(
            self._store, context,
            lambda: self._store.list_unified(
                request.account_id,
                types=list(request.types),
                is_read=_optional(request, "is_read"),
                is_new=_optional(request, "is_new"),
                cursor=request.cursor,
                count=request.count,
            ),
        )
        return uni.ListUnifiedMessagesResponse(messages=page.items, cursor=page.cursor, has_more=page.has_more)

    async def GetUnifiedStats(
        self, request: uni.GetUnifiedStatsRequest, context: Context
    ) -> uni.GetUnifiedStatsResponse:
        stats = await answer(self._store, context, lambda: self._store.unified_stats(request.account_id))
        return uni.GetUnifiedStatsResponse(
            total_unread=stats.total_unread,
            unread_comments=stats.unread_comments,
            unread_discussions=stats.unread_discussions,
            unread_direct_messages=stats.unread_direct_messages,
        )

    async def MarkUnifiedMessageRead(
        self, request: uni.MarkUnifiedMessageReadRequest, context: Context
    ) -> uni.MarkUnifiedMessageReadResponse:
        def mark() -> uni.UnifiedMessage:
            self._store.get_unified(request.account_id, request.id)
            self._store.mark_unified_read(request.account_id, [request.id], time.time_ns())
            return self._store.get_unified(request.account_id, request.id)

        return uni.MarkUnifiedMessageReadResponse(message=await answer(self._store, context, mark))

    async def MarkUnifiedMessagesRead(
        self, request: uni.MarkUnifiedMessagesReadRequest, context: Context
    ) -> uni.MarkUnifiedMessagesReadResponse:
        marked = await answer(
            self._store, context, lambda: self._store.mark_unified_read(request.account_id, list(request.ids), time.time_ns())
        )
        return uni.MarkUnifiedMessagesReadResponse(marked_count=marked)
