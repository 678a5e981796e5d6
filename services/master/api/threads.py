"""ThreadService: the team's handling of threads (model/threads.py), conversations and
comment threads: assignment and claims, open, done and snoozed, marked unread, internal
notes, and who is writing where.

Every change records the agent of the caller's API key. Assignees are agents the API keys
name (without a keys file, any well-formed name)."""

from __future__ import annotations

import secrets
import time
from typing import Protocol

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import threads_pb2 as thr
from imsync.v1 import threads_pb2_grpc
from services.master.api import thread_list
from services.master.api.queries import Context, Guarded
from services.master.auth.api_keys import Access, check_agent
from services.master.model import threads
from services.master.model.errors import InvalidArgument, PermissionDenied
from services.master.model.keys import ns_of

# How long a presence lasts unless said again (the console says it every few seconds
# while its reply box is in use).
PRESENCE_SECONDS = 8
_STATES = (threads.OPEN, threads.DONE, threads.SNOOZED)


class _Addressed(Protocol):
    """A request naming one thread: a conversation, or a comment thread by a comment."""

    @property
    def account_id(self) -> str: ...

    @property
    def conversation_id(self) -> str: ...

    @property
    def comment_id(self) -> str: ...


def _kind(request: _Addressed) -> str:
    """Which kind of thread the request names, "conversation" or "comment" (exactly one)."""
    if request.conversation_id and request.comment_id:
        raise InvalidArgument("give conversation_id or comment_id, not both", field="comment_id")
    if not request.conversation_id and not request.comment_id:
        raise InvalidArgument("required (or comment_id, for a comment thread)", field="conversation_id")
    return "conversation" if request.conversation_id else "comment"


def require_agent(access: Access) -> str:
    """The caller's agent: claims and presence are a person's."""
    if not access.agent:
        raise PermissionDenied("this API key names no agent (imsync api-key create --agent NAME makes one that does)")
    return access.agent


