"""Commands for workers (replies, private messages): queued, delivered, answered, expired.

A command waits for the worker owning its account, is delivered on that worker's stream
(again on each new stream until answered), and ends SENT or FAILED with a reason. A
command nobody answers before its expiry fails with FAILURE_REASON_EXPIRED, visibly.
The request id makes a command idempotent: the same id with the same action is the same
command; with another action it is refused. Request ids are the account's own: another
account's id neither conflicts with one nor says whether it was used.

A worker's answer is taken only from the stream the command was last delivered on, for
an account that stream holds: nobody else can complete a command.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from imsync.v1 import entities_pb2 as e
from imsync.v1 import replies_pb2 as rep
from imsync.v1 import sync_pb2
from services.master.model.errors import AlreadyExists, InvalidArgument, ResourceExhausted


class CommandState(enum.Enum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"

    @classmethod
    def of(cls, result: sync_pb2.CommandResult | None) -> CommandState:
        if result is None:
            return cls.PENDING
        return cls.SENT if result.outcome == sync_pb2.COMMAND_OUTCOME_SENT else cls.FAILED


@dataclass
class CommandRecord:
    command: sync_pb2.Command
    state: CommandState = CommandState.PENDING
    result: sync_pb2.CommandResult | None = None
    # The stream it was last delivered on; a new stream gets it again.
    delivered_to: int | None = None
    created_at: float = field(default_factory=time.time)


Listener = Callable[[CommandRecord], None]


def command_key(account_id: str, request_id: str) -> str:
    """What a command is kept under: request ids are per account."""
    return f"{account_id}\n{request_id}"


class Commands(Protocol):
    """The commands of every account, wherever they are kept (CommandBook in memory,
    RedisCommandBook shared by several masters)."""

    # Hears of an account with a new command to deliver.
    on_pending: Callable[[str], None] | None
    # Seconds a command waits for its worker before it fails as expired.
    ttl: float

    async def submit(self, command: sync_pb2.Command) -> CommandRecord: ...

    async def get(self, account_id: str, request_id: str) -> CommandRecord | None: ...

    async def find(self, request_id: str) -> list[CommandRecord]:
        """The commands of every account with this request id (the caller keeps those the
        asker may see)."""
        ...

    async def delivered_to(self, account_id: str, request_id: str) -> int | None:
        """The stream of this master the command was last delivered on, if any."""
        ...

    async def deliverable(self, account_id: str, session_id: int) -> list[sync_pb2.Command]:
        """Pending commands of an account not yet delivered on this stream; marks them delivered."""
        ...

    async def complete(self, result: sync_pb2.CommandResult) -> CommandRecord | None:
        """Records a worker's answer; None for a request id nobody knows."""
        ...

    async def expire(self) -> list[CommandRecord]:
        """Fails every pending command past its expiry."""
        ...


REPLY_ACTIONS = frozenset({"reply_to_comment", "send_message"})


def is_reply(command: sync_pb2.Command) -> bool:
    """A reply a person sent, which clients see (GetReply, events) and the journal keeps;
    the other commands (a login's code, a restart) are the worker's business only, and a
    login code is never shown or kept once answered."""
    return command.WhichOneof("action") in REPLY_ACTIONS


def check_command(command: sync_pb2.Command) -> None:
    if not command.request_id:
        raise InvalidArgument("must not be empty", field="request_id")
    if not command.account_id:
        raise InvalidArgument("must not be empty", field="account_id")
    if command.WhichOneof("action") is None:
        raise InvalidArgument("one of reply_to_comment, send_message is required", field="action")


def same_command(existing: CommandRecord, command: sync_pb2.Command) -> CommandRecord:
    """`existing` when `command` is the same command sent again; else AlreadyExists."""
    same, kept = sync_pb2.Command(), sync_pb2.Command()
    same.CopyFrom(command)
    kept.CopyFrom(existing.command)
    same.expires_at.CopyFrom(kept.expires_at)
    for unlike in ("trace_context", "agent"):
        same.ClearField(unlike)
        kept.ClearField(unlike)
    if same != kept:
        raise AlreadyExists(f"request id {command.request_id!r} was used for another command", field="request_id")
    return existing


def with_expiry(command: sync_pb2.Command, default_expiry: float) -> sync_pb2.Command:
    """A copy of the command with its expiry set (to `default_expiry`, a time in seconds, if it had none)."""
    stored = sync_pb2.Command()
    stored.CopyFrom(command)
    if not stored.HasField("expires_at"):
        stored.expires_at.FromNanoseconds(int(default_expiry * 1e9))
    return stored


def expiry_result(command: sync_pb2.Command, now_ns: int) -> sync_pb2.CommandResult:
    performed = Timestamp()
    performed.FromNanoseconds(now_ns)
    return sync_pb2.CommandResult(
        request_id=command.request_id,
        account_id=command.account_id,
        outcome=sync_pb2.COMMAND_OUTCOME_FAILED,
        reason=e.FAILURE_REASON_EXPIRED,
        message="no worker of the account performed it before it expired",
        performed_at=performed,
    )


