"""The Redis store's connection, keys, commits and loading, which its parts share
(store.py says how the whole works)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, ParamSpec, Self, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from imsync.journal.v1 import journal_pb2 as jpb
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from services.common.logs import Throttle
from services.master.model import threads
from services.master.model.account_base import Handling, Presence
from services.master.model.account_state import AccountState
from services.master.model.account_views import arrival_event, own_event
from services.master.model.errors import FailedPrecondition, Unavailable
from services.master.model.keys import split_item_key
from services.master.model.retention import Retention
from services.master.redis.connect import Client, client_for
from services.master.redis.errors import out_of_reach
from services.master.redis.lane import Lane
from services.master.redis.layout import COMMIT, FLUSH, FLUSH_ADD, FLUSH_TRIM, LOAD, PAGE, AccountKeys, Writes
from services.master.redis.recording import recording_state
from services.master.redis.replication import Replication

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
        self.presence = Presence(
            worker_id=get("worker_id").decode(),
            online=get("online") == b"1",
            paused=get("paused") == b"1",
            display_name=get("display_name").decode(),
            platform=e.Platform.ValueType(int(get("platform", b"0"))),
        )
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


# Redis out of reach becomes UNAVAILABLE (errors.py).
_redis_errors = out_of_reach


class RedisBase:
    """The Redis store's connection, keys, commits and loading, which its parts share."""

    def __init__(
        self,
        client: Client,
        *,
        prefix: str = "imsync",
        retention: Retention | None = None,
        events_kept: int = 100_000,
        clock: Callable[[], int] = time.time_ns,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
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
        # On a Redis Cluster, the outbox and the stream are in different slots (layout.py).
        self.cluster = isinstance(client, AsyncRedisCluster)
        self._flush_add = client.register_script(FLUSH_ADD)
        self._flush_trim = client.register_script(FLUSH_TRIM)
        self._page = client.register_script(PAGE)
        self._load_script = client.register_script(LOAD)
        # One node's hot scripts (a change's load and commit, a page) on a connection of their
        # own (lane.py); a cluster routes them by slot itself.
        self.lane = Lane(client) if isinstance(client, aioredis.Redis) else None
        self._flushed_key = f"{prefix}:flushed{{{self.events_key}}}"
        self._over_bound = Throttle(60)
        # With replicas to wait for, what persisted() waits for (replication.py).
        self.replication = Replication(client, f"{prefix}:wait", wait_replicas, wait_timeout) if wait_replicas else None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """On one Redis node or a Redis Cluster, as the URL says (connect.py)."""
        return cls(client_for(url), **kwargs)

    async def close(self) -> None:
        if self.replication is not None:
            await self.replication.close()
        if self.lane is not None:
            await self.lane.close()
        await self.redis.aclose()

    def keys(self, account_id: str) -> AccountKeys:
        return AccountKeys(self.prefix, account_id)

    def persisted(self) -> Awaitable[object] | None:
        # Every change is committed before its call returns; how durable that is, is Redis's
        # persistence setting (check_persistence), and with --redis-wait-replicas, its
        # replicas having it too (replication.py).
        return self.replication.barrier() if self.replication is not None else None

    def wrote(self) -> None:
        """Redis answered a write a client is to be told of (persisted() waits for it)."""
        if self.replication is not None:
            self.replication.wrote()

    async def check_persistence(self) -> str:
        """What an acknowledgement means with this Redis's persistence; warns when a crash of
        Redis's machine could lose acknowledged changes."""
        config: Any
        try:
            if self.cluster:
                # Every primary's; the weakest is what an acknowledgement can count on.
                configs: Any = await self.redis.config_get("append*", target_nodes=AsyncRedisCluster.PRIMARIES)
                config = min(configs.values(), key=_strength) if configs else {}
            else:
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
        # On one node the script moves the change's events to the stream itself (COMMIT).
        stream = keys.outbox if self.cluster else self.events_key
        key_list, ops = writes.encode([keys.meta, keys.lease, keys.outbox, stream])
        flush = "" if self.cluster else str(_FLUSH_BATCH)
        fenced = str(fence) if fence else ""
        result, *moved = await self._run(self._commit, key_list, [rev, fenced, flush, self._events_kept, *ops])
        if int(result) == -1:
            return False
        if int(result) == -2:
            raise FailedPrecondition(
                f"account {keys.account_id!r} is no longer held by this stream's lease; say hello again",
                field="account_id",
                reason="NOT_OWNER",
            )
        self.wrote()
        if writes.pushes.get(keys.outbox) and (self.cluster or int(moved[0]) == _FLUSH_BATCH):
            await self.flush_outbox(keys)
        return True

    def _run(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
        """One of the hot scripts: on the lane on one node (lane.py), else as redis-py runs it."""
        if self.lane is not None:
            return self.lane.run(script, keys, args)
        return script(keys=keys, args=args)

    async def flush_outbox(self, keys: AccountKeys) -> None:
        """Moves the account's queued events to the shared stream, a hundred at a time, each
        hundred in one step (FLUSH): none lost by a crash between, none added twice by two
        masters flushing at once."""
        moved = _FLUSH_BATCH
        while moved == _FLUSH_BATCH:
            if self.cluster:
                moved = await self._flush_across_slots(keys)
            else:
                moved = await self._flush(keys=[keys.outbox, self.events_key], args=[_FLUSH_BATCH, self._events_kept])

    async def _flush_across_slots(self, keys: AccountKeys) -> int:
        """FLUSH on a Redis Cluster, in three steps (layout.py's FLUSH_ADD): how many events
        were read off the outbox's head."""
        events = await self.redis.lrange(keys.outbox, 0, _FLUSH_BATCH - 1)
        if not events:
            return 0
        flushed = self._flushed_key
        await self._flush_add(keys=[self.events_key, flushed, flushed + ":n"], args=[self._events_kept, *events])
        await self._flush_trim(keys=[keys.outbox], args=[events[0], len(events)])
        return len(events)

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
        for own in state.own_arrivals:
            self._announce(writes, keys, own_event(state, own))
        state.own_arrivals.clear()
        # Threads a customer's message or comment opened again: kept (a snapshot's handling
        # is not a recording one) and announced.
        for thread_key in state.reopened:
            handling = state.handling.threads[thread_key]
            writes.hash(keys.threads)[thread_key] = handling.SerializeToString()
            self._announce(writes, keys, threads.event_of(keys.account_id, thread_key, handling))
        state.reopened.clear()

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
        account does not exist. `pinned`: the thread keys (threads.py) whose handling, and
        pin for a conversation, are loaded."""
        wanted = {name: list(ids) for name, ids in entities.items() if ids}
        item_list = list(items)
        pinned_list = list(pinned)
        # Only a conversation can be pinned: a comment thread's key is not asked about.
        conversation_list = [key for key in pinned_list if threads.root_of(key) is None]
        # (command, key, fields), in the order the answers are read below.
        lookups = [("HMGET", keys.entities[name], ids) for name, ids in wanted.items()]
        if item_list:
            lookups += [("HMGET", keys.read, item_list), ("SMISMEMBER", keys.sets["new"], item_list)]
        if conversation_list:
            lookups.append(("SMISMEMBER", keys.sets["pinned"], conversation_list))
        if pinned_list:
            lookups.append(("HMGET", keys.threads, pinned_list))
        args: list[str | int] = []
        for command, _, fields in lookups:
            args += [command, len(fields), *fields]
        results = await self._run(self._load_script, [keys.meta, *(key for _, key, _ in lookups)], args)
        flat = results[0]
        if not flat:
            return None
        meta = _Meta(dict(zip(flat[::2], flat[1::2], strict=True)))
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
        handlings: dict[str, Any] = {}
        if conversation_list:
            sets["pinned"] = {cid for cid, flag in zip(conversation_list, results[at], strict=True) if flag}
            at += 1
        if pinned_list:
            handlings = _entities(results[at], pinned_list, jpb.ThreadHandling.FromString)
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
            threads=handlings,
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
        pipe.hgetall(keys.threads)
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
            threads={k.decode(): jpb.ThreadHandling.FromString(v) for k, v in rest[10].items()},
        )
        state = AccountState(keys.account_id, meta.version, meta.account, handling)
        state.presence = meta.presence
        state.applied_versions.extend(meta.applied)
        for name, entities in collections.items():
            setattr(state, name, entities)
        return meta.rev, state

    def _register(self, pipe: Any, account_id: str) -> None:
        """Queues the account's id in the list of accounts, in the pipeline that reads what
        its change needs: before its first commit, so that a crash in between leaves an id
        without data, which every list skips, never data without an id."""
        pipe.zadd(self.accounts_key, {account_id: 0}, nx=True)


def _strength(config: Mapping[Any, Any]) -> int:
    """How much of what a node acknowledged its persistence keeps: 0 (snapshots only) to 2."""
    if _text(config.get("appendonly") or b"no") != "yes":
        return 0
    return 2 if _text(config.get("appendfsync") or b"") == "always" else 1


def _split(item: str) -> tuple[str, str]:
    return split_item_key(item, field="id")


def _constant(items: list[str]) -> Callable[[], Awaitable[list[str]]]:
    async def find() -> list[str]:
        return items

    return find


def index_account(meta_key: str) -> str:
    """The account id in an account's meta key."""
    return meta_key[meta_key.index("{") + 1 : meta_key.rindex("}")]