class ThreadServicer(Guarded, threads_pb2_grpc.ThreadServiceServicer):
    def _known_agent(self, name: str, field: str) -> str:
        try:
            check_agent(name)
        except ValueError as error:
            raise InvalidArgument(str(error), field=field) from None
        known = self._keys.agents()
        if known is not None and name not in known:
            raise InvalidArgument(f"no API key names the agent {name!r}", field=field)
        return name

    async def _change(
        self, access: Access, request: _Addressed, change: threads.Change
    ) -> tuple[e.Conversation | None, e.Thread]:
        """Applies `change` to the thread the request names: the conversation (for a
        conversation) and the thread, as they are after it."""
        now = time.time_ns()
        if _kind(request) == "conversation":
            holder = await self._holder(access, "conversation", request.conversation_id, request.account_id)
            conversation = await self._store.handle_conversation(holder, request.conversation_id, change, now)
            return conversation, thread_list.conversation_thread(conversation)
        holder = await self._holder(access, "comment", request.comment_id, request.account_id)
        holder, root = await self._store.handle_comment_thread(holder, request.comment_id, change, now)
        return None, await thread_list.comment_thread(self._store, holder, root, now)

    async def AssignConversation(
        self, request: thr.AssignConversationRequest, context: Context
    ) -> thr.AssignConversationResponse:
        async def compute(access: Access) -> tuple[e.Conversation | None, e.Thread]:
            assignee = self._known_agent(request.assignee, "assignee") if request.assignee else ""
            return await self._change(access, request, threads.assign(assignee, access.agent))

        conversation, thread = await self._answer(context, compute)
        return thr.AssignConversationResponse(conversation=conversation, thread=thread)

    async def ClaimConversation(
        self, request: thr.ClaimConversationRequest, context: Context
    ) -> thr.ClaimConversationResponse:
        async def compute(access: Access) -> tuple[e.Conversation | None, e.Thread]:
            return await self._change(access, request, threads.claim(require_agent(access)))

        conversation, thread = await self._answer(context, compute)
        return thr.ClaimConversationResponse(conversation=conversation, thread=thread)

    async def SetConversationState(
        self, request: thr.SetConversationStateRequest, context: Context
    ) -> thr.SetConversationStateResponse:
        async def compute(access: Access) -> tuple[e.Conversation | None, e.Thread]:
            state = request.thread_state
            if state not in _STATES:
                raise InvalidArgument("one of THREAD_STATE_OPEN, _DONE, _SNOOZED", field="thread_state")
            until = 0
            if state == threads.SNOOZED:
                if not request.HasField("snoozed_until"):
                    raise InvalidArgument("required with THREAD_STATE_SNOOZED", field="snoozed_until")
                until = ns_of(request.snoozed_until)
            elif request.HasField("snoozed_until"):
                raise InvalidArgument("only with THREAD_STATE_SNOOZED", field="snoozed_until")
            return await self._change(access, request, threads.set_state(state, until, access.agent))

        conversation, thread = await self._answer(context, compute)
        return thr.SetConversationStateResponse(conversation=conversation, thread=thread)

    async def MarkConversationUnread(
        self, request: thr.MarkConversationUnreadRequest, context: Context
    ) -> thr.MarkConversationUnreadResponse:
        async def compute(access: Access) -> tuple[e.Conversation | None, e.Thread]:
            return await self._change(access, request, threads.mark_unread(access.agent))

        conversation, thread = await self._answer(context, compute)
        return thr.MarkConversationUnreadResponse(conversation=conversation, thread=thread)

    async def AddConversationNote(
        self, request: thr.AddConversationNoteRequest, context: Context
    ) -> thr.AddConversationNoteResponse:
        note = e.Note(note_id=secrets.token_hex(8), text=threads.check_note(request.text))

        async def compute(access: Access) -> tuple[e.Conversation | None, e.Thread]:
            note.agent = access.agent
            note.create_time.FromNanoseconds(time.time_ns())
            return await self._change(access, request, threads.add_note(note))

        conversation, thread = await self._answer(context, compute)
        return thr.AddConversationNoteResponse(note=note, conversation=conversation, thread=thread)

    async def ListConversationNotes(
        self, request: thr.ListConversationNotesRequest, context: Context
    ) -> thr.ListConversationNotesResponse:
        async def compute(access: Access) -> list[e.Note]:
            if _kind(request) == "conversation":
                holder = await self._holder(access, "conversation", request.conversation_id, request.account_id)
                return await self._store.conversation_notes(holder, request.conversation_id)
            holder = await self._holder(access, "comment", request.comment_id, request.account_id)
            comment = await self._store.get_discussion(holder, request.comment_id)
            thread_key = threads.thread_of(comment)
            handling = (await self._store.thread_handlings(holder, [thread_key])).get(thread_key)
            return list(handling.notes) if handling is not None else []

        return thr.ListConversationNotesResponse(notes=await self._answer(context, compute))

    async def SetConversationPresence(
        self, request: thr.SetConversationPresenceRequest, context: Context
    ) -> thr.SetConversationPresenceResponse:
        async def compute(access: Access) -> e.Presence:
            agent = require_agent(access)
            presence = e.Presence(agent=agent, is_typing=request.is_typing)
            if _kind(request) == "conversation":
                holder = await self._holder(access, "conversation", request.conversation_id, request.account_id)
                await self._store.get_conversation(holder, request.conversation_id)  # NotFound for an unknown one
                presence.conversation_id = request.conversation_id
            else:
                holder = await self._holder(access, "comment", request.comment_id, request.account_id)
                comment = await self._store.get_discussion(holder, request.comment_id)
                presence.comment_id = comment.parent_comment_id or comment.comment_id
            presence.expire_time.FromNanoseconds(time.time_ns() + PRESENCE_SECONDS * 10**9)
            await self._store.announce(ev.Event(type=ev.EVENT_TYPE_PRESENCE, account_id=holder, presence=presence))
            return presence

        return thr.SetConversationPresenceResponse(presence=await self._answer(context, compute))
