"""Replies (commands) in Redis, shared by several masters.

A reply accepted by any master is stored in its account's slot (`<p>:{a}:cmd:<request id>`,
pending ones also in `<p>:{a}:cmdq`, scored by expiry), and a notice goes on
`<p>:commands`; every master follows the notices and delivers the command if one of its
streams owns the account. The worker's answer, on whatever master it arrives, completes
the record; the master that changes a record queues the REPLY_STATE_CHANGED event in the
same transaction (the account's outbox), so it is announced exactly once, to every
master's clients. Request ids are per account (the record's key names its account);
`<p>:rid:<request id>` is the set of accounts with a command of that id, for a lookup by
id alone, which the caller narrows to the accounts the asker may see. `<p>:cmd-expiry`
lets any master expire what nobody performed in time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from imsync.v1 import events_pb2 as ev
from imsync.v1 import sync_pb2
from services.master.model.commands import (
    CommandRecord,
    CommandState,
    check_command,
    expiry_result,
    is_reply,
    reply_of,
    same_command,
    with_expiry,
)
from services.master.model.errors import ResourceExhausted
from services.master.model.metrics import observe_reply
from services.master.redis.connect import Client
from services.master.redis.events import follow_stream
from services.master.redis.layout import AccountKeys
from services.master.redis.store import RedisStore

log = logging.getLogger(__name__)

# KEYS: record, pending, outbox; ARGV: command, created_at, request id, expiry (ms),
# bound on pending, event (none when empty). {1} when stored; {0, command, created_at, result} when the
# request id is taken; {-1} when the account has too many pending commands.
_SUBMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  local found = redis.call('HMGET', KEYS[1], 'command', 'created_at', 'result')
  return {0, found[1], found[2], found[3] or ''}
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return {-1} end
redis.call('HSET', KEYS[1], 'command', ARGV[1], 'created_at', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
if ARGV[6] ~= '' then redis.call('RPUSH', KEYS[3], ARGV[6]) end
return {1}
"""

