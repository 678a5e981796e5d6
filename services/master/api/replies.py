"""ReplyService: a person's reply becomes a command to the worker owning the account."""

from __future__ import annotations

from imsync.v1 import replies_pb2 as rep
from imsync.v1 import replies_pb2_grpc, sync_pb2
from services.common.observability import inject
from services.master.api.queries import Context, Guarded
from services.master.auth.api_keys import Access, ApiKeys
from services.master.model.commands import CommandRecord, Commands, is_reply, reply_of
from services.master.model.errors import InvalidArgument, NotFound
from services.master.model.store import Store
from services.master.model.written import check_written

MAX_TEXT = 2000
MAX_REQUEST_ID = 128


class ReplyServicer(Guarded, replies_pb2_grpc.ReplyServiceServicer):
    def __init__(self, store: Store, keys: ApiKeys, book: Commands) -> None:
        super().__init__(store, keys)
        self._book = book

    async def _command(self, request: rep.SendReplyRequest, access: Access) -> sync_pb2.Command:
        if not request.request_id:
            raise InvalidArgument("required: a client-chosen id that makes sending again safe", field="request_id")
        if len(request.request_id) > MAX_REQUEST_ID:
            raise InvalidArgument(f"at most {MAX_REQUEST_ID} characters", field="request_id")
        command = sync_pb2.Command(request_id=request.request_id, agent=access.agent)
        target = request.WhichOneof("target")
        if target == "reply_to_comment":
            wanted = request.reply_to_comment
            if not wanted.comment_id:
                raise InvalidArgument("required", field="reply_to_comment.comment_id")
            holder = await self._holder(access, "comment", wanted.comment_id, request.account_id)
            comment = await self._store.get_discussion(holder, wanted.comment_id)
            command.account_id = comment.account_id
            command.reply_to_comment.CopyFrom(wanted)
            command.reply_to_comment.content_id = comment.content_id
            text, field = wanted.text, "reply_to_comment.text"
        elif target == "send_message":
            wanted_message = request.send_message
            if not wanted_message.conversation_id:
                raise InvalidArgument("required", field="send_message.conversation_id")
            holder = await self._holder(access, "conversation", wanted_message.conversation_id, request.account_id)
            conversation = await self._store.get_conversation(holder, wanted_message.conversation_id)
            command.account_id = conversation.account_id
            command.send_message.CopyFrom(wanted_message)
            text, field = wanted_message.text, "send_message.text"
        else:
            raise InvalidArgument("one of reply_to_comment, send_message is required", field="target")
        check_written(text, field, MAX_TEXT)
        inject(command.trace_context)  # the worker's spans continue this request's trace
        return command

    async def SendReply(self, request: rep.SendReplyRequest, context: Context) -> rep.SendReplyResponse:
        async def submit(access: Access) -> CommandRecord:
            return await self._book.submit(await self._command(request, access))

        record = await self._answer(context, submit)
        return rep.SendReplyResponse(reply=reply_of(record))

    async def GetReply(self, request: rep.GetReplyRequest, context: Context) -> rep.GetReplyResponse:
        async def find(access: Access) -> CommandRecord:
            if not request.request_id:
                raise InvalidArgument("required", field="request_id")
            if request.account_id:
                access.check(request.account_id)
                found = await self._book.get(request.account_id, request.request_id)
                records = [found] if found is not None else []
            else:
                records = await self._book.find(request.request_id)
            # A reply of an account the key may not use is not found, as one never sent; a
            # command that is not a reply (a login's code) is nobody's reply.
            records = [r for r in records if access.may_use(r.command.account_id) and is_reply(r.command)]
            if not records:
                raise NotFound(f"reply {request.request_id!r} not found")
            if len(records) > 1:
                raise InvalidArgument(
                    f"replies of id {request.request_id!r} exist in several accounts; name one", field="account_id"
                )
            return records[0]

        return rep.GetReplyResponse(reply=reply_of(await self._answer(context, find)))
