"""The Redis store's changes from sync: snapshots, deltas, status reports and presence,
each computed over what it read and committed in one script."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import sync_pb2
from services.master.model import fleet, threads, transitions
from services.master.model.account_base import Handling, Presence
from services.master.model.account_state import AccountState
from services.master.model.errors import NotFound
from services.master.model.keys import comment_key, message_key, notification_key
from services.master.model.store import DeltaData, SnapshotData
from services.master.redis.base import (
    _APPLIED_HISTORY,
    _PARSERS,
    _Meta,
    _redis_errors,
    _view_state,
)
from services.master.redis.errors import any_failure
from services.master.redis.fetching import Fetching
from services.master.redis.layout import AccountKeys, Writes, inbox_key, member_of
from services.master.redis.recording import record_counters
from services.master.redis.search import write_whole_index


class Changes(Fetching):
    """The Redis store's changes from sync: snapshots, deltas, status reports and presence,"""

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
        self.wrote()
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

    @_redis_errors
    async def apply_snapshot(self, snapshot: SnapshotData) -> bool:
        keys = self.keys(snapshot.account_id)

        async def attempt() -> bool | None:
            loaded = await self._load_full(keys, register=True)
            rev, current = loaded if loaded is not None else ("0", None)
            if not transitions.snapshot_is_new(current, snapshot):
                return False
            terms: Any = await self.redis.smembers(keys.search_terms)
            old_terms = [t.decode() for t in terms]
            handling = current.handling if current is not None else Handling()
            state = transitions.after_snapshot(current, handling, snapshot, self._floors(current))
            writes = Writes()
            self._announce_arrivals(writes, keys, state)
            self._write_whole(writes, keys, current, state)
            write_whole_index(writes, keys, old_terms, state)
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

        # The threads a new message or comment may open again (threads.reopened) have their
        # handling loaded.
        talked_in = (
            entities["conversations"]
            | {m.conversation_id for m in upserts.messages}
            | {threads.thread_of(c) for c in upserts.comments}
        )

        async def attempt() -> bool | None:
            writes = Writes()
            loaded = await self._load(keys, writes, entities=entities, items=items, pinned=talked_in)
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
        self,
        account_id: str,
        change: Callable[[Presence], bool],
        *,
        unless_leased: bool = False,
        only_existing: bool = False,
        mirror: bool = False,
    ) -> None:
        """`mirror`: the fleet entry is mirrored again too (it always is on a new account),
        so that accounts kept before a field was mirrored show it once a worker takes them."""
        keys = self.keys(account_id)

        async def attempt() -> bool | None:
            pipe = self.redis.pipeline(transaction=False)
            self._register(pipe, account_id)
            pipe.hgetall(keys.meta)
            pipe.exists(keys.lease)
            _, raw, leased = await pipe.execute()
            meta = _Meta(raw)
            if (only_existing and not raw) or (unless_leased and leased):
                return True
            mirrored = (mirror or not raw) and fleet.mirror(meta.presence, await self._managed(account_id))
            if not change(meta.presence) and not mirrored:
                return True
            writes = Writes()
            fields = writes.hash(keys.meta)
            presence = meta.presence
            fields.update(
                worker_id=presence.worker_id,
                online="1" if presence.online else "0",
                paused="1" if presence.paused else "0",
                display_name=presence.display_name,
                platform=str(presence.platform),
            )
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
    @any_failure
    async def set_presence(self, account_id: str, worker_id: str, online: bool) -> None:
        def change(presence: Presence) -> bool:
            if (presence.worker_id, presence.online) == (worker_id, online):
                return False
            presence.worker_id, presence.online = worker_id, online
            return True

        await self._presence_change(account_id, change, mirror=True)

    async def _managed(self, account_id: str) -> fl.ManagedAccount | None:
        """The account's fleet entry, if it is the fleet's: fleet.py answers."""
        raise NotImplementedError

    @_redis_errors
    async def get_presence(self, account_id: str) -> Presence:
        keys = self._account_keys(account_id)
        fetched = await self._fetch(keys, None, lambda pipe: None)
        assert fetched is not None
        return fetched[0].presence