# KEYS: record, pending, outbox; ARGV: result, request id, event (none when empty),
# only_pending ("1": only while pending, for an expiry), the command to keep instead (none
# when empty: a login's code is dropped once answered). 1 when the record changed.
_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[4] == '1' and not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'result', ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[3], ARGV[3]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'command', ARGV[5]) end
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisCommandBook:
    def __init__(
        self,
        store: RedisStore,
        *,
        ttl: float = 300.0,
        max_pending_per_account: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        # Set when the master stops: the follow ends (redis/events.py's follow_stream).
        self.stopping = asyncio.Event()
        self._store = store
        self._redis: Client = store.redis
        self._prefix = store.prefix
        self._max_pending = max_pending_per_account
        self._clock = clock
        self._submit = self._redis.register_script(_SUBMIT)
        self._finish = self._redis.register_script(_FINISH)
        self.notices_key = f"{self._prefix}:commands"
        self.expiry_key = f"{self._prefix}:cmd-expiry"
        # Account -> request id -> the stream of this master it was last delivered on.
        self._delivered: dict[str, dict[str, int]] = {}
        self.on_pending: Callable[[str], None] | None = None

    def _keys(self, account_id: str) -> AccountKeys:
        return AccountKeys(self._prefix, account_id)

    def _rid_key(self, request_id: str) -> str:
        return f"{self._prefix}:rid:{request_id}"

    @staticmethod
    def _event(record: CommandRecord) -> bytes:
        """The REPLY_STATE_CHANGED event of a reply; nothing for the other commands."""
        if not is_reply(record.command):
            return b""
        event = ev.Event(
            type=ev.EVENT_TYPE_REPLY_STATE_CHANGED, account_id=record.command.account_id, reply=reply_of(record)
        )
        event.create_time.GetCurrentTime()
        return event.SerializeToString()

    @staticmethod
    def _record(command: Any, created_at: Any, result: Any) -> CommandRecord:
        parsed = sync_pb2.CommandResult.FromString(result) if result else None
        return CommandRecord(
            sync_pb2.Command.FromString(command), CommandState.of(parsed), parsed, created_at=float(_text(created_at))
        )

    async def submit(self, command: sync_pb2.Command) -> CommandRecord:
        check_command(command)
        now = self._clock()
        record = CommandRecord(with_expiry(command, now + self.ttl), created_at=now)
        keys = self._keys(command.account_id)
        expiry_ms = record.command.expires_at.ToNanoseconds() // 1_000_000
        # Indexed for expiry before it exists: a crash in between leaves an index entry
        # that the expiry sweep drops, never a command nobody expires.
        await self._redis.zadd(self.expiry_key, {f"{command.account_id}\n{command.request_id}": expiry_ms})
        answer = await self._submit(
            keys=[keys.command(command.request_id), keys.pending, keys.outbox],
            args=[
                record.command.SerializeToString(),
                repr(record.created_at),
                command.request_id,
                str(expiry_ms),
                str(self._max_pending),
                self._event(record),
            ],
        )
        status = int(answer[0])
        if status == -1:
            raise ResourceExhausted(f"{self._max_pending} commands already wait for account {command.account_id!r}")
        if status == 0:
            return same_command(self._record(answer[1], answer[2], answer[3] or None), command)
        self._store.wrote()
        await self._redis.sadd(self._rid_key(command.request_id), command.account_id)
        observe_reply(record)
        await self._store.flush_outbox(keys)
        await self._redis.xadd(self.notices_key, {"account_id": command.account_id}, maxlen=10_000, approximate=True)
        return record

    async def get(self, account_id: str, request_id: str) -> CommandRecord | None:
        found = await self._redis.hmget(self._keys(account_id).command(request_id), ["command", "created_at", "result"])
        if found[0] is None:
            return None
        return self._record(found[0], found[1], found[2])

    async def find(self, request_id: str) -> list[CommandRecord]:
        accounts = sorted(_text(a) for a in await self._redis.smembers(self._rid_key(request_id)))
        found = [await self.get(account_id, request_id) for account_id in accounts]
        return [record for record in found if record is not None]

    async def delivered_to(self, account_id: str, request_id: str) -> int | None:
        return self._delivered.get(account_id, {}).get(request_id)

    async def deliverable(self, account_id: str, session_id: int) -> list[sync_pb2.Command]:
        keys = self._keys(account_id)
        pending = [_text(rid) for rid in await self._redis.zrange(keys.pending, 0, -1)]
        # What is no longer pending (answered, perhaps through another master) is forgotten.
        delivered = {rid: session for rid, session in self._delivered.get(account_id, {}).items() if rid in pending}
        self._delivered[account_id] = delivered
        fresh = [rid for rid in pending if delivered.get(rid) != session_id]
        if not fresh:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for request_id in fresh:
            pipe.hget(keys.command(request_id), "command")
        out = []
        for request_id, raw in zip(fresh, await pipe.execute(), strict=True):
            if raw is not None:
                delivered[request_id] = session_id
                out.append(sync_pb2.Command.FromString(raw))
        return out

    async def _change(
        self, account_id: str, request_id: str, result: sync_pb2.CommandResult, *, only_pending: bool
    ) -> CommandRecord | None:
        keys = self._keys(account_id)
        found = await self._redis.hmget(keys.command(request_id), ["command", "created_at"])
        if found[0] is None:
            return None
        record = self._record(found[0], found[1], None)
        record.result = result
        record.state = CommandState.of(result)
        # A login's code is not kept once answered: the record keeps the command without it.
        redacted = b""
        if record.command.HasField("submit_login_code"):
            record.command.submit_login_code.code = ""
            redacted = record.command.SerializeToString()
        changed = await self._finish(
            keys=[keys.command(request_id), keys.pending, keys.outbox],
            args=[result.SerializeToString(), request_id, self._event(record), "1" if only_pending else "0", redacted],
        )
        if not int(changed):
            return None
        self._store.wrote()
        self._delivered.get(account_id, {}).pop(request_id, None)
        observe_reply(record)
        await self._redis.zrem(self.expiry_key, f"{account_id}\n{request_id}")
        await self._store.flush_outbox(keys)
        return record

    async def complete(self, result: sync_pb2.CommandResult) -> CommandRecord | None:
        stored = sync_pb2.CommandResult()
        stored.CopyFrom(result)
        # A worker's answer after expiry still wins: the platform's truth is what happened.
        return await self._change(result.account_id, result.request_id, stored, only_pending=False)

    async def expire(self) -> list[CommandRecord]:
        now = self._clock()
        due = await self._redis.zrangebyscore(self.expiry_key, 0, int(now * 1000), start=0, num=1000)
        expired = []
        for entry in map(_text, due):
            account_id, _, request_id = entry.partition("\n")
            found: Any = await self._redis.hget(self._keys(account_id).command(request_id), "command")
            if found is not None:
                command = sync_pb2.Command.FromString(found)
                record = await self._change(
                    account_id, request_id, expiry_result(command, int(now * 1e9)), only_pending=True
                )
                if record is not None:
                    expired.append(record)
            await self._redis.zrem(self.expiry_key, entry)
        return expired

    async def follow(self) -> None:
        """Hears of every master's new commands and hands their accounts to on_pending,
        until cancelled."""
        newest = await self._redis.xrevrange(self.notices_key, count=1)

        def notice(entry_id: Any, fields: dict[bytes, bytes]) -> None:
            account_id = fields.get(b"account_id")
            if account_id is not None and self.on_pending is not None:
                self.on_pending(_text(account_id))

        await follow_stream(
            self._redis,
            self.notices_key,
            _text(newest[0][0]) if newest else "0-0",
            notice,
            "the command notices",
            self.stopping,
        )
