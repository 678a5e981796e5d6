"""ThreadService: the team's handling of conversations (model/threads.py): assignment and
claims, open, done and snoozed, marked unread, internal notes, and who is writing where.

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
    """A request naming one conversation."""

    @property
    def account_id(self) -> str: ...

    @property
    def conversation_id(self) -> str: ...


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

    async def _change(self, access: Access, request: _Addressed, change: threads.Change) -> e.Conversation:
        account_id, conversation_id = request.account_id, request.conversation_id
        if not conversation_id:
            raise InvalidArgument("required", field="conversation_id")
        holder = await self._holder(access, "conversation", conversation_id, account_id)
        return await self._store.handle_conversation(holder, conversation_id, change, time.time_ns())

    async def AssignConversation(
        self, request: thr.AssignConversationRequest, context: Context
    ) -> thr.AssignConversationResponse:
        async def compute(access: Access) -> e.Conversation:
            assignee = self._known_agent(request.assignee, "assignee") if request.assignee else ""
            return await self._change(access, request, threads.assign(assignee, access.agent))

        return thr.AssignConversationResponse(conversation=await self._answer(context, compute))

    async def ClaimConversation(
        self, request: thr.ClaimConversationRequest, context: Context
    ) -> thr.ClaimConversationResponse:
        async def compute(access: Access) -> e.Conversation:
            return await self._change(access, request, threads.claim(require_agent(access)))

        return thr.ClaimConversationResponse(conversation=await self._answer(context, compute))

    async def SetConversationState(
        self, request: thr.SetConversationStateRequest, context: Context
    ) -> thr.SetConversationStateResponse:
        async def compute(access: Access) -> e.Conversation:
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

        return thr.SetConversationStateResponse(conversation=await self._answer(context, compute))

    async def MarkConversationUnread(
        self, request: thr.MarkConversationUnreadRequest, context: Context
    ) -> thr.MarkConversationUnreadResponse:
        async def compute(access: Access) -> e.Conversation:
            return await self._change(access, request, threads.mark_unread(access.agent))

        return thr.MarkConversationUnreadResponse(conversation=await self._answer(context, compute))

    async def AddConversationNote(
        self, request: thr.AddConversationNoteRequest, context: Context
    ) -> thr.AddConversationNoteResponse:
        note = e.Note(note_id=secrets.token_hex(8), text=threads.check_note(request.text))

        async def compute(access: Access) -> e.Conversation:
            note.agent = access.agent
            note.create_time.FromNanoseconds(time.time_ns())
            return await self._change(access, request, threads.add_note(note))

        conversation = await self._answer(context, compute)
        return thr.AddConversationNoteResponse(note=note, conversation=conversation)

    async def ListConversationNotes(
        self, request: thr.ListConversationNotesRequest, context: Context
    ) -> thr.ListConversationNotesResponse:
        notes = await self._answer_held(
            context,
            "conversation",
            request.conversation_id,
            request.account_id,
            lambda holder: self._store.conversation_notes(holder, request.conversation_id),
        )
        return thr.ListConversationNotesResponse(notes=notes)

    async def SetConversationPresence(
        self, request: thr.SetConversationPresenceRequest, context: Context
    ) -> thr.SetConversationPresenceResponse:
        async def compute(access: Access) -> e.Presence:
            agent = require_agent(access)
            holder = await self._holder(access, "conversation", request.conversation_id, request.account_id)
            await self._store.get_conversation(holder, request.conversation_id)  # NotFound for an unknown one
            presence = e.Presence(conversation_id=request.conversation_id, agent=agent, is_typing=request.is_typing)
            presence.expire_time.FromNanoseconds(time.time_ns() + PRESENCE_SECONDS * 10**9)
            await self._store.announce(ev.Event(type=ev.EVENT_TYPE_PRESENCE, account_id=holder, presence=presence))
            return presence

        return thr.SetConversationPresenceResponse(presence=await self._answer(context, compute))
