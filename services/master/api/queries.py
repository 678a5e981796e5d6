"""The IM query services: each RPC turns its request into one store call.

Store errors become gRPC statuses in `answer`, the one boundary between them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import (
    accounts_pb2_grpc,
    contents_pb2_grpc,
    conversations_pb2_grpc,
    discussions_pb2_grpc,
    messages_pb2_grpc,
    unified_messages_pb2_grpc,
)
from imsync.v1 import contents_pb2 as cnt
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import discussions_pb2 as dis
from imsync.v1 import entities_pb2 as e
from imsync.v1 import messages_pb2 as msg
from imsync.v1 import unified_messages_pb2 as uni
from services.master.api import thread_list
from services.master.auth.api_keys import Access, ApiKeys
from services.master.model.errors import InvalidArgument, NotFound
from services.master.model.json_views import JsonViews
from services.master.model.keys import ns_of, split_item_key
from services.master.model.store import Page, Store
from services.master.rpc.access import answered, caller

T = TypeVar("T")
# Items one MarkUnifiedMessagesRead marks at most: each is located, checked and journaled
# with the master doing nothing else, and its event names them all.
MAX_READ_IDS = 1_000
Context = grpc.aio.ServicerContext[Any, Any]


class Guarded:
    """A servicer whose every call is authorized by the caller's API key first."""

    def __init__(self, store: Store, keys: ApiKeys) -> None:
        self._store = store
        self._keys = keys

    @property
    def store(self) -> Store:
        return self._store

    def _answer(self, context: Context, compute: Callable[[Access], Awaitable[T]]) -> Awaitable[T]:
        """rpc/access.py's `answered` (the error boundary authorized the call for its
        service's scope, and answers a store error it raises: rpc/boundary.py). Handed on,
        not awaited here: one coroutine fewer on every read."""
        return answered(self._store, compute)

    async def _answer_held(
        self,
        context: Context,
        kind: str,
        entity_id: str,
        account_id: str,
        act: Callable[[str], Awaitable[T]],
    ) -> T:
        """`_answer` for a call on one entity: `act` gets the account holding it."""

        async def compute(access: Access) -> T:
            return await act(await self._holder(access, kind, entity_id, account_id))

        return await self._answer(context, compute)

    def _account(self, access: Access, account_id: str) -> str:
        access.check(account_id)
        return account_id

    def _named(self, access: Access, account_id: str) -> str:
        """The account a call is about, which it must name (field_behavior REQUIRED)."""
        if not account_id:
            raise InvalidArgument("required", field="account_id")
        return self._account(access, account_id)

    async def _holder(self, access: Access, kind: str, entity_id: str, account_id: str) -> str:
        """The account to find an entity in: the one named, if the key may use it; else, for
        a key limited to some accounts, the one of those holding it (an entity elsewhere is
        not found, exactly as one that does not exist)."""
        if account_id or access.accounts is None or not entity_id:
            return self._account(access, account_id)
        holders = [a for a in await self._store.accounts_holding(kind, entity_id) if access.may_use(a)]
        if not holders:
            raise NotFound(f"{kind} {entity_id!r} not found")
        if len(holders) > 1:
            raise InvalidArgument(f"{kind} {entity_id!r} is in several accounts; name one", field="account_id")
        return holders[0]


def _assignee(request: conv.ListConversationsRequest | uni.ListUnifiedThreadsRequest, access: Access) -> str | None:
    """The owner a list asks for: None for any, "" for nobody."""
    if not (request.assignee or request.unassigned or request.mine):
        return None  # the common read: any owner
    asked = [name for name in ("assignee", "unassigned", "mine") if getattr(request, name)]
    if len(asked) > 1:
        raise InvalidArgument(f"give one of assignee, unassigned, mine (not {' and '.join(asked)})", field=asked[1])
    if request.mine:
        if not access.agent:
            raise InvalidArgument("this API key names no agent, so nothing is its own", field="mine")
        return access.agent
    if request.unassigned:
        return ""
    return request.assignee or None


def _optional(message: Any, name: str) -> bool | None:
    return bool(getattr(message, name)) if message.HasField(name) else None


