"""A platform adapter over generated sample data, for the demo and the sync tests.

It is not a platform: its accounts grow by themselves a little at each crawl, and it
performs replies by adding them to its own data. The Douyin adapter reads a real browser.
"""

from __future__ import annotations

import asyncio
import time

from google.protobuf.timestamp_pb2 import Timestamp

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.sample import SampleAccount

from .account_state import COLLECTION_NAMES, AccountView
from .adapter import CrawlResult, LiveSink, LoginOperator


class SampleAdapter:
    collections = COLLECTION_NAMES

    def __init__(self, account_id: str, seed: int, *, size: dict[str, int] | None = None) -> None:
        self.sample = SampleAccount(account_id, seed, int(time.time()))
        shape = dict(conversations=12, messages_per_conversation=6, contents=6, comments_per_content=8)
        self.sample.fill(**(shape | (size or {})))
        self._crawls = 0

    async def crawl(self) -> CrawlResult:
        if self._crawls:
            self.sample.grow(int(time.time()))
        self._crawls += 1
        # The sample keeps growing its protos in place: the view gets copies.
        batch, account = sync_pb2.EntityBatch(), e.Account()
        batch.CopyFrom(self.sample.batch)
        account.CopyFrom(self.sample.account)
        return CrawlResult(AccountView.from_batch(account, batch), frozenset(COLLECTION_NAMES))

    async def perform(self, command: sync_pb2.Command) -> sync_pb2.CommandResult:
        now = int(time.time())
        action = command.WhichOneof("action")
        if action == "send_message":
            wanted = command.send_message.conversation_id
            conversation = next((c for c in self.sample.batch.conversations if c.conversation_id == wanted), None)
            if conversation is None:
                return _failed(e.FAILURE_REASON_TARGET_NOT_FOUND, f"no conversation {wanted}")
            message = self.sample.add_message(conversation, now, inbound=False)
            message.content = command.send_message.text
            conversation.last_message.content = command.send_message.text
            return _sent(message.message_id)
        if action == "reply_to_comment":
            reply = command.reply_to_comment
            if not any(c.comment_id == reply.comment_id for c in self.sample.batch.comments):
                return _failed(e.FAILURE_REASON_TARGET_NOT_FOUND, f"no comment {reply.comment_id}")
            created = self.sample.add_reply(reply.content_id, reply.comment_id, reply.text, now)
            return _sent(created.comment_id)
        return _failed(e.FAILURE_REASON_PLATFORM_ERROR, f"unknown action {action}")

    async def log_in(self, operator: LoginOperator) -> None:
        pass  # generated data is never logged out

    async def watch(self, sink: LiveSink) -> None:
        await asyncio.Event().wait()  # nothing arrives live: the crawls bring it all

    async def close(self) -> None:
        pass


def _sent(created_id: str) -> sync_pb2.CommandResult:
    performed = Timestamp()
    performed.GetCurrentTime()
    return sync_pb2.CommandResult(outcome=sync_pb2.COMMAND_OUTCOME_SENT, created_id=created_id, performed_at=performed)


def _failed(reason: e.FailureReason.ValueType, message: str) -> sync_pb2.CommandResult:
    return sync_pb2.CommandResult(outcome=sync_pb2.COMMAND_OUTCOME_FAILED, reason=reason, message=message)
