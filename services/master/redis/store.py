"""The Redis store: every account's newest state in Redis, shared by the masters using it.

The layout is in layout.py. A change reads what it touches (one round trip: the LOAD
script), computes itself with the memory store's own code (transitions.py, AccountState)
over recording containers (recording.py), and commits its net writes in one script
that first checks the account's `rev` is still the one read: two masters changing one
account never interleave, the later one computes again. A read takes two pipelined round
trips (the order, then the items) and is repeated when `rev` moved between them, so that a
page never mixes two versions of an account. Events of a change are queued in the
account's outbox by the same script, then moved to the shared stream (events.py's
RedisEventFeed delivers them to every master's subscribers).

What an acknowledgement means depends on Redis's persistence: see the README
("Durability with Redis"). `check_persistence` says it at start.

The store is one class in parts, each a module: base.py (connection, keys, commits,
loading), fetching.py (reading an order and its items), changes.py (sync), queries.py
(IM reads and marks) and here retention and upkeep.
"""

from __future__ import annotations

from collections.abc import Sequence

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.master.model import threads
from services.master.model.account_base import Presence
from services.master.model.cursor import Newest
from services.master.model.keys import comment_key, message_key, notification_key, ns_of
from services.master.model.retention import removal_count
from services.master.redis.base import (
    _redis_errors,
    _strings,
    _text,
    log,
)
from services.master.redis.layout import AccountKeys, Writes, id_of, key_of, number
from services.master.redis.queries import Queries
from services.master.redis.recording import record_counters


class RedisStore(Queries):
    """The Store, in Redis: its parts are base.py (connection, commits, loading), fetching.py,
    changes.py (sync) and queries.py (IM reads and marks); here retention and upkeep."""

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
            if left > 0 and self._over_bound.due():
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
            handled = entities["conversations"] + [threads.comment_thread(c) for c in entities["comments"]]
            loaded = await self._load(keys, writes, entities=entities, items=items, pinned=handled)
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