class AccountServicer(Guarded, accounts_pb2_grpc.AccountServiceServicer):
    async def ListAccounts(self, request: acc.ListAccountsRequest, context: Context) -> acc.ListAccountsResponse:
        page = await self._answer(
            context,
            lambda access: self._store.list_accounts(
                status=request.status,
                platform=request.platform,
                cursor=request.cursor,
                count=request.count,
                only=access.accounts,
            ),
        )
        return acc.ListAccountsResponse(users=page.items, cursor=page.cursor, has_more=page.has_more)

    async def GetAccount(self, request: acc.GetAccountRequest, context: Context) -> acc.GetAccountResponse:
        account = await self._answer(
            context, lambda access: self._store.get_account(self._named(access, request.account_id))
        )
        return acc.GetAccountResponse(user=account)

    async def GetCaller(self, request: acc.GetCallerRequest, context: Context) -> acc.GetCallerResponse:
        access = caller()
        return acc.GetCallerResponse(
            agent=access.agent,
            key_id=access.key_id,
            scopes=sorted(access.scopes),
            account_ids=sorted(access.accounts or ()),
            all_accounts=access.accounts is None,
            agents=sorted(self._keys.agents() or ()),
        )


class ConversationServicer(Guarded, conversations_pb2_grpc.ConversationServiceServicer):
    async def ListConversations(
        self, request: conv.ListConversationsRequest, context: Context
    ) -> conv.ListConversationsResponse:
        page = await self._answer(context, lambda access: self.conversations_page(request, access))
        return conv.ListConversationsResponse(conversations=page.items, cursor=page.cursor, has_more=page.has_more)

    def conversations_page(
        self, request: conv.ListConversationsRequest, access: Access, as_json: JsonViews | None = None
    ) -> Awaitable[Page[e.Conversation]]:
        """ListConversations' page for a caller of `access` (its items as JSON with
        `as_json`: encoded.py)."""
        return self._store.list_conversations(
            self._named(access, request.account_id),
            status=request.status,
            is_pinned=_optional(request, "is_pinned"),
            is_muted=_optional(request, "is_muted"),
            cursor=request.cursor,
            count=request.count,
            assignee=_assignee(request, access),
            thread_state=request.thread_state,
            as_json=as_json,
        )

    async def GetConversation(
        self, request: conv.GetConversationRequest, context: Context
    ) -> conv.GetConversationResponse:
        found = await self._answer_held(
            context,
            "conversation",
            request.conversation_id,
            request.account_id,
            lambda holder: self._store.get_conversation(holder, request.conversation_id),
        )
        return conv.GetConversationResponse(conversation=found)

    async def MarkConversationRead(
        self, request: conv.MarkConversationReadRequest, context: Context
    ) -> conv.MarkConversationReadResponse:
        marked, found = await self._answer_held(
            context,
            "conversation",
            request.conversation_id,
            request.account_id,
            lambda holder: self._store.mark_conversation_read(
                holder,
                request.conversation_id,
                time.time_ns(),
            ),
        )
        return conv.MarkConversationReadResponse(marked_count=marked, conversation=found)

    async def PinConversation(
        self, request: conv.PinConversationRequest, context: Context
    ) -> conv.PinConversationResponse:
        found = await self._answer_held(
            context,
            "conversation",
            request.conversation_id,
            request.account_id,
            lambda holder: self._store.set_pinned(holder, request.conversation_id, True),
        )
        return conv.PinConversationResponse(conversation=found)

    async def UnpinConversation(
        self, request: conv.UnpinConversationRequest, context: Context
    ) -> conv.UnpinConversationResponse:
        found = await self._answer_held(
            context,
            "conversation",
            request.conversation_id,
            request.account_id,
            lambda holder: self._store.set_pinned(holder, request.conversation_id, False),
        )
        return conv.UnpinConversationResponse(conversation=found)

    async def MuteConversation(
        self, request: conv.MuteConversationRequest, context: Context
    ) -> conv.MuteConversationResponse:
        found = await self._answer_held(
            context,
            "conversation",
            request.conversation_id,
            request.account_id,
            lambda holder: self._store.set_muted(holder, request.conversation_id, True),
        )
        return conv.MuteConversationResponse(conversation=found)

    async def UnmuteConversation(
        self, request: conv.UnmuteConversationRequest, context: Context
    ) -> conv.UnmuteConversationResponse:
        found = await self._answer_held(
            context,
            "conversation",
            request.conversation_id,
            request.account_id,
            lambda holder: self._store.set_muted(holder, request.conversation_id, False),
        )
        return conv.UnmuteConversationResponse(conversation=found)


