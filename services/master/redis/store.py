"""The Redis store: every account's newest state in Redis, shared by the masters using it.

The layout is in redis_layout.py. A change reads what it touches (one pipelined round
trip), computes itself with the memory store's own code (transitions.py, AccountState)
over recording containers (redis_recording.py), and commits its net writes in one script
that first checks the account's `rev` is still the one read: two masters changing one
account never interleave, the later one computes again. A read takes two pipelined round
trips (the order, then the items) and is repeated when `rev` moved between them, so that a
page never mixes two versions of an account. Events of a change are queued in the
account's outbox by the same script, then moved to the shared stream (redis_events.py's
RedisEventFeed delivers them to every master's subscribers).

What an acknowledgement means depends on Redis's persistence: see the README
("Durability with Redis"). `check_persistence` says it at start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import sync_pb2
from imsync.v1 import unified_messages_pb2 as u
from services.master.model import cursor as cursors
from services.master.model import filters, transitions
from services.master.model.account_state import (
    AccountState,
    Handling,
    Presence,
    arrival_event,
    comment_key,
    message_key,
    notification_key,
    ns_of,
    split_item_key,
)
from services.master.model.cursor import Newest
from services.master.model.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.master.model.retention import Retention, removal_count
from services.master.model.store import DeltaData, Page, SnapshotData, UnifiedStats, page_size
from services.master.redis.layout import COMMIT, FLUSH, AccountKeys, Writes, id_of, inbox_key, key_of, member_of, number
from services.master.redis.leases import unavailable_on_redis_errors
from services.master.redis.recording import record_counters, recording_state

T = TypeVar("T")
P = ParamSpec("P")
log = logging.getLogger(__name__)

# Events moved from an outbox to the stream in one step.
_FLUSH_BATCH = 100

_APPLIED_HISTORY = 64
# Attempts of a change or a read before the account is taken for too busy.
_ATTEMPTS = 50
_KINDS = {
    "conversation": "conversations",
    "message": "messages",
    "content": "contents",
    "comment": "comments",
    "notification": "notifications",
}
_UNREAD_TOTALS = ("unread_comments", "unread_discussions", "unread_direct_messages", "unread_notifications")
_PARSERS: dict[str, Callable[[bytes], Any]] = {
    "contents": e.Content.FromString,
    "comments": e.Comment.FromString,
    "conversations": e.Conversation.FromString,
    "messages": e.Message.FromString,
    "notifications": e.Notification.FromString,
}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _strings(values: Any) -> list[str]:
    """Redis's replies (bytes) as text."""
    return [_text(value) for value in values]


class _Meta:
    """An account's meta hash, decoded."""

    def __init__(self, raw: dict[bytes, bytes]) -> None:
        def get(name: str, default: bytes = b"") -> bytes:
            return raw.get(name.encode(), default)

        self.rev = get("rev", b"0").decode()
        self.version = int(get("version", b"0"))
        self.applied = [int(v) for v in get("applied").decode().split(",") if v]
        self.account = e.Account.FromString(get("account"))
        self.presence = Presence(worker_id=get("worker_id").decode(), online=get("online") == b"1")
        self.presence.status.ParseFromString(get("status"))
        self.totals = {name: int(get(name, b"0")) for name in _UNREAD_TOTALS}
        self.horizons = {kind: int(value) for kind in ("messages", "comments") if (value := get(f"horizon:{kind}"))}


def _view_state(account_id: str, meta: _Meta) -> AccountState:
    """A state with the account's profile and handling containers, for building views."""
    state = AccountState(account_id, meta.version, meta.account, Handling())
    state.presence = meta.presence
    state.unread_comments = meta.totals["unread_comments"]
    state.unread_discussions = meta.totals["unread_discussions"]
    state.unread_direct_messages = meta.totals["unread_direct_messages"]
    state.unread_notifications = meta.totals["unread_notifications"]
    return state


def _entities(raw: Sequence[bytes | None], ids: Sequence[str], parse: Callable[[bytes], T]) -> dict[str, T]:
    return {entity_id: parse(value) for entity_id, value in zip(ids, raw, strict=True) if value is not None}


