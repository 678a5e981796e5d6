"""Thin typed calls, one per query RPC, with a default timeout and per-call metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import accounts_pb2_grpc
from imsync.v1 import contents_pb2 as cnt
from imsync.v1 import contents_pb2_grpc
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import conversations_pb2_grpc
from imsync.v1 import discussions_pb2 as dis
from imsync.v1 import discussions_pb2_grpc
from imsync.v1 import events_pb2 as ev
from imsync.v1 import events_pb2_grpc
from imsync.v1 import logins_pb2 as lg
from imsync.v1 import logins_pb2_grpc
from imsync.v1 import messages_pb2 as msg
from imsync.v1 import messages_pb2_grpc
from imsync.v1 import replies_pb2 as rep
from imsync.v1 import replies_pb2_grpc
from imsync.v1 import unified_messages_pb2 as uni
from imsync.v1 import unified_messages_pb2_grpc

Metadata = Sequence[tuple[str, str]]


class ImClient:
    """The IM query services of a master, over one channel."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float | None = 10.0, metadata: Metadata = ()) -> None:
        self.channel = channel
        self._timeout = timeout
        self._metadata = tuple(metadata)
        self._accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        self._conversations = conversations_pb2_grpc.ConversationServiceStub(channel)
        self._messages = messages_pb2_grpc.MessageServiceStub(channel)
        self._contents = contents_pb2_grpc.ContentServiceStub(channel)
        self._discussions = discussions_pb2_grpc.DiscussionServiceStub(channel)
        self._unified = unified_messages_pb2_grpc.UnifiedMessageServiceStub(channel)
        self._replies = replies_pb2_grpc.ReplyServiceStub(channel)
        self._logins = logins_pb2_grpc.LoginServiceStub(channel)
        self._events = events_pb2_grpc.EventServiceStub(channel)

    @classmethod
    def connect(cls, address: str, **kwargs: Any) -> ImClient:
        return cls(grpc.aio.insecure_channel(address), **kwargs)

    async def close(self) -> None:
        await self.channel.close(grace=None)

    async def _unary(self, rpc: Any, request: Any, timeout: float | None, metadata: Metadata | None) -> Any:
        return await rpc(
            request,
            timeout=self._timeout if timeout is None else timeout,
            metadata=self._metadata + tuple(metadata or ()),
        )

    # accounts
    async def list_accounts(
        self, request: acc.ListAccountsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> acc.ListAccountsResponse:
        result: acc.ListAccountsResponse = await self._unary(self._accounts.ListAccounts, request, timeout, metadata)
        return result

    async def get_account(
        self, request: acc.GetAccountRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> acc.GetAccountResponse:
        result: acc.GetAccountResponse = await self._unary(self._accounts.GetAccount, request, timeout, metadata)
        return result

    # conversations
    async def list_conversations(
        self, request: conv.ListConversationsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.ListConversationsResponse:
        result: conv.ListConversationsResponse = await self._unary(
            self._conversations.ListConversations, request, timeout, metadata
        )
        return result

    async def get_conversation(
        self, request: conv.GetConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.GetConversationResponse:
        result: conv.GetConversationResponse = await self._unary(
            self._conversations.GetConversation, request, timeout, metadata
        )
        return result

    async def mark_conversation_read(
        self,
        request: conv.MarkConversationReadRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> conv.MarkConversationReadResponse:
        result: conv.MarkConversationReadResponse = await self._unary(
            self._conversations.MarkConversationRead, request, timeout, metadata
        )
        return result

    async def pin_conversation(
        self, request: conv.PinConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.PinConversationResponse:
        result: conv.PinConversationResponse = await self._unary(
            self._conversations.PinConversation, request, timeout, metadata
        )
        return result

    async def unpin_conversation(
        self, request: conv.UnpinConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.UnpinConversationResponse:
        result: conv.UnpinConversationResponse = await self._unary(
            self._conversations.UnpinConversation, request, timeout, metadata
        )
        return result

    async def mute_conversation(
        self, request: conv.MuteConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.MuteConversationResponse:
        result: conv.MuteConversationResponse = await self._unary(
            self._conversations.MuteConversation, request, timeout, metadata
        )
        return result

    async def unmute_conversation(
        self, request: conv.UnmuteConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.UnmuteConversationResponse:
        result: conv.UnmuteConversationResponse = await self._unary(
            self._conversations.UnmuteConversation, request, timeout, metadata
        )
        return result

    # messages
    async def list_messages(
        self, request: msg.ListMessagesRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> msg.ListMessagesResponse:
        result: msg.ListMessagesResponse = await self._unary(self._messages.ListMessages, request, timeout, metadata)
        return result

    async def get_message(
        self, request: msg.GetMessageRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> msg.GetMessageResponse:
        result: msg.GetMessageResponse = await self._unary(self._messages.GetMessage, request, timeout, metadata)
        return result

    async def mark_message_read(
        self, request: msg.MarkMessageReadRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> msg.MarkMessageReadResponse:
        result: msg.MarkMessageReadResponse = await self._unary(
            self._messages.MarkMessageRead, request, timeout, metadata
        )
        return result

    # contents
    async def list_contents(
        self, request: cnt.ListContentsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> cnt.ListContentsResponse:
        result: cnt.ListContentsResponse = await self._unary(self._contents.ListContents, request, timeout, metadata)
        return result

    async def get_content(
        self, request: cnt.GetContentRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> cnt.GetContentResponse:
        result: cnt.GetContentResponse = await self._unary(self._contents.GetContent, request, timeout, metadata)
        return result

    async def get_content_stats(
        self, request: cnt.GetContentStatsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> cnt.GetContentStatsResponse:
        result: cnt.GetContentStatsResponse = await self._unary(
            self._contents.GetContentStats, request, timeout, metadata
        )
        return result

    async def mark_content_read(
        self, request: cnt.MarkContentReadRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> cnt.MarkContentReadResponse:
        result: cnt.MarkContentReadResponse = await self._unary(
            self._contents.MarkContentRead, request, timeout, metadata
        )
        return result

    # discussions
    async def list_discussions(
        self, request: dis.ListDiscussionsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> dis.ListDiscussionsResponse:
        result: dis.ListDiscussionsResponse = await self._unary(
            self._discussions.ListDiscussions, request, timeout, metadata
        )
        return result

    async def get_discussion(
        self, request: dis.GetDiscussionRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> dis.GetDiscussionResponse:
        result: dis.GetDiscussionResponse = await self._unary(
            self._discussions.GetDiscussion, request, timeout, metadata
        )
        return result

    async def mark_discussion_read(
        self,
        request: dis.MarkDiscussionReadRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> dis.MarkDiscussionReadResponse:
        result: dis.MarkDiscussionReadResponse = await self._unary(
            self._discussions.MarkDiscussionRead, request, timeout, metadata
        )
        return result

    # unified inbox
    async def list_unified_messages(
        self,
        request: uni.ListUnifiedMessagesRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> uni.ListUnifiedMessagesResponse:
        result: uni.ListUnifiedMessagesResponse = await self._unary(
            self._unified.ListUnifiedMessages, request, timeout, metadata
        )
        return result

    async def get_unified_stats(
        self, request: uni.GetUnifiedStatsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> uni.GetUnifiedStatsResponse:
        result: uni.GetUnifiedStatsResponse = await self._unary(
            self._unified.GetUnifiedStats, request, timeout, metadata
        )
        return result

    async def mark_unified_message_read(
        self,
        request: uni.MarkUnifiedMessageReadRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> uni.MarkUnifiedMessageReadResponse:
        result: uni.MarkUnifiedMessageReadResponse = await self._unary(
            self._unified.MarkUnifiedMessageRead, request, timeout, metadata
        )
        return result

    async def mark_unified_messages_read(
        self,
        request: uni.MarkUnifiedMessagesReadRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> uni.MarkUnifiedMessagesReadResponse:
        result: uni.MarkUnifiedMessagesReadResponse = await self._unary(
            self._unified.MarkUnifiedMessagesRead, request, timeout, metadata
        )
        return result

    # replies
    async def send_reply(
        self, request: rep.SendReplyRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> rep.SendReplyResponse:
        result: rep.SendReplyResponse = await self._unary(self._replies.SendReply, request, timeout, metadata)
        return result

    async def get_reply(
        self, request: rep.GetReplyRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> rep.GetReplyResponse:
        result: rep.GetReplyResponse = await self._unary(self._replies.GetReply, request, timeout, metadata)
        return result

    # logins (an API key with the login scope)
    async def get_login(
        self, request: lg.GetLoginRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> lg.GetLoginResponse:
        result: lg.GetLoginResponse = await self._unary(self._logins.GetLogin, request, timeout, metadata)
        return result

    async def submit_login_code(
        self, request: lg.SubmitLoginCodeRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> lg.SubmitLoginCodeResponse:
        result: lg.SubmitLoginCodeResponse = await self._unary(self._logins.SubmitLoginCode, request, timeout, metadata)
        return result

    async def restart_login(
        self, request: lg.RestartLoginRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> lg.RestartLoginResponse:
        result: lg.RestartLoginResponse = await self._unary(self._logins.RestartLogin, request, timeout, metadata)
        return result

    # events
    async def stream_events(
        self, request: ev.StreamEventsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> AsyncIterator[ev.StreamEventsResponse]:
        """Follows events until the stream ends; `timeout` bounds the whole stream (None: no bound)."""
        stream: Any = self._events.StreamEvents(
            request, timeout=timeout, metadata=self._metadata + tuple(metadata or ())
        )
        async for response in stream:
            yield response