class MessageServicer(Guarded, messages_pb2_grpc.MessageServiceServicer):
    async def ListMessages(self, request: msg.ListMessagesRequest, context: Context) -> msg.ListMessagesResponse:
        page = await self._answer(context, lambda access: self.messages_page(request, access))
        return msg.ListMessagesResponse(messages=page.items, cursor=page.cursor, has_more=page.has_more)

    def messages_page(
        self, request: msg.ListMessagesRequest, access: Access, as_json: JsonViews | None = None
    ) -> Awaitable[Page[e.Message]]:
        """ListMessages' page for a caller of `access` (as conversations_page)."""
        return self._store.list_messages(
            self._named(access, request.account_id),
            conversation_id=request.conversation_id,
            sender_id=request.sender_id,
            receiver_id=request.receiver_id,
            status=request.status,
            message_type=request.message_type,
            since_ns=ns_of(request.since_time) if request.HasField("since_time") else None,
            cursor=request.cursor,
            count=request.count,
            as_json=as_json,
        )

    async def GetMessage(self, request: msg.GetMessageRequest, context: Context) -> msg.GetMessageResponse:
        found = await self._answer_held(
            context,
            "message",
            request.message_id,
            request.account_id,
            lambda holder: self._store.get_message(holder, request.message_id),
        )
        return msg.GetMessageResponse(message=found)

    async def MarkMessageRead(
        self, request: msg.MarkMessageReadRequest, context: Context
    ) -> msg.MarkMessageReadResponse:
        found = await self._answer_held(
            context,
            "message",
            request.message_id,
            request.account_id,
            lambda holder: self._store.mark_message_read(
                holder,
                request.message_id,
                time.time_ns(),
            ),
        )
        return msg.MarkMessageReadResponse(message=found)


class ContentServicer(Guarded, contents_pb2_grpc.ContentServiceServicer):
    async def ListContents(self, request: cnt.ListContentsRequest, context: Context) -> cnt.ListContentsResponse:
        page = await self._answer(
            context,
            lambda access: self._store.list_contents(
                self._named(access, request.account_id),
                content_type=request.content_type,
                is_new=_optional(request, "is_new"),
                cursor=request.cursor,
                count=request.count,
            ),
        )
        return cnt.ListContentsResponse(contents=page.items, cursor=page.cursor, has_more=page.has_more)

    async def GetContent(self, request: cnt.GetContentRequest, context: Context) -> cnt.GetContentResponse:
        found = await self._answer_held(
            context,
            "content",
            request.content_id,
            request.account_id,
            lambda holder: self._store.get_content(holder, request.content_id),
        )
        return cnt.GetContentResponse(content=found)

    async def GetContentStats(
        self, request: cnt.GetContentStatsRequest, context: Context
    ) -> cnt.GetContentStatsResponse:
        found = await self._answer_held(
            context,
            "content",
            request.content_id,
            request.account_id,
            lambda holder: self._store.get_content(holder, request.content_id),
        )
        return cnt.GetContentStatsResponse(stats=found.stats)

    async def MarkContentRead(
        self, request: cnt.MarkContentReadRequest, context: Context
    ) -> cnt.MarkContentReadResponse:
        marked, found = await self._answer_held(
            context,
            "content",
            request.content_id,
            request.account_id,
            lambda holder: self._store.mark_content_read(
                holder,
                request.content_id,
                time.time_ns(),
            ),
        )
        return cnt.MarkContentReadResponse(marked_count=marked, content=found)