def _redis_errors(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Redis out of reach becomes UNAVAILABLE: the client or worker tries again later."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise Unavailable(f"the store (Redis) cannot be reached: {error}", retry_after=1.0) from error

    return guarded


class RedisStore:
    """The Store, in Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "imsync",
        retention: Retention | None = None,
        events_kept: int = 100_000,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        # Events go to Redis, not to a listener: every master's feed reads them from there.
        self.on_event: Callable[[ev.Event], None] | None = None
        self.redis = client
        self.prefix = prefix
        self.retention = retention if retention is not None and not retention.keeps_everything else None
        self.events_key = f"{prefix}:events"
        self.accounts_key = f"{prefix}:accounts"
        self._events_kept = events_kept
        self._clock = clock
        self._commit = client.register_script(COMMIT)
        self._flush = client.register_script(FLUSH)
        self._warned_at = 0.0

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStore:
        # A connection Redis closed (a restart) is tried again on a fresh one. That is safe:
        # a commit sent twice finds the rev moved and computes itself again, to a no-op.
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        return cls(client, **kwargs)

    async def close(self) -> None:
        await self.redis.aclose()

    def keys(self, account_id: str) -> AccountKeys:
        return AccountKeys(self.prefix, account_id)

    def persisted(self) -> Awaitable[object] | None:
        # Every change is committed before its call returns; how durable that is, is Redis's
        # persistence setting (check_persistence).
        return None

    async def check_persistence(self) -> str:
        """What an acknowledgement means with this Redis's persistence; warns when a crash of
        Redis's machine could lose acknowledged changes."""
        try:
            config = await self.redis.config_get("append*")
        except RedisError:
            return "unknown: CONFIG GET is not allowed; make sure appendonly is yes and appendfsync always"
        appendonly = _text(config.get("appendonly") or b"no")
        fsync = _text(config.get("appendfsync") or b"everysec")
        if appendonly == "yes" and fsync == "always":
            return "appendonly yes, appendfsync always: an acknowledged change is on Redis's disk"
        if appendonly == "yes":
            log.warning(
                "Redis appendfsync is %s: a crash of Redis's machine can lose about a second of acknowledged changes",
                fsync,
            )
            return f"appendonly yes, appendfsync {fsync}: a power loss can lose the last second of acknowledged changes"
        log.warning("Redis appendonly is off: a restart of Redis loses what changed since its last snapshot")
        return "appendonly no: a restart of Redis loses every change since its last RDB snapshot"

    # -------------------------------------------------------------- committing

    async def _commit_writes(self, keys: AccountKeys, rev: str, writes: Writes, fence: int = 0) -> bool:
        """Commits `writes` if the account is still at `rev`; False when it moved on."""
        key_list, ops = writes.encode([keys.meta, keys.lease])
        result = int(await self._commit(keys=key_list, args=[rev, str(fence) if fence else "", *ops]))
        if result == -1:
            return False
        if result == -2:
            raise FailedPrecondition(
                f"account {keys.account_id!r} is no longer held by this stream's lease; say hello again",
                field="account_id",
                reason="NOT_OWNER",
            )
        if writes.pushes.get(keys.outbox):
            await self.flush_outbox(keys)
        return True

    async def flush_outbox(self, keys: AccountKeys) -> None:
        """Moves the account's queued events to the shared stream, a hundred at a time, each
        hundred in one step (FLUSH): none lost by a crash between, none added twice by two
        masters flushing at once."""
        moved = _FLUSH_BATCH
        while moved == _FLUSH_BATCH:
            moved = await self._flush(keys=[keys.outbox, self.events_key], args=[_FLUSH_BATCH, self._events_kept])

    async def publish(self, event: ev.Event) -> None:
        """Adds an event that no account change carries (a reply's new state)."""
        await self.redis.xadd(
            self.events_key, {"e": event.SerializeToString()}, maxlen=self._events_kept, approximate=True
        )

    @staticmethod
    def _announce(writes: Writes, keys: AccountKeys, event: ev.Event) -> None:
        if not event.HasField("create_time"):
            event.create_time.GetCurrentTime()
        writes.push(keys.outbox, event.SerializeToString())

    def _announce_arrivals(self, writes: Writes, keys: AccountKeys, state: AccountState) -> None:
        for entity in state.arrivals:
            self._announce(writes, keys, arrival_event(state, entity))
        state.arrivals.clear()

    def _announce_read(self, writes: Writes, keys: AccountKeys, items: list[str]) -> None:
        if items:
            change = ev.ReadStateChange(item_ids=items, is_read=True)
            self._announce(
                writes,
                keys,
                ev.Event(type=ev.EVENT_TYPE_READ_STATE_CHANGED, account_id=keys.account_id, read_state=change),
            )

    async def _change(self, account_id: str, attempt: Callable[[], Awaitable[T | None]]) -> T:
        """Runs `attempt` (which returns None when the account moved on) until it commits."""
        for _ in range(_ATTEMPTS):
            result = await attempt()
            if result is not None:
                return result
            await asyncio.sleep(0)
        raise Unavailable(f"account {account_id!r} changes too fast to commit; try again", retry_after=0.1)

    # ----------------------------------------------------------------- loading

    async def _load(
        self,
        keys: AccountKeys,
        writes: Writes,
        *,
        entities: Mapping[str, Collection[str]],
        items: Collection[str] = (),
        pinned: Collection[str] = (),
    ) -> tuple[str, AccountState] | None:
        """The part of an account a change touches, as a recording state; None when the
        account does not exist."""
        wanted = {name: list(ids) for name, ids in entities.items() if ids}
        item_list = list(items)
        pinned_list = list(pinned)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.meta)
        for name, ids in wanted.items():
            pipe.hmget(keys.entities[name], ids)
        if item_list:
            pipe.hmget(keys.read, item_list)
            pipe.smismember(keys.sets["new"], item_list)
        if pinned_list:
            pipe.smismember(keys.sets["pinned"], pinned_list)
        results = await pipe.execute()
        raw_meta = results[0]
        if not raw_meta:
            return None
        meta = _Meta(raw_meta)
        at = 1
        loaded: dict[str, dict[str, Any]] = {}
        for name, ids in wanted.items():
            loaded[name] = _entities(results[at], ids, _PARSERS[name])
            at += 1
        read_at: dict[str, int] = {}
        sets: dict[str, set[str]] = {}
        if item_list:
            read_at = {item: int(v) for item, v in zip(item_list, results[at], strict=True) if v is not None}
            sets["new"] = {item for item, flag in zip(item_list, results[at + 1], strict=True) if flag}
            at += 2
        if pinned_list:
            sets["pinned"] = {cid for cid, flag in zip(pinned_list, results[at], strict=True) if flag}
        state = recording_state(
            keys,
            writes,
            version=meta.version,
            applied=meta.applied,
            account=meta.account,
            presence=meta.presence,
            horizons=meta.horizons,
            entities=loaded,
            read_at=read_at,
            sets=sets,
        )
        return meta.rev, state

    async def _load_full(self, keys: AccountKeys, *, register: bool = False) -> tuple[str, AccountState] | None:
        """All of an account, as the memory store holds it (without its orders)."""
        pipe = self.redis.pipeline(transaction=False)
        if register:
            self._register(pipe, keys.account_id)
        pipe.hgetall(keys.meta)
        for name in _PARSERS:
            pipe.hgetall(keys.entities[name])
        pipe.hgetall(keys.read)
        for name in ("pinned", "muted", "new", "newc"):
            pipe.smembers(keys.sets[name])
        raw_meta, *rest = (await pipe.execute())[1 if register else 0 :]
        if not raw_meta:
            return None
        meta = _Meta(raw_meta)
        collections = {
            name: {k.decode(): parse(v) for k, v in raw.items()}
            for (name, parse), raw in zip(_PARSERS.items(), rest[:5], strict=True)
        }
        read = rest[5]
        pinned, muted, new, newc = ({m.decode() for m in members} for members in rest[6:10])
        handling = Handling(
            read_at={k.decode(): int(v) for k, v in read.items()},
            pinned=pinned,
            muted=muted,
            new_items=new,
            new_contents=newc,
            horizons=dict(meta.horizons),
        )
        state = AccountState(keys.account_id, meta.version, meta.account, handling)
        state.presence = meta.presence
        state.applied_versions.extend(meta.applied)
        for name, entities in collections.items():
            setattr(state, name, entities)
        return meta.rev, state

    # -------------------------------------------------------------------- sync

    def _floors(self, state: AccountState | None) -> dict[str, int] | None:
        if self.retention is None:
            return None
        horizons = self.retention.horizons(self._clock())
        return state.floors(horizons) if state is not None else horizons

    @_redis_errors
    async def reset_version(self, account_id: str) -> int:
        """Forgets which versions of the account were applied (admin.py); returns the version
        it had. The revision moves: a change computed meanwhile is computed again."""
        keys = self.keys(account_id)
        before = await self.redis.hget(keys.meta, "version")
        if before is None:
            raise NotFound(f"account {account_id!r} not found")
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.meta, mapping={"version": "0", "applied": ""})
        pipe.hincrby(keys.meta, "rev", 1)
        await pipe.execute()
        return int(before)

    @_redis_errors
    async def known_accounts(self, account_ids: Iterable[str]) -> set[str]:
        ids = list(account_ids)
        if not ids:
            return set()
        scores = await self.redis.zmscore(self.accounts_key, ids)
        return {account_id for account_id, score in zip(ids, scores, strict=True) if score is not None}

    @_redis_errors
    async def account_count(self) -> int:
        return int(await self.redis.zcard(self.accounts_key))

    @_redis_errors
    async def account_versions(self, account_ids: Iterable[str]) -> dict[str, int]:
        ids = list(account_ids)
        pipe = self.redis.pipeline(transaction=False)
        for account_id in ids:
            pipe.hget(self.keys(account_id).meta, "version")
        return {account_id: int(v or 0) for account_id, v in zip(ids, await pipe.execute(), strict=True)}

    def _register(self, pipe: Any, account_id: str) -> None:
        """Queues the account's id in the list of accounts, in the pipeline that reads what
        its change needs: before its first commit, so that a crash in between leaves an id
        without data, which every list skips, never data without an id."""
        pipe.zadd(self.accounts_key, {account_id: 0}, nx=True)

    @_redis_errors
    async def apply_snapshot(self, snapshot: SnapshotData) -> bool:
        keys = self.keys(snapshot.account_id)

        async def attempt() -> bool | None:
            loaded = await self._load_full(keys, register=True)
            rev, current = loaded if loaded is not None else ("0", None)
            if not transitions.snapshot_is_new(current, snapshot):
                return False
            handling = current.handling if current is not None else Handling()
            state = transitions.after_snapshot(current, handling, snapshot, self._floors(current))
            writes = Writes()
            self._announce_arrivals(writes, keys, state)
            self._write_whole(writes, keys, current, state)
            return True if await self._commit_writes(keys, rev, writes, snapshot.lease_epoch) else None

        return await self._change(snapshot.account_id, attempt)

    def _write_whole(self, writes: Writes, keys: AccountKeys, old: AccountState | None, state: AccountState) -> None:
        """Replaces the account's crawled state, its orders and counters with `state`'s."""
        writes.deleted += [*keys.entities.values(), *keys.orders.values(), *keys.counters.values()]
        writes.deleted += [keys.sets["new"], keys.sets["newc"]]
        if old is not None:
            groups = {
                "mbc": {m.conversation_id for m in old.messages.values()},
                "cbc": {c.content_id for c in old.comments.values()},
                "rbp": {c.parent_comment_id for c in old.comments.values() if c.parent_comment_id},
            }
            writes.deleted += [keys.group(name, group) for name, ids in groups.items() for group in ids]
        for name in _PARSERS:
            fields = writes.hash(keys.entities[name])
            for entity_id, entity in getattr(state, name).items():
                fields[entity_id] = entity.SerializeToString()
        for name, order in (
            ("conversations", state.conversation_order),
            ("messages", state.message_order),
            ("contents", state.content_order),
            ("comments", state.comment_order),
        ):
            members = writes.zset(keys.orders[name])
            for key in order:
                members[member_of(key)] = True
        inbox = writes.zset(keys.orders["inbox"])
        for item, order in (
            ("message:", state.inbox_messages),
            ("comment:", state.inbox_comments),
            ("notification:", state.inbox_notifications),
        ):
            for key in order:
                inbox[member_of(inbox_key(key, item))] = True
        for name, groups_of in (
            ("mbc", state.messages_by_conversation),
            ("cbc", state.comments_by_content),
            ("rbp", state.replies_by_parent),
        ):
            for group, order in groups_of.items():
                members = writes.zset(keys.group(name, group))
                for key in order:
                    members[member_of(key)] = True
        for name, counter in (
            ("conversation_unread", state.unread_by_conversation),
            ("content_unread", state.unread_by_content),
            ("content_new", state.new_by_content),
        ):
            counts = writes.hash(keys.counters[name])
            for group, value in counter.items():
                if value:
                    counts[group] = str(value)
        new, newc = writes.set(keys.sets["new"]), writes.set(keys.sets["newc"])
        new.update(dict.fromkeys(state.handling.new_items, True))
        newc.update(dict.fromkeys(state.handling.new_contents, True))
        meta = writes.hash(keys.meta)
        meta.update(
            version=str(state.version),
            applied=",".join(map(str, list(state.applied_versions)[-_APPLIED_HISTORY:])),
            account=state.account.SerializeToString(),
            unread_comments=str(state.unread_comments),
            unread_discussions=str(state.unread_discussions),
            unread_direct_messages=str(state.unread_direct_messages),
            unread_notifications=str(state.unread_notifications),
        )

    @_redis_errors
    async def apply_delta(self, delta: DeltaData) -> bool:
        keys = self.keys(delta.account_id)
        upserts, removals = delta.upserts, delta.removals
        entities = {
            "contents": {c.content_id for c in upserts.contents} | set(removals.content_ids),
            "comments": {c.comment_id for c in upserts.comments} | set(removals.comment_ids),
            "conversations": {c.conversation_id for c in upserts.conversations} | set(removals.conversation_ids),
            "messages": {m.message_id for m in upserts.messages} | set(removals.message_ids),
            "notifications": {n.notification_id for n in upserts.notifications} | set(removals.notification_ids),
        }
        items = (
            [message_key(m) for m in entities["messages"]]
            + [comment_key(c) for c in entities["comments"]]
            + [notification_key(n) for n in entities["notifications"]]
        )

        async def attempt() -> bool | None:
            writes = Writes()
            loaded = await self._load(keys, writes, entities=entities, items=items, pinned=entities["conversations"])
            rev, state = loaded if loaded is not None else ("0", None)
            if not transitions.delta_is_new(state, delta):
                return False
            assert state is not None
            transitions.apply_delta(state, delta, self._floors(state))
            self._announce_arrivals(writes, keys, state)
            record_counters(state, keys, writes)
            self._write_head(writes, keys, state)
            return True if await self._commit_writes(keys, rev, writes, delta.lease_epoch) else None

        return await self._change(delta.account_id, attempt)

    @staticmethod
    def _write_head(writes: Writes, keys: AccountKeys, state: AccountState) -> None:
        writes.hash(keys.meta).update(
            version=str(state.version),
            applied=",".join(map(str, list(state.applied_versions)[-_APPLIED_HISTORY:])),
            account=state.account.SerializeToString(),
        )

    async def _presence_change(
        self, account_id: str, change: Callable[[Presence], bool], *, unless_leased: bool = False
    ) -> None:
        keys = self.keys(account_id)

        async def attempt() -> bool | None:
            pipe = self.redis.pipeline(transaction=False)
            self._register(pipe, account_id)
            pipe.hgetall(keys.meta)
            pipe.exists(keys.lease)
            _, raw, leased = await pipe.execute()
            meta = _Meta(raw)
            if (unless_leased and leased) or not change(meta.presence):
                return True
            writes = Writes()
            fields = writes.hash(keys.meta)
            fields.update(worker_id=meta.presence.worker_id, online="1" if meta.presence.online else "0")
            fields["status"] = meta.presence.status.SerializeToString()
            if not raw:
                fields.update(version="0", account=e.Account(account_id=account_id).SerializeToString())
                meta.account = e.Account(account_id=account_id)
            view = _view_state(account_id, meta).account_view()
            self._announce(
                writes, keys, ev.Event(type=ev.EVENT_TYPE_ACCOUNT_STATUS_CHANGED, account_id=account_id, account=view)
            )
            return True if await self._commit_writes(keys, meta.rev, writes) else None

        await self._change(account_id, attempt)

    @_redis_errors
    async def report_status(self, report: sync_pb2.AccountStatusReport) -> None:
        def change(presence: Presence) -> bool:
            if presence.status == report:
                return False
            presence.status.CopyFrom(report)
            return True

        await self._presence_change(report.account_id, change)

    @_redis_errors
    @unavailable_on_redis_errors
    async def set_presence(self, account_id: str, worker_id: str, online: bool) -> None:
        def change(presence: Presence) -> bool:
            if (presence.worker_id, presence.online) == (worker_id, online):
                return False
            presence.worker_id, presence.online = worker_id, online
            return True

        await self._presence_change(account_id, change)

    @_redis_errors
    async def get_presence(self, account_id: str) -> Presence:
        keys = self._account_keys(account_id)
        fetched = await self._fetch(keys, None, lambda pipe: None)
        assert fetched is not None
        return fetched[0].presence

    # ------------------------------------------------------------------ reading

    async def _walk(
        self,
        order_key: str,
        index: str,
        shape: Sequence[type],
        cursor: str,
        count: int,
        build: Callable[[list[str], str | None], Awaitable[list[T | None] | None]],
        *,
        meta_key: str | None = None,
        stop: Callable[[cursors.SortKey], bool] | None = None,
    ) -> Page[T]:
        """A page of an order after the cursor's key: `build` turns members into items (None
        skips one) or returns None when the account moved on since the members were read."""
        limit = page_size(count)
        after = cursors.decode(cursor, index, shape)
        start = "-" if after is None else "(" + member_of(after)
        items: list[T] = []
        last: cursors.SortKey | None = None
        batch = limit + 1
        attempts = 0

        def done(has_more: bool) -> Page[T]:
            return Page(items, cursors.encode(index, last) if last is not None else "", has_more)

        while True:
            pipe = self.redis.pipeline(transaction=False)
            if meta_key is not None:
                pipe.hget(meta_key, "rev")
            pipe.zrangebylex(order_key, start, "+", 0, batch)
            results = await pipe.execute()
            rev = None
            if meta_key is not None:
                if results[0] is None:
                    raise NotFound(f"account {index_account(meta_key)!r} not found")
                rev = _text(results[0])
            members = [m.decode() for m in results[-1]]
            views = await build(members, rev) if members else []
            if views is None:
                attempts += 1
                if attempts > _ATTEMPTS:
                    raise Unavailable("the account changes too fast to read; try again", retry_after=0.1)
                continue
            for member, view in zip(members, views, strict=True):
                key = key_of(member, shape)
                if stop is not None and stop(key):
                    return done(False)
                if view is None:
                    continue
                if len(items) == limit:
                    return done(True)
                items.append(view)
                last = key
            if len(members) < batch:
                return done(False)
            start = "(" + members[-1]
            batch = min(batch * 2, 1000)

    async def _fetch(
        self, keys: AccountKeys, rev: str | None, calls: Callable[[Any], None]
    ) -> tuple[_Meta, list[Any]] | None:
        """The account's meta and what `calls` asks for, in one round trip; None when the
        account's rev is no longer `rev` (a change came between two steps of a read)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.meta)
        calls(pipe)
        raw_meta, *results = await pipe.execute()
        if not raw_meta:
            raise NotFound(f"account {keys.account_id!r} not found")
        meta = _Meta(raw_meta)
        if rev is not None and meta.rev != rev:
            return None
        return meta, results

    def _account_keys(self, account_id: str) -> AccountKeys:
        if not account_id:
            raise InvalidArgument("required", field="account_id")
        return self.keys(account_id)

    async def _items_state(
        self,
        keys: AccountKeys,
        rev: str | None,
        *,
        messages: Sequence[str] = (),
        comments: Sequence[str] = (),
        notifications: Sequence[str] = (),
    ) -> AccountState | None:
        """A view state holding these messages, comments and notifications with their read
        marks and news."""
        items = (
            [message_key(m) for m in messages]
            + [comment_key(c) for c in comments]
            + [notification_key(n) for n in notifications]
        )
        wanted = (("messages", messages), ("comments", comments), ("notifications", notifications))

        def calls(pipe: Any) -> None:
            for name, ids in wanted:
                pipe.hmget(keys.entities[name], list(ids)) if ids else pipe.echo("")
            if items:
                pipe.hmget(keys.read, items)
                pipe.smismember(keys.sets["new"], items)

        fetched = await self._fetch(keys, rev, calls)
        if fetched is None:
            return None
        meta, results = fetched
        state = _view_state(keys.account_id, meta)
        for at, (name, ids) in enumerate(wanted):
            if ids:
                setattr(state, name, _entities(results[at], ids, _PARSERS[name]))
        if items:
            state.handling.read_at = {i: int(v) for i, v in zip(items, results[3], strict=True) if v is not None}
            state.handling.new_items = {i for i, flag in zip(items, results[4], strict=True) if flag}
        return state

    async def _conversations_state(self, keys: AccountKeys, rev: str | None, ids: Sequence[str]) -> AccountState | None:
        def calls(pipe: Any) -> None:
            pipe.hmget(keys.entities["conversations"], list(ids))
            pipe.hmget(keys.counters["conversation_unread"], list(ids))
            pipe.smismember(keys.sets["pinned"], list(ids))
            pipe.smismember(keys.sets["muted"], list(ids))

        fetched = await self._fetch(keys, rev, calls)
        if fetched is None:
            return None
        meta, (found, unread, pinned, muted) = fetched
        state = _view_state(keys.account_id, meta)
        state.conversations = _entities(found, ids, e.Conversation.FromString)
        state.unread_by_conversation.update({cid: int(n) for cid, n in zip(ids, unread, strict=True) if n is not None})
        state.handling.pinned = {cid for cid, flag in zip(ids, pinned, strict=True) if flag}
        state.handling.muted = {cid for cid, flag in zip(ids, muted, strict=True) if flag}
        return state

    async def _contents_state(self, keys: AccountKeys, rev: str | None, ids: Sequence[str]) -> AccountState | None:
        def calls(pipe: Any) -> None:
            pipe.hmget(keys.entities["contents"], list(ids))
            pipe.hmget(keys.counters["content_unread"], list(ids))
            pipe.hmget(keys.counters["content_new"], list(ids))
            pipe.smismember(keys.sets["newc"], list(ids))

        fetched = await self._fetch(keys, rev, calls)
        if fetched is None:
            return None
        meta, (found, unread, new, newc) = fetched
        state = _view_state(keys.account_id, meta)
        state.contents = _entities(found, ids, e.Content.FromString)
        state.unread_by_content.update({cid: int(n) for cid, n in zip(ids, unread, strict=True) if n is not None})
        state.new_by_content.update({cid: int(n) for cid, n in zip(ids, new, strict=True) if n is not None})
        state.handling.new_contents = {cid for cid, flag in zip(ids, newc, strict=True) if flag}
        return state

    # ---------------------------------------------------------------- accounts

    @_redis_errors
    async def accounts_holding(self, kind: str, entity_id: str) -> list[str]:
        ids = _strings(await self.redis.zrange(self.accounts_key, 0, -1))
        pipe = self.redis.pipeline(transaction=False)
        for account_id in ids:
            pipe.hexists(self.keys(account_id).entities[_KINDS[kind]], entity_id)
        return [account_id for account_id, held in zip(ids, await pipe.execute(), strict=True) if held]

    async def _owner(self, account_id: str, kind: str, entity_id: str, field: str) -> AccountKeys:
        """The account holding an entity: the one named, or else the only one that has it."""
        if account_id:
            keys = self.keys(account_id)
            pipe = self.redis.pipeline(transaction=False)
            pipe.exists(keys.meta)
            pipe.hexists(keys.entities[_KINDS[kind]], entity_id)
            exists, held = await pipe.execute()
            if not exists:
                raise NotFound(f"account {account_id!r} not found")
            owners = [account_id] if held else []
        else:
            owners = await self.accounts_holding(kind, entity_id)
        if not entity_id:
            raise InvalidArgument("required", field=field)
        if not owners:
            raise NotFound(f"{kind} {entity_id!r} not found")
        if len(owners) > 1:
            raise InvalidArgument(f"{kind} {entity_id!r} is in several accounts; name one", field="account_id")
        return self.keys(owners[0])

    @_redis_errors
    async def list_accounts(
        self,
        *,
        status: int,
        platform: int,
        cursor: str,
        count: int,
        only: Collection[str] | None = None,
    ) -> Page[e.Account]:
        wanted = filters.accounts(status, platform, only)

        async def build(members: list[str], rev: str | None) -> list[e.Account | None]:
            pipe = self.redis.pipeline(transaction=False)
            for account_id in members:
                pipe.hgetall(self.keys(account_id).meta)
            views: list[e.Account | None] = []
            for account_id, raw in zip(members, await pipe.execute(), strict=True):
                if not raw or (only is not None and account_id not in only):
                    views.append(None)
                    continue
                view = _view_state(account_id, _Meta(raw)).account_view()
                views.append(view if wanted(view) else None)
            return views

        return await self._walk(self.accounts_key, "accounts", (str,), cursor, count, build)

    @_redis_errors
    async def get_account(self, account_id: str) -> e.Account:
        keys = self._account_keys(account_id)
        fetched = await self._fetch(keys, None, lambda pipe: None)
        assert fetched is not None
        return _view_state(account_id, fetched[0]).account_view()

    # ----------------------------------------------------------- conversations

    @_redis_errors
    async def list_conversations(
        self,
        account_id: str,
        *,
        status: int,
        is_pinned: bool | None,
        is_muted: bool | None,
        cursor: str,
        count: int,
    ) -> Page[e.Conversation]:
        keys = self._account_keys(account_id)
        wanted = filters.conversations(status, is_pinned, is_muted)

        async def build(members: list[str], rev: str | None) -> list[e.Conversation | None] | None:
            ids = [id_of(m, 2, newest=False) for m in members]
            state = await self._conversations_state(keys, rev, ids)
            if state is None:
                return None
            views: list[e.Conversation | None] = []
            for cid in ids:
                if cid not in state.conversations:
                    return None
                view = state.conversation_view(cid)
                views.append(view if wanted(view) else None)
            return views

        return await self._walk(
            keys.orders["conversations"], "conversations", (int, int, str), cursor, count, build, meta_key=keys.meta
        )

    async def _conversation(self, keys: AccountKeys, conversation_id: str) -> e.Conversation:
        state = await self._conversations_state(keys, None, [conversation_id])
        assert state is not None
        if conversation_id not in state.conversations:
            raise NotFound(f"conversation {conversation_id!r} not found")
        return state.conversation_view(conversation_id)

    @_redis_errors
    async def get_conversation(self, account_id: str, conversation_id: str) -> e.Conversation:
        keys = await self._owner(account_id, "conversation", conversation_id, "conversation_id")
        return await self._conversation(keys, conversation_id)

    @_redis_errors
    async def mark_conversation_read(
        self, account_id: str, conversation_id: str, now_ns: int
    ) -> tuple[int, e.Conversation]:
        keys = await self._owner(account_id, "conversation", conversation_id, "conversation_id")
        marked = await self._mark(keys, lambda: self._group_items(keys, "mbc", conversation_id, message_key), now_ns)
        return marked, await self._conversation(keys, conversation_id)

    async def _group_items(self, keys: AccountKeys, group: str, group_id: str, item: Callable[[str], str]) -> list[str]:
        return [item(id_of(m, 1)) for m in _strings(await self.redis.zrange(keys.group(group, group_id), 0, -1))]

    async def _mark(
        self, keys: AccountKeys, find: Callable[[], Awaitable[list[str]]], now_ns: int, seen_content_id: str = ""
    ) -> int:
        """Marks inbox items read in one commit; returns how many were unread."""

        async def attempt() -> int | None:
            items = await find()
            split = list(map(_split, items))
            entities = {
                name: [entity for kind, entity in split if kind == item_kind]
                for item_kind, name in (
                    ("message", "messages"),
                    ("comment", "comments"),
                    ("notification", "notifications"),
                )
            }
            writes = Writes()
            loaded = await self._load(keys, writes, entities=entities, items=items)
            if loaded is None:
                raise NotFound(f"account {keys.account_id!r} not found")
            rev, state = loaded
            marked = [item for item in items if state.mark_read(item, now_ns)]
            if seen_content_id:
                state.handling.new_contents.discard(seen_content_id)
            if not marked and not seen_content_id:
                return 0
            self._announce_read(writes, keys, marked)
            record_counters(state, keys, writes)
            return len(marked) if await self._commit_writes(keys, rev, writes) else None

        return await self._change(keys.account_id, attempt)

    async def _flag(
        self, keys: AccountKeys, conversation_id: str, change: Callable[[AccountState], None]
    ) -> e.Conversation:
        async def attempt() -> bool | None:
            writes = Writes()
            loaded = await self._load(
                keys, writes, entities={"conversations": [conversation_id]}, pinned=[conversation_id]
            )
            if loaded is None:
                raise NotFound(f"account {keys.account_id!r} not found")
            rev, state = loaded
            if conversation_id not in state.conversations:
                raise NotFound(f"conversation {conversation_id!r} not found")
            change(state)
            return True if await self._commit_writes(keys, rev, writes) else None

        await self._change(keys.account_id, attempt)
        return await self._conversation(keys, conversation_id)

    @_redis_errors
    async def set_pinned(self, account_id: str, conversation_id: str, pinned: bool) -> e.Conversation:
        keys = await self._owner(account_id, "conversation", conversation_id, "conversation_id")
        return await self._flag(keys, conversation_id, lambda state: state.set_pinned(conversation_id, pinned))

    @_redis_errors
    async def set_muted(self, account_id: str, conversation_id: str, muted: bool) -> e.Conversation:
        keys = await self._owner(account_id, "conversation", conversation_id, "conversation_id")

        def change(state: AccountState) -> None:
            if muted:
                state.handling.muted.add(conversation_id)
            else:
                state.handling.muted.discard(conversation_id)

        return await self._flag(keys, conversation_id, change)

    # ---------------------------------------------------------------- messages

    @_redis_errors
    async def list_messages(
        self,
        account_id: str,
        *,
        conversation_id: str,
        sender_id: str,
        receiver_id: str,
        status: int,
        message_type: int,
        since_ns: int | None,
        cursor: str,
        count: int,
    ) -> Page[e.Message]:
        keys = self._account_keys(account_id)
        wanted = filters.messages(sender_id, receiver_id, status, message_type)
        order = keys.orders["messages"]
        if conversation_id:
            order = keys.group("mbc", conversation_id)
            pipe = self.redis.pipeline(transaction=False)
            pipe.exists(keys.meta)
            pipe.exists(order)
            pipe.hexists(keys.entities["conversations"], conversation_id)
            exists, has_messages, held = await pipe.execute()
            if not exists:
                raise NotFound(f"account {account_id!r} not found")
            if not has_messages and not held:
                raise NotFound(f"conversation {conversation_id!r} not found")

        async def build(members: list[str], rev: str | None) -> list[e.Message | None] | None:
            ids = [id_of(m, 1) for m in members]
            state = await self._items_state(keys, rev, messages=ids)
            if state is None:
                return None
            views: list[e.Message | None] = []
            for message_id in ids:
                message = state.messages.get(message_id)
                if message is None:
                    return None
                views.append(state.message_view(message) if wanted(message) else None)
            return views

        # Newest first: once a message is older than since_time, so are all after it.
        stop = None if since_ns is None else (lambda key: -int(key[0]) < since_ns)
        return await self._walk(order, "messages", (int, Newest), cursor, count, build, meta_key=keys.meta, stop=stop)

    @_redis_errors
    async def get_message(self, account_id: str, message_id: str) -> e.Message:
        keys = await self._owner(account_id, "message", message_id, "message_id")
        return await self._message(keys, message_id)

    async def _message(self, keys: AccountKeys, message_id: str) -> e.Message:
        state = await self._items_state(keys, None, messages=[message_id])
        assert state is not None
        if message_id not in state.messages:
            raise NotFound(f"message {message_id!r} not found")
        return state.message_view(state.messages[message_id])

    @_redis_errors
    async def mark_message_read(self, account_id: str, message_id: str, now_ns: int) -> e.Message:
        keys = await self._owner(account_id, "message", message_id, "message_id")
        await self._mark(keys, _constant([message_key(message_id)]), now_ns)
        return await self._message(keys, message_id)

    # ---------------------------------------------------------------- contents

    @_redis_errors
    async def list_contents(
        self,
        account_id: str,
        *,
        content_type: int,
        is_new: bool | None,
        cursor: str,
        count: int,
    ) -> Page[e.Content]:
        keys = self._account_keys(account_id)
        wanted = filters.contents(content_type, is_new)

        async def build(members: list[str], rev: str | None) -> list[e.Content | None] | None:
            ids = [id_of(m, 1, newest=False) for m in members]
            state = await self._contents_state(keys, rev, ids)
            if state is None:
                return None
            views: list[e.Content | None] = []
            for content_id in ids:
                if content_id not in state.contents:
                    return None
                view = state.content_view(content_id)
                views.append(view if wanted(view) else None)
            return views

        return await self._walk(
            keys.orders["contents"], "contents", (int, str), cursor, count, build, meta_key=keys.meta
        )

    async def _content(self, keys: AccountKeys, content_id: str) -> e.Content:
        state = await self._contents_state(keys, None, [content_id])
        assert state is not None
        if content_id not in state.contents:
            raise NotFound(f"content {content_id!r} not found")
        return state.content_view(content_id)

    @_redis_errors
    async def get_content(self, account_id: str, content_id: str) -> e.Content:
        keys = await self._owner(account_id, "content", content_id, "content_id")
        return await self._content(keys, content_id)

    @_redis_errors
    async def mark_content_read(self, account_id: str, content_id: str, now_ns: int) -> tuple[int, e.Content]:
        keys = await self._owner(account_id, "content", content_id, "content_id")
        seen = content_id if await self.redis.sismember(keys.sets["newc"], content_id) else ""
        marked = await self._mark(keys, lambda: self._group_items(keys, "cbc", content_id, comment_key), now_ns, seen)
        return marked, await self._content(keys, content_id)

    # ------------------------------------------------------------- discussions

    @_redis_errors
    async def list_discussions(
        self,
        account_id: str,
        *,
        content_id: str,
        parent_comment_id: str,
        is_read: bool | None,
        is_new: bool | None,
        cursor: str,
        count: int,
    ) -> Page[e.Comment]:
        keys = self._account_keys(account_id)
        wanted = filters.discussions(content_id, is_read, is_new)
        if parent_comment_id:
            order = keys.group("rbp", parent_comment_id)
        elif content_id:
            order = keys.group("cbc", content_id)
        else:
            order = keys.orders["comments"]

        async def build(members: list[str], rev: str | None) -> list[e.Comment | None] | None:
            ids = [id_of(m, 1) for m in members]
            state = await self._items_state(keys, rev, comments=ids)
            if state is None:
                return None
            views: list[e.Comment | None] = []
            for comment_id in ids:
                comment = state.comments.get(comment_id)
                if comment is None:
                    return None
                view = state.comment_view(comment)
                views.append(view if wanted(view) else None)
            return views

        return await self._walk(order, "discussions", (int, Newest), cursor, count, build, meta_key=keys.meta)

    async def _comment(self, keys: AccountKeys, comment_id: str) -> e.Comment:
        state = await self._items_state(keys, None, comments=[comment_id])
        assert state is not None
        if comment_id not in state.comments:
            raise NotFound(f"comment {comment_id!r} not found")
        return state.comment_view(state.comments[comment_id])

    @_redis_errors
    async def get_discussion(self, account_id: str, comment_id: str) -> e.Comment:
        keys = await self._owner(account_id, "comment", comment_id, "comment_id")
        return await self._comment(keys, comment_id)

    @_redis_errors
    async def mark_discussion_read(self, account_id: str, comment_id: str, now_ns: int) -> e.Comment:
        keys = await self._owner(account_id, "comment", comment_id, "comment_id")
        await self._mark(keys, _constant([comment_key(comment_id)]), now_ns)
        return await self._comment(keys, comment_id)

    # ----------------------------------------------------------- unified inbox

    @_redis_errors
    async def list_unified(
        self,
        account_id: str,
        *,
        types: Collection[int],
        is_read: bool | None,
        is_new: bool | None,
        cursor: str,
        count: int,
        since_ns: int | None = None,
    ) -> Page[u.UnifiedMessage]:
        keys = self._account_keys(account_id)
        wanted = filters.unified(types, is_read, is_new)

        async def build(members: list[str], rev: str | None) -> list[u.UnifiedMessage | None] | None:
            items = [id_of(m, 1) for m in members]
            state = await self._unified_state(keys, rev, items)
            if state is None:
                return None
            views: list[u.UnifiedMessage | None] = []
            for item in items:
                kind, entity_id = split_item_key(item, field="id")
                if entity_id not in state.collection(kind):
                    return None
                view = state.unified_view(item)
                views.append(view if wanted(view) else None)
            return views

        # Newest first: once an item is older than since_time, so are all after it.
        stop = None if since_ns is None else (lambda key: -int(key[0]) < since_ns)
        return await self._walk(
            keys.orders["inbox"], "unified", (int, Newest), cursor, count, build, meta_key=keys.meta, stop=stop
        )

    async def _unified_state(self, keys: AccountKeys, rev: str | None, items: Sequence[str]) -> AccountState | None:
        split = [split_item_key(item, field="id") for item in items]
        return await self._items_state(
            keys,
            rev,
            messages=[entity for kind, entity in split if kind == "message"],
            comments=[entity for kind, entity in split if kind == "comment"],
            notifications=[entity for kind, entity in split if kind == "notification"],
        )

    @_redis_errors
    async def unified_stats(self, account_id: str) -> UnifiedStats:
        keys = self._account_keys(account_id)
        fetched = await self._fetch(keys, None, lambda pipe: None)
        assert fetched is not None
        totals = fetched[0].totals
        return UnifiedStats(*(totals[name] for name in _UNREAD_TOTALS))

    @_redis_errors
    async def get_unified(self, account_id: str, item_id: str) -> u.UnifiedMessage:
        kind, entity_id = split_item_key(item_id, field="id")
        keys = await self._owner(account_id, kind, entity_id, "id")
        state = await self._unified_state(keys, None, [item_id])
        assert state is not None
        if entity_id not in state.collection(kind):
            raise NotFound(f"{kind} {entity_id!r} not found")
        return state.unified_view(item_id)

    @_redis_errors
    async def mark_unified_read(self, account_id: str, item_ids: Sequence[str], now_ns: int) -> int:
        # Locate every id before marking any, so a bad id changes nothing.
        owners: dict[str, list[str]] = {}
        for position, item_id in enumerate(item_ids):
            field = f"ids[{position}]"
            kind, entity_id = split_item_key(item_id, field=field)
            keys = await self._owner(account_id, kind, entity_id, field)
            owners.setdefault(keys.account_id, []).append(item_id)
        marked = 0
        for owner, items in owners.items():
            marked += await self._mark(self.keys(owner), _constant(items), now_ns)
        return marked

    # --------------------------------------------------------------- retention

    @_redis_errors
    async def enforce_retention(self, *, budget: int = 100_000) -> int:
        if self.retention is None:
            return 0
        horizons = self.retention.horizons(self._clock())
        evicted = 0
        account_ids = _strings(await self.redis.zrange(self.accounts_key, 0, -1))
        for account_id in account_ids:
            removals = await self._expired(self.keys(account_id), horizons)
            if removal_count(removals):
                evicted += await self._evict(self.keys(account_id), removals, {})
        bound = self.retention.max_entities
        if bound and (excess := await self.entity_count(account_ids) - bound) > 0:
            wanted = min(budget, excess + bound // 20)
            evicted += await self._evict_oldest_read(account_ids, wanted)
            left = await self.entity_count(account_ids) - bound
            if left > 0 and time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("%d entities over the bound of %d: the rest are unread and are kept", left, bound)
        return evicted

    @_redis_errors
    async def entity_count(self, account_ids: Sequence[str] | None = None) -> int:
        if account_ids is None:
            account_ids = _strings(await self.redis.zrange(self.accounts_key, 0, -1))
        pipe = self.redis.pipeline(transaction=False)
        for account_id in account_ids:
            for key in self.keys(account_id).entities.values():
                pipe.hlen(key)
        return sum(await pipe.execute())

    async def _expired(self, keys: AccountKeys, horizons: dict[str, int]) -> sync_pb2.Removals:
        """Past their time to live, found from the old end of each order (as the memory store does)."""
        removals = sync_pb2.Removals()
        for kind, target in (
            ("messages", removals.message_ids),
            ("comments", removals.comment_ids),
            ("contents", removals.content_ids),
        ):
            if floor := horizons.get(kind, 0):
                found = _strings(await self.redis.zrangebylex(keys.orders[kind], "[" + number(-floor), "+"))
                target.extend(id_of(m, 1, newest=kind != "contents") for m in found)
        if floor := horizons.get("conversations", 0):
            # Pinned conversations sort first (0) and stay until unpinned.
            found = _strings(
                await self.redis.zrangebylex(keys.orders["conversations"], "[" + number(1) + number(-floor), "+")
            )
            removals.conversation_ids.extend(id_of(m, 2, newest=False) for m in found)
        if floor := horizons.get("notifications", 0):
            held: dict[bytes, bytes] = await self.redis.hgetall(keys.entities["notifications"])  # type: ignore[assignment]
            removals.notification_ids.extend(
                nid.decode() for nid, raw in held.items() if ns_of(e.Notification.FromString(raw).create_time) <= floor
            )
        return removals

    async def _evict(self, keys: AccountKeys, removals: sync_pb2.Removals, horizons: dict[str, int]) -> int:
        entities = {
            "messages": list(removals.message_ids),
            "comments": list(removals.comment_ids),
            "contents": list(removals.content_ids),
            "conversations": list(removals.conversation_ids),
            "notifications": list(removals.notification_ids),
        }
        items = (
            [message_key(m) for m in removals.message_ids]
            + [comment_key(c) for c in removals.comment_ids]
            + [notification_key(n) for n in removals.notification_ids]
        )

        async def attempt() -> bool | None:
            writes = Writes()
            loaded = await self._load(keys, writes, entities=entities, items=items, pinned=entities["conversations"])
            if loaded is None:
                return True
            rev, state = loaded
            state.evict(removals)
            record_counters(state, keys, writes)
            for kind, at_ns in horizons.items():
                if at_ns > state.handling.horizons.get(kind, 0):
                    writes.hash(keys.meta)[f"horizon:{kind}"] = str(at_ns)
            return True if await self._commit_writes(keys, rev, writes) else None

        await self._change(keys.account_id, attempt)
        return removal_count(removals)

    async def _evict_oldest_read(self, account_ids: Sequence[str], wanted: int) -> int:
        """The `wanted` oldest read (or own) messages and comments across accounts go."""
        candidates: list[tuple[int, str, str, str]] = []
        for account_id in account_ids:
            keys = self.keys(account_id)
            for kind in ("messages", "comments"):
                candidates += await self._oldest_read(keys, kind, wanted)
        candidates.sort()
        chosen: dict[str, tuple[sync_pb2.Removals, dict[str, int]]] = {}
        for at_ns, account_id, kind, entity_id in candidates[:wanted]:
            removals, horizons = chosen.setdefault(account_id, (sync_pb2.Removals(), {}))
            (removals.message_ids if kind == "messages" else removals.comment_ids).append(entity_id)
            horizons[kind] = max(horizons.get(kind, 0), at_ns)
        evicted = 0
        for account_id, (removals, horizons) in chosen.items():
            evicted += await self._evict(self.keys(account_id), removals, horizons)
        return evicted

    async def _oldest_read(self, keys: AccountKeys, kind: str, wanted: int) -> list[tuple[int, str, str, str]]:
        found: list[tuple[int, str, str, str]] = []
        end = "+"
        while len(found) < wanted:
            members = _strings(await self.redis.zrevrangebylex(keys.orders[kind], end, "-", 0, 500))
            if not members:
                break
            ids = [id_of(m, 1) for m in members]
            state = await self._items_state(keys, None, **{kind: ids})
            assert state is not None
            for member, entity_id in zip(members, ids, strict=True):
                at_ns = -int(key_of(member, (int, Newest))[0])
                if kind == "messages":
                    message = state.messages.get(entity_id)
                    if message is not None and (
                        message_key(entity_id) in state.handling.read_at or not state.is_inbound(message)
                    ):
                        found.append((at_ns, keys.account_id, kind, entity_id))
                else:
                    comment = state.comments.get(entity_id)
                    if comment is not None and (
                        comment_key(entity_id) in state.handling.read_at or state.is_own(comment)
                    ):
                        found.append((at_ns, keys.account_id, kind, entity_id))
            end = "(" + members[-1]
        return found[:wanted]

    # ------------------------------------------------------------------ admin

    @_redis_errors
    async def flush_outboxes(self) -> int:
        """Moves to the stream the events a master queued but could not move (it died
        between its commit and the move); returns how many accounts had some."""
        account_ids = await self.account_ids()
        pipe = self.redis.pipeline(transaction=False)
        for account_id in account_ids:
            pipe.llen(self.keys(account_id).outbox)
        waiting = [a for a, queued in zip(account_ids, await pipe.execute(), strict=True) if queued]
        for account_id in waiting:
            await self.flush_outbox(self.keys(account_id))
        return len(waiting)

    @_redis_errors
    async def show_orphans_offline(self) -> int:
        """Shows offline the accounts whose worker is shown online but whose lease no master
        holds any more (its master died and could not say so); returns how many."""
        orphans = await self._orphaned_presence()

        def offline(presence: Presence) -> bool:
            if not presence.online:
                return False
            presence.online = False
            return True

        for account_id, _ in orphans:
            # Checked again in the change: a worker claiming it meanwhile keeps it online.
            await self._presence_change(account_id, offline, unless_leased=True)
        return len(orphans)

    async def _orphaned_presence(self) -> list[tuple[str, str]]:
        account_ids = await self.account_ids()
        pipe = self.redis.pipeline(transaction=False)
        for account_id in account_ids:
            pipe.hmget(self.keys(account_id).meta, ["online", "worker_id"])
            pipe.exists(self.keys(account_id).lease)
        results = await pipe.execute()
        return [
            (account_id, _text(worker or b""))
            for account_id, (online, worker), leased in zip(account_ids, results[::2], results[1::2], strict=True)
            if online == b"1" and not leased
        ]

    async def account_ids(self) -> list[str]:
        return _strings(await self.redis.zrange(self.accounts_key, 0, -1))


def _split(item: str) -> tuple[str, str]:
    return split_item_key(item, field="id")


def _constant(items: list[str]) -> Callable[[], Awaitable[list[str]]]:
    async def find() -> list[str]:
        return items

    return find


def index_account(meta_key: str) -> str:
    """The account id in an account's meta key."""
    return meta_key[meta_key.index("{") + 1 : meta_key.rindex("}")]
