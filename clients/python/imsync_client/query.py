"""Thin typed calls, one per IM RPC, with a default timeout and per-call metadata; a
refusal is an ImsyncError (errors.py). `connect()` opens the channel: an API key, TLS, and
reads retried while the master is briefly unavailable."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import (
    accounts_pb2_grpc,
    contents_pb2_grpc,
    conversations_pb2_grpc,
    discussions_pb2_grpc,
    events_pb2_grpc,
    fleet_pb2_grpc,
    logins_pb2_grpc,
    messages_pb2_grpc,
    replies_pb2_grpc,
    search_pb2_grpc,
    templates_pb2_grpc,
    threads_pb2_grpc,
    unified_messages_pb2_grpc,
)
from imsync.v1 import contents_pb2 as cnt
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import discussions_pb2 as dis
from imsync.v1 import events_pb2 as ev
from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import logins_pb2 as lg
from imsync.v1 import messages_pb2 as msg
from imsync.v1 import replies_pb2 as rep
from imsync.v1 import search_pb2 as srch
from imsync.v1 import templates_pb2 as tpl
from imsync.v1 import threads_pb2 as thr
from imsync.v1 import unified_messages_pb2 as uni

from .errors import ImsyncError

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
        self._threads = threads_pb2_grpc.ThreadServiceStub(channel)
        self._templates = templates_pb2_grpc.TemplateServiceStub(channel)
        self._search = search_pb2_grpc.SearchServiceStub(channel)
        self._logins = logins_pb2_grpc.LoginServiceStub(channel)
        self._events = events_pb2_grpc.EventServiceStub(channel)
        self._fleet = fleet_pb2_grpc.FleetServiceStub(channel)

    @classmethod
    def connect(cls, address: str, **kwargs: Any) -> ImClient:
        """The same as the module's `connect()`."""
        return connect(address, **kwargs)

    async def close(self) -> None:
        await self.channel.close(grace=None)

    async def __aenter__(self) -> ImClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _unary(self, rpc: Any, request: Any, timeout: float | None, metadata: Metadata | None) -> Any:
        try:
            return await rpc(
                request,
                timeout=self._timeout if timeout is None else timeout,
                metadata=self._metadata + tuple(metadata or ()),
            )
        except grpc.aio.AioRpcError as error:
            raise ImsyncError.of(error) from None

    # accounts
    async def list_accounts(
        self, request: acc.ListAccountsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> acc.ListAccountsResponse:
        """Lists accounts by account id. (`imsync.v1.AccountService.ListAccounts`)"""
        result: acc.ListAccountsResponse = await self._unary(self._accounts.ListAccounts, request, timeout, metadata)
        return result

    async def get_account(
        self, request: acc.GetAccountRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> acc.GetAccountResponse:
        """Gets one account. (`imsync.v1.AccountService.GetAccount`)"""
        result: acc.GetAccountResponse = await self._unary(self._accounts.GetAccount, request, timeout, metadata)
        return result

    async def get_caller(
        self, request: acc.GetCallerRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> acc.GetCallerResponse:
        """Says who is calling: the agent the caller's API key names, what it may do, and the agents a conversation can
        be assigned to. (`imsync.v1.AccountService.GetCaller`)"""
        result: acc.GetCallerResponse = await self._unary(self._accounts.GetCaller, request, timeout, metadata)
        return result

    # conversations
    async def list_conversations(
        self, request: conv.ListConversationsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.ListConversationsResponse:
        """Lists conversations: pinned first, then by last message time, newest first.
        (`imsync.v1.ConversationService.ListConversations`)"""
        result: conv.ListConversationsResponse = await self._unary(
            self._conversations.ListConversations, request, timeout, metadata
        )
        return result

    async def get_conversation(
        self, request: conv.GetConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.GetConversationResponse:
        """Gets one conversation. (`imsync.v1.ConversationService.GetConversation`)"""
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
        """Marks every message of the conversation read. (`imsync.v1.ConversationService.MarkConversationRead`)"""
        result: conv.MarkConversationReadResponse = await self._unary(
            self._conversations.MarkConversationRead, request, timeout, metadata
        )
        return result

    async def pin_conversation(
        self, request: conv.PinConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.PinConversationResponse:
        """Pins the conversation: pinned conversations come first.
        (`imsync.v1.ConversationService.PinConversation`)"""
        result: conv.PinConversationResponse = await self._unary(
            self._conversations.PinConversation, request, timeout, metadata
        )
        return result

    async def unpin_conversation(
        self, request: conv.UnpinConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.UnpinConversationResponse:
        """Unpins the conversation. (`imsync.v1.ConversationService.UnpinConversation`)"""
        result: conv.UnpinConversationResponse = await self._unary(
            self._conversations.UnpinConversation, request, timeout, metadata
        )
        return result

    async def mute_conversation(
        self, request: conv.MuteConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.MuteConversationResponse:
        """Mutes the conversation. (`imsync.v1.ConversationService.MuteConversation`)"""
        result: conv.MuteConversationResponse = await self._unary(
            self._conversations.MuteConversation, request, timeout, metadata
        )
        return result

    async def unmute_conversation(
        self, request: conv.UnmuteConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> conv.UnmuteConversationResponse:
        """Unmutes the conversation. (`imsync.v1.ConversationService.UnmuteConversation`)"""
        result: conv.UnmuteConversationResponse = await self._unary(
            self._conversations.UnmuteConversation, request, timeout, metadata
        )
        return result

    # the team's handling of conversations

    async def assign_conversation(
        self, request: thr.AssignConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> thr.AssignConversationResponse:
        """Assigns the thread to an agent (one named by an API key), or to nobody.
        (`imsync.v1.ThreadService.AssignConversation`)"""
        result: thr.AssignConversationResponse = await self._unary(
            self._threads.AssignConversation, request, timeout, metadata
        )
        return result

    async def claim_conversation(
        self, request: thr.ClaimConversationRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> thr.ClaimConversationResponse:
        """Takes the thread for the caller's agent. Fails with FAILED_PRECONDITION (reason CLAIMED, the owner in
        its metadata) when another agent owns it: two agents claiming at once end with one owner, and the other told
        who. (`imsync.v1.ThreadService.ClaimConversation`)"""
        result: thr.ClaimConversationResponse = await self._unary(
            self._threads.ClaimConversation, request, timeout, metadata
        )
        return result

    async def set_conversation_state(
        self,
        request: thr.SetConversationStateRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> thr.SetConversationStateResponse:
        """Sets the thread open, done, or snoozed until a time. (`imsync.v1.ThreadService.SetConversationState`)"""
        result: thr.SetConversationStateResponse = await self._unary(
            self._threads.SetConversationState, request, timeout, metadata
        )
        return result

    async def mark_conversation_unread(
        self,
        request: thr.MarkConversationUnreadRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> thr.MarkConversationUnreadResponse:
        """Marks the thread unread until someone reads it again. (`imsync.v1.ThreadService.MarkConversationUnread`)"""
        result: thr.MarkConversationUnreadResponse = await self._unary(
            self._threads.MarkConversationUnread, request, timeout, metadata
        )
        return result

    async def add_conversation_note(
        self, request: thr.AddConversationNoteRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> thr.AddConversationNoteResponse:
        """Adds an internal note: shown to the team, never sent to the platform.
        (`imsync.v1.ThreadService.AddConversationNote`)"""
        result: thr.AddConversationNoteResponse = await self._unary(
            self._threads.AddConversationNote, request, timeout, metadata
        )
        return result

    async def list_conversation_notes(
        self,
        request: thr.ListConversationNotesRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> thr.ListConversationNotesResponse:
        """Lists the thread's notes, oldest first. (`imsync.v1.ThreadService.ListConversationNotes`)"""
        result: thr.ListConversationNotesResponse = await self._unary(
            self._threads.ListConversationNotes, request, timeout, metadata
        )
        return result

    async def set_conversation_presence(
        self,
        request: thr.SetConversationPresenceRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> thr.SetConversationPresenceResponse:
        """Says that the caller's agent is writing in the thread (or stopped): announced as an EVENT_TYPE_PRESENCE
        event that ends by itself after a few seconds unless said again.
        (`imsync.v1.ThreadService.SetConversationPresence`)"""
        result: thr.SetConversationPresenceResponse = await self._unary(
            self._threads.SetConversationPresence, request, timeout, metadata
        )
        return result

    # the team's templates

    async def list_templates(
        self, request: tpl.ListTemplatesRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> tpl.ListTemplatesResponse:
        """Lists the templates by name; with `query`, those whose name or text holds it.
        (`imsync.v1.TemplateService.ListTemplates`)"""
        result: tpl.ListTemplatesResponse = await self._unary(self._templates.ListTemplates, request, timeout, metadata)
        return result

    async def create_template(
        self, request: tpl.CreateTemplateRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> tpl.CreateTemplateResponse:
        """Adds a template; its name must be new (ALREADY_EXISTS otherwise). (`imsync.v1.TemplateService.CreateTemplate`)"""
        result: tpl.CreateTemplateResponse = await self._unary(
            self._templates.CreateTemplate, request, timeout, metadata
        )
        return result

    async def update_template(
        self, request: tpl.UpdateTemplateRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> tpl.UpdateTemplateResponse:
        """Changes a template's name or text. (`imsync.v1.TemplateService.UpdateTemplate`)"""
        result: tpl.UpdateTemplateResponse = await self._unary(
            self._templates.UpdateTemplate, request, timeout, metadata
        )
        return result

    async def delete_template(
        self, request: tpl.DeleteTemplateRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> tpl.DeleteTemplateResponse:
        """Removes a template. (`imsync.v1.TemplateService.DeleteTemplate`)"""
        result: tpl.DeleteTemplateResponse = await self._unary(
            self._templates.DeleteTemplate, request, timeout, metadata
        )
        return result

    async def render_template(
        self, request: tpl.RenderTemplateRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> tpl.RenderTemplateResponse:
        """A template's text with its placeholders filled for a conversation or a comment.
        (`imsync.v1.TemplateService.RenderTemplate`)"""
        result: tpl.RenderTemplateResponse = await self._unary(
            self._templates.RenderTemplate, request, timeout, metadata
        )
        return result

    # search
    async def search(
        self, request: srch.SearchRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> srch.SearchResponse:
        """Finds what holds the query (any case), newest first, in one account or in every account the key may read.
        (`imsync.v1.SearchService.Search`)"""
        result: srch.SearchResponse = await self._unary(self._search.Search, request, timeout, metadata)
        return result

    # messages
    async def list_messages(
        self, request: msg.ListMessagesRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> msg.ListMessagesResponse:
        """Lists messages newest first, of the account or of one conversation.
        (`imsync.v1.MessageService.ListMessages`)"""
        result: msg.ListMessagesResponse = await self._unary(self._messages.ListMessages, request, timeout, metadata)
        return result

    async def get_message(
        self, request: msg.GetMessageRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> msg.GetMessageResponse:
        """Gets one message. (`imsync.v1.MessageService.GetMessage`)"""
        result: msg.GetMessageResponse = await self._unary(self._messages.GetMessage, request, timeout, metadata)
        return result

    async def mark_message_read(
        self, request: msg.MarkMessageReadRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> msg.MarkMessageReadResponse:
        """Marks one message read. (`imsync.v1.MessageService.MarkMessageRead`)"""
        result: msg.MarkMessageReadResponse = await self._unary(
            self._messages.MarkMessageRead, request, timeout, metadata
        )
        return result

    # contents
    async def list_contents(
        self, request: cnt.ListContentsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> cnt.ListContentsResponse:
        """Lists works newest first. (`imsync.v1.ContentService.ListContents`)"""
        result: cnt.ListContentsResponse = await self._unary(self._contents.ListContents, request, timeout, metadata)
        return result

    async def get_content(
        self, request: cnt.GetContentRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> cnt.GetContentResponse:
        """Gets one work. (`imsync.v1.ContentService.GetContent`)"""
        result: cnt.GetContentResponse = await self._unary(self._contents.GetContent, request, timeout, metadata)
        return result

    async def get_content_stats(
        self, request: cnt.GetContentStatsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> cnt.GetContentStatsResponse:
        """Gets the counters of one work. (`imsync.v1.ContentService.GetContentStats`)"""
        result: cnt.GetContentStatsResponse = await self._unary(
            self._contents.GetContentStats, request, timeout, metadata
        )
        return result

    async def mark_content_read(
        self, request: cnt.MarkContentReadRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> cnt.MarkContentReadResponse:
        """Marks every comment of the work read. (`imsync.v1.ContentService.MarkContentRead`)"""
        result: cnt.MarkContentReadResponse = await self._unary(
            self._contents.MarkContentRead, request, timeout, metadata
        )
        return result

    # discussions
    async def list_discussions(
        self, request: dis.ListDiscussionsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> dis.ListDiscussionsResponse:
        """Lists comments newest first: of the account, of one work, or the replies to one comment.
        (`imsync.v1.DiscussionService.ListDiscussions`)"""
        result: dis.ListDiscussionsResponse = await self._unary(
            self._discussions.ListDiscussions, request, timeout, metadata
        )
        return result

    async def get_discussion(
        self, request: dis.GetDiscussionRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> dis.GetDiscussionResponse:
        """Gets one comment. (`imsync.v1.DiscussionService.GetDiscussion`)"""
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
        """Marks one comment read. (`imsync.v1.DiscussionService.MarkDiscussionRead`)"""
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
        """Lists inbound comments, replies, private messages and notifications, newest first.
        (`imsync.v1.UnifiedMessageService.ListUnifiedMessages`)"""
        result: uni.ListUnifiedMessagesResponse = await self._unary(
            self._unified.ListUnifiedMessages, request, timeout, metadata
        )
        return result

    async def list_unified_threads(
        self,
        request: uni.ListUnifiedThreadsRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> uni.ListUnifiedThreadsResponse:
        """Lists the inbox by thread: an account's conversations and comment threads together
        (each with its newest item, unread count and the team's handling): pinned
        conversations first, then by their newest item, newest first. A comment thread comes
        where its newest comment or reply is. (`imsync.v1.UnifiedMessageService.ListUnifiedThreads`)"""
        result: uni.ListUnifiedThreadsResponse = await self._unary(
            self._unified.ListUnifiedThreads, request, timeout, metadata
        )
        return result

    async def get_unified_stats(
        self, request: uni.GetUnifiedStatsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> uni.GetUnifiedStatsResponse:
        """Counts unread items of the inbox. (`imsync.v1.UnifiedMessageService.GetUnifiedStats`)"""
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
        """Marks one inbox item read. (`imsync.v1.UnifiedMessageService.MarkUnifiedMessageRead`)"""
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
        """Marks several inbox items read. (`imsync.v1.UnifiedMessageService.MarkUnifiedMessagesRead`)"""
        result: uni.MarkUnifiedMessagesReadResponse = await self._unary(
            self._unified.MarkUnifiedMessagesRead, request, timeout, metadata
        )
        return result

    # replies
    async def send_reply(
        self, request: rep.SendReplyRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> rep.SendReplyResponse:
        """Sends a reply. The same request_id with the same content answers the existing reply; with other content
        it is refused (ALREADY_EXISTS, HTTP 409). Request ids are the account's own: another account's ids
        neither conflict nor show. (`imsync.v1.ReplyService.SendReply`)"""
        result: rep.SendReplyResponse = await self._unary(self._replies.SendReply, request, timeout, metadata)
        return result

    async def get_reply(
        self, request: rep.GetReplyRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> rep.GetReplyResponse:
        """Gets a reply's state. (`imsync.v1.ReplyService.GetReply`)"""
        result: rep.GetReplyResponse = await self._unary(self._replies.GetReply, request, timeout, metadata)
        return result

    # logins (an API key with the login scope)
    async def get_login(
        self, request: lg.GetLoginRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> lg.GetLoginResponse:
        """Gets the login under way for an account: what the platform asks of an operator.
        (`imsync.v1.LoginService.GetLogin`)"""
        result: lg.GetLoginResponse = await self._unary(self._logins.GetLogin, request, timeout, metadata)
        return result

    async def submit_login_code(
        self, request: lg.SubmitLoginCodeRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> lg.SubmitLoginCodeResponse:
        """Sends the code an operator typed (e.g. received by SMS) to the worker, which types it into the
        platform's login page. A wrong code comes back in the login's error.
        (`imsync.v1.LoginService.SubmitLoginCode`)"""
        result: lg.SubmitLoginCodeResponse = await self._unary(self._logins.SubmitLoginCode, request, timeout, metadata)
        return result

    async def restart_login(
        self, request: lg.RestartLoginRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> lg.RestartLoginResponse:
        """Asks the worker to start the account's login again (a new QR code), e.g. after one failed.
        (`imsync.v1.LoginService.RestartLogin`)"""
        result: lg.RestartLoginResponse = await self._unary(self._logins.RestartLogin, request, timeout, metadata)
        return result

    # the fleet (an API key with the admin scope)

    async def list_managed_accounts(
        self, request: fl.ListManagedAccountsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> fl.ListManagedAccountsResponse:
        """Lists the managed accounts by id, each with the worker it is assigned to now. (`imsync.v1.FleetService.ListManagedAccounts`)"""
        result: fl.ListManagedAccountsResponse = await self._unary(
            self._fleet.ListManagedAccounts, request, timeout, metadata
        )
        return result

    async def get_managed_account(
        self, request: fl.GetManagedAccountRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> fl.GetManagedAccountResponse:
        """Gets one managed account. (`imsync.v1.FleetService.GetManagedAccount`)"""
        result: fl.GetManagedAccountResponse = await self._unary(
            self._fleet.GetManagedAccount, request, timeout, metadata
        )
        return result

    async def create_managed_account(
        self, request: fl.CreateManagedAccountRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> fl.CreateManagedAccountResponse:
        """Adds an account; its id must be new (ALREADY_EXISTS otherwise). The master assigns it to a worker at once unless it is paused. (`imsync.v1.FleetService.CreateManagedAccount`)"""
        result: fl.CreateManagedAccountResponse = await self._unary(
            self._fleet.CreateManagedAccount, request, timeout, metadata
        )
        return result

    async def update_managed_account(
        self, request: fl.UpdateManagedAccountRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> fl.UpdateManagedAccountResponse:
        """Changes the fields of an account the mask names (all that may be changed when the mask is empty). Pausing takes the account from its worker; resuming gives it one. (`imsync.v1.FleetService.UpdateManagedAccount`)"""
        result: fl.UpdateManagedAccountResponse = await self._unary(
            self._fleet.UpdateManagedAccount, request, timeout, metadata
        )
        return result

    async def delete_managed_account(
        self, request: fl.DeleteManagedAccountRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> fl.DeleteManagedAccountResponse:
        """Removes an account from the fleet: its worker stops crawling it and its kept session is forgotten. What the master holds of its inbox stays until retention drops it. (`imsync.v1.FleetService.DeleteManagedAccount`)"""
        result: fl.DeleteManagedAccountResponse = await self._unary(
            self._fleet.DeleteManagedAccount, request, timeout, metadata
        )
        return result

    async def list_workers(
        self, request: fl.ListWorkersRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> fl.ListWorkersResponse:
        """Lists the workers connected to this master that take scheduled accounts. (`imsync.v1.FleetService.ListWorkers`)"""
        result: fl.ListWorkersResponse = await self._unary(self._fleet.ListWorkers, request, timeout, metadata)
        return result

    # events
    async def stream_events(
        self, request: ev.StreamEventsRequest, *, timeout: float | None = None, metadata: Metadata | None = None
    ) -> AsyncIterator[ev.StreamEventsResponse]:
        """Streams events as they happen, filtered by account and type. With after_event_id it first
        replays what happened since that event, as long as the master's bounded history still holds it
        (else OUT_OF_RANGE: reload, then subscribe without it). (`imsync.v1.EventService.StreamEvents`)

        Follows events until the stream ends; `timeout` bounds the whole stream (None: no bound).
        """
        stream: Any = self._events.StreamEvents(
            request, timeout=timeout, metadata=self._metadata + tuple(metadata or ())
        )
        try:
            async for response in stream:
                yield response
        except grpc.aio.AioRpcError as error:
            raise ImsyncError.of(error) from None


@dataclass(frozen=True)
class Tls:
    """TLS to the master: the CA to trust (None: the system's), and for a master that asks
    for one, this client's certificate and key (PEM files or bytes)."""

    ca: Path | bytes | None = None
    cert: Path | bytes | None = None
    key: Path | bytes | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(value: Path | bytes | None) -> bytes | None:
            return value.read_bytes() if isinstance(value, Path) else value

        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


# Reads retried, up to 4 tries in all, while the master is briefly unavailable (a restart,
# a master of several going away); writes are not (a reply's request id makes sending it
# again safe, but that is the caller's choice).
_READS = {
    "imsync.v1.AccountService": ("ListAccounts", "GetAccount"),
    "imsync.v1.ConversationService": ("ListConversations", "GetConversation"),
    "imsync.v1.MessageService": ("ListMessages", "GetMessage"),
    "imsync.v1.ContentService": ("ListContents", "GetContent", "GetContentStats"),
    "imsync.v1.DiscussionService": ("ListDiscussions", "GetDiscussion"),
    "imsync.v1.UnifiedMessageService": ("ListUnifiedMessages", "GetUnifiedStats"),
    "imsync.v1.ReplyService": ("GetReply",),
    "imsync.v1.LoginService": ("GetLogin",),
}
SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [
                {"service": service, "method": method} for service, methods in _READS.items() for method in methods
            ],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


def connect(
    target: str,
    *,
    api_key: str | None = None,
    tls: Tls | bool | None = None,
    timeout: float | None = 10.0,
    retry_reads: bool = True,
) -> ImClient:
    """An ImClient on a new channel to the master at `target` ("host:port", or a gRPC target
    such as "ipv4:host1:port1,host2:port2" for several masters).

    `api_key`: sent with every call (`imsync api-key create`). `tls`: True for TLS trusting
    the system's CAs, or a Tls; None or False for plain text (loopback, a trusted network).
    `retry_reads`: reads are tried again while the master is unavailable (SERVICE_CONFIG)."""
    options: list[tuple[str, Any]] = [
        ("grpc.lb_policy_name", "round_robin"),
        # Reconnect to a master that was down within 2 s of its return: gRPC's own backoff
        # grows to two minutes, and every call while it waits fails at once.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if retry_reads:
        options += [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(SERVICE_CONFIG))]
    if tls:
        credentials = (Tls() if tls is True else tls).credentials()
        channel = grpc.aio.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.aio.insecure_channel(target, options=options)
    metadata = [("authorization", f"Bearer {api_key}")] if api_key else []
    return ImClient(channel, timeout=timeout, metadata=metadata)