class CommandBook:
    def __init__(
        self,
        *,
        ttl: float = 300.0,
        max_pending_per_account: int = 1000,
        max_finished: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self._max_pending = max_pending_per_account
        self._max_finished = max_finished
        self._clock = clock
        # command_key(account, request id) -> record.
        self._records: OrderedDict[str, CommandRecord] = OrderedDict()
        # Request id -> the accounts with a command of that id.
        self._accounts_of: dict[str, set[str]] = {}
        self._pending: dict[str, dict[str, CommandRecord]] = {}
        self._listeners: list[Listener] = []
        # Hears of finished commands the book forgets (past its bound), by command_key.
        self.on_forget: Callable[[str], None] | None = None
        # Hears of an account with a new command to deliver.
        self.on_pending: Callable[[str], None] | None = None

    def subscribe(self, listener: Listener) -> None:
        """`listener` hears of every new command and every change of state."""
        self._listeners.append(listener)

    def _notify(self, record: CommandRecord) -> None:
        for listener in self._listeners:
            listener(record)

    async def submit(self, command: sync_pb2.Command) -> CommandRecord:
        check_command(command)
        key = command_key(command.account_id, command.request_id)
        existing = self._records.get(key)
        if existing is not None:
            return same_command(existing, command)
        pending = self._pending.setdefault(command.account_id, {})
        if len(pending) >= self._max_pending:
            raise ResourceExhausted(f"{self._max_pending} commands already wait for account {command.account_id!r}")
        record = CommandRecord(with_expiry(command, self._clock() + self.ttl), created_at=self._clock())
        self._records[key] = record
        self._accounts_of.setdefault(command.request_id, set()).add(command.account_id)
        pending[command.request_id] = record
        self._trim()
        self._notify(record)
        if self.on_pending is not None:
            self.on_pending(command.account_id)
        return record

    def restore(self, record: CommandRecord) -> None:
        """Takes back a command a previous master journaled; a pending one waits for delivery again."""
        record.delivered_to = None
        command = record.command
        self._records[command_key(command.account_id, command.request_id)] = record
        self._accounts_of.setdefault(command.request_id, set()).add(command.account_id)
        if record.state is CommandState.PENDING:
            self._pending.setdefault(record.command.account_id, {})[record.command.request_id] = record

    def records(self) -> list[CommandRecord]:
        return list(self._records.values())

    async def get(self, account_id: str, request_id: str) -> CommandRecord | None:
        return self._records.get(command_key(account_id, request_id))

    async def find(self, request_id: str) -> list[CommandRecord]:
        return [
            self._records[command_key(account_id, request_id)]
            for account_id in sorted(self._accounts_of.get(request_id, ()))
        ]

    async def delivered_to(self, account_id: str, request_id: str) -> int | None:
        record = self._records.get(command_key(account_id, request_id))
        return None if record is None else record.delivered_to

    async def deliverable(self, account_id: str, session_id: int) -> list[sync_pb2.Command]:
        """Pending commands of an account not yet delivered on this stream; marks them delivered."""
        out = []
        for record in self._pending.get(account_id, {}).values():
            if record.delivered_to != session_id:
                record.delivered_to = session_id
                out.append(record.command)
        return out

    async def complete(self, result: sync_pb2.CommandResult) -> CommandRecord | None:
        """Records a worker's answer; None for a request id the master does not know."""
        record = self._records.get(command_key(result.account_id, result.request_id))
        if record is None:
            return None
        stored = sync_pb2.CommandResult()
        stored.CopyFrom(result)
        self._finish(record, stored)
        return record

    async def expire(self) -> list[CommandRecord]:
        """Fails every pending command past its expiry."""
        now_ns = int(self._clock() * 1e9)
        expired = [
            record
            for pending in self._pending.values()
            for record in pending.values()
            if record.command.expires_at.ToNanoseconds() <= now_ns
        ]
        for record in expired:
            self._finish(record, expiry_result(record.command, now_ns))
        return expired

    def _finish(self, record: CommandRecord, result: sync_pb2.CommandResult) -> None:
        # A worker's answer after expiry still wins: the platform's truth is what happened.
        record.result = result
        record.state = CommandState.of(result)
        self._pending.get(record.command.account_id, {}).pop(record.command.request_id, None)
        if record.command.HasField("submit_login_code"):
            record.command.submit_login_code.code = ""  # answered: no longer kept
        self._notify(record)

    def _trim(self) -> None:
        """Forgets the oldest finished commands past the bound; pending ones are kept."""
        excess = len(self._records) - self._max_finished
        if excess <= 0:
            return
        for key in [key for key, rec in self._records.items() if rec.state is not CommandState.PENDING][:excess]:
            command = self._records.pop(key).command
            accounts = self._accounts_of.get(command.request_id, set())
            accounts.discard(command.account_id)
            if not accounts:
                self._accounts_of.pop(command.request_id, None)
            if self.on_forget is not None:
                self.on_forget(key)


_STATES = {
    CommandState.PENDING: rep.REPLY_STATE_PENDING,
    CommandState.SENT: rep.REPLY_STATE_SENT,
    CommandState.FAILED: rep.REPLY_STATE_FAILED,
}


def reply_of(record: CommandRecord) -> rep.Reply:
    command = record.command
    reply = rep.Reply(
        request_id=command.request_id,
        account_id=command.account_id,
        state=_STATES[record.state],
        expire_time=command.expires_at,
        agent=command.agent,
    )
    created = Timestamp()
    created.FromNanoseconds(int(record.created_at * 1e9))
    reply.create_time.CopyFrom(created)
    if command.HasField("reply_to_comment"):
        reply.reply_to_comment.CopyFrom(command.reply_to_comment)
    else:
        reply.send_message.CopyFrom(command.send_message)
    if record.result is not None:
        reply.reason = record.result.reason
        reply.detail = record.result.message
        reply.created_id = record.result.created_id
        if record.result.HasField("performed_at"):
            reply.performed_time.CopyFrom(record.result.performed_at)
    return reply