class DiscussionServicer(Guarded, discussions_pb2_grpc.DiscussionServiceServicer):
    async def ListDiscussions(
        self, request: dis.ListDiscussionsRequest, context: Context
    ) -> dis.ListDiscussionsResponse:
        page = await self._answer(
            context,
            lambda access: self._store.list_discussions(
                self._named(access, request.account_id),
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
        found = await self._answer_held(
            context,
            "comment",
            request.comment_id,
            request.account_id,
            lambda holder: self._store.get_discussion(holder, request.comment_id),
        )
        return dis.GetDiscussionResponse(discussion=found)

    async def MarkDiscussionRead(
        self, request: dis.MarkDiscussionReadRequest, context: Context
    ) -> dis.MarkDiscussionReadResponse:
        found = await self._answer_held(
            context,
            "comment",
            request.comment_id,
            request.account_id,
            lambda holder: self._store.mark_discussion_read(
                holder,
                request.comment_id,
                time.time_ns(),
            ),
        )
        return dis.MarkDiscussionReadResponse(discussion=found)


class UnifiedMessageServicer(Guarded, unified_messages_pb2_grpc.UnifiedMessageServiceServicer):
    async def ListUnifiedMessages(
        self, request: uni.ListUnifiedMessagesRequest, context: Context
    ) -> uni.ListUnifiedMessagesResponse:
        page = await self._answer(context, lambda access: self.unified_page(request, access))
        return uni.ListUnifiedMessagesResponse(messages=page.items, cursor=page.cursor, has_more=page.has_more)

    def unified_page(
        self, request: uni.ListUnifiedMessagesRequest, access: Access, as_json: JsonViews | None = None
    ) -> Awaitable[Page[uni.UnifiedMessage]]:
        """ListUnifiedMessages' page for a caller of `access` (as conversations_page)."""
        return self._store.list_unified(
            self._named(access, request.account_id),
            types=list(request.types),
            is_read=_optional(request, "is_read"),
            is_new=_optional(request, "is_new"),
            cursor=request.cursor,
            count=request.count,
            since_ns=ns_of(request.since_time) if request.HasField("since_time") else None,
            as_json=as_json,
        )

    async def ListUnifiedThreads(
        self, request: uni.ListUnifiedThreadsRequest, context: Context
    ) -> uni.ListUnifiedThreadsResponse:
        kinds = set(request.kinds) or set(thread_list.KINDS)
        if not kinds <= set(thread_list.KINDS):
            raise InvalidArgument("THREAD_KIND_CONVERSATION or THREAD_KIND_COMMENT", field="kinds")
        listed, cursor, has_more = await self._answer(
            context,
            lambda access: thread_list.list_threads(
                self._store,
                self._named(access, request.account_id),
                kinds=kinds,
                assignee=_assignee(request, access),
                thread_state=request.thread_state,
                cursor=request.cursor,
                count=request.count,
                now_ns=time.time_ns(),
            ),
        )
        return uni.ListUnifiedThreadsResponse(threads=listed, cursor=cursor, has_more=has_more)

    async def GetUnifiedStats(
        self, request: uni.GetUnifiedStatsRequest, context: Context
    ) -> uni.GetUnifiedStatsResponse:
        stats = await self._answer(
            context, lambda access: self._store.unified_stats(self._named(access, request.account_id))
        )
        return uni.GetUnifiedStatsResponse(
            total_unread=stats.total_unread,
            unread_comments=stats.unread_comments,
            unread_discussions=stats.unread_discussions,
            unread_direct_messages=stats.unread_direct_messages,
            unread_notifications=stats.unread_notifications,
        )

    async def MarkUnifiedMessageRead(
        self, request: uni.MarkUnifiedMessageReadRequest, context: Context
    ) -> uni.MarkUnifiedMessageReadResponse:
        async def mark(access: Access) -> uni.UnifiedMessage:
            account_id = await self._item_holder(access, request.id, "id", request.account_id)
            await self._store.get_unified(account_id, request.id)
            await self._store.mark_unified_read(account_id, [request.id], time.time_ns())
            return await self._store.get_unified(account_id, request.id)

        return uni.MarkUnifiedMessageReadResponse(message=await self._answer(context, mark))

    async def _item_holder(self, access: Access, item_id: str, field: str, account_id: str) -> str:
        kind, entity_id = split_item_key(item_id, field=field)
        return await self._holder(access, kind, entity_id, account_id)

    async def MarkUnifiedMessagesRead(
        self, request: uni.MarkUnifiedMessagesReadRequest, context: Context
    ) -> uni.MarkUnifiedMessagesReadResponse:
        async def mark_all(access: Access) -> int:
            if len(request.ids) > MAX_READ_IDS:
                raise InvalidArgument(f"at most {MAX_READ_IDS:,} ids a request", field="ids")
            # Every id is located (and allowed) before any is marked: a bad one changes nothing.
            by_account: dict[str, list[str]] = {}
            for position, item_id in enumerate(request.ids):
                holder = await self._item_holder(access, item_id, f"ids[{position}]", request.account_id)
                by_account.setdefault(holder, []).append(item_id)
            now = time.time_ns()
            return sum(
                [await self._store.mark_unified_read(account_id, ids, now) for account_id, ids in by_account.items()]
            )

        return uni.MarkUnifiedMessagesReadResponse(marked_count=await self._answer(context, mark_all))
