"""The memory store's state and its changes: accounts and the master's own state of each,
generations, the journal's records, snapshots and deltas applied, retention, status and
presence, and the events they make. store.py (the IM reads and marks) builds on it; that
module says how the whole works."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from sortedcontainers import SortedList

from imsync.journal.v1 import journal_pb2 as jpb
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import sync_pb2
from services.common.logs import Throttle
from services.master.memory import checkpoints
from services.master.memory.journal import Journal
from services.master.memory.records import encode_delta, encode_snapshot
from services.master.memory.recovery import Checkpoint
from services.master.model import collector, fleet, threads, time_keys, transitions
from services.master.model import cursor as cursors
from services.master.model import store as model_store
from services.master.model.account_base import Handling, Presence
from services.master.model.account_state import AccountState
from services.master.model.account_views import arrival_event, own_event
from services.master.model.coherence import Coherence
from services.master.model.errors import InvalidArgument, NotFound
from services.master.model.retention import Retention, oldest_read, removal_count
from services.master.model.store import DeltaData, Page, SnapshotData, page_size

T = TypeVar("T")
Key = tuple[int | str, ...]
# A page's items made of an order's keys, at most so many, ending before a key `stop`
# takes: the items, the key of the last, whether more follow (as _collect's).
Collect = Callable[[Iterable[Any], int, Callable[[Any], bool] | None], tuple[list[T], Any, bool]]

log = logging.getLogger(__name__)

# Where a journaled snapshot's entities are in its record's bytes: their field numbers.
_SNAPSHOT_ENTITIES = (
    jpb.Record.DESCRIPTOR.fields_by_name["snapshot"].number,
    sync_pb2.Snapshot.DESCRIPTOR.fields_by_name["entities"].number,
)


def _page(
    order: SortedList,
    index: str,
    shape: Sequence[type],
    cursor: str,
    count: int,
    view: Callable[[Any], T | None] | None,
    stop: Callable[[Any], bool] | None = None,
    *,
    packed: bool = False,
    collect: Collect[T] | None = None,
) -> Page[T]:
    """Walks `order` after the cursor's key, keeping the keys `view` turns into items.
    `packed`: the order's keys are time_keys, and cursors carry them as (-ns, id).
    `collect`: what makes the page of the keys instead of _collect and `view` (a loop of
    its own, for a page that takes every key)."""
    after: Any = cursors.decode(cursor, index, shape)
    if after is not None and packed:
        after = time_keys.from_cursor(after)
    start = 0 if after is None else order.bisect_right(after)
    if collect is not None:
        # It takes every key until the page is full, and one more tells whether more follow.
        limit = page_size(count)
        items, last, has_more = collect(order[start : start + limit + 1], limit, stop)
    else:
        assert view is not None
        items, last, has_more = _collect(order.islice(start), view, page_size(count), stop)
    if last is not None and packed:
        last = time_keys.to_cursor(last)
    return Page(items, cursors.encode(index, last) if last is not None else "", has_more)


def _collect(
    keys: Iterable[Any],
    view: Callable[[Any], T | None],
    limit: int,
    stop: Callable[[Any], bool] | None = None,
) -> tuple[list[T], Any, bool]:
    """The first `limit` items `view` makes of `keys`, the key of the last (None for none),
    and whether more follow; or, once `SCAN` keys were looked at and another follows, what
    they made, the last key looked at, and True."""
    items: list[T] = []
    last: Any = None
    seen: Any = None
    looked, bound = 0, model_store.SCAN
    for key in keys:
        if stop is not None and stop(key):
            break
        if looked == bound:
            return items, seen, True
        looked += 1
        seen = key
        item = view(key)
        if item is None:
            continue
        if len(items) == limit:
            return items, last, True
        items.append(item)
        last = key
    return items, last, False


def _set_flag(flags: set[str], conversation_id: str, on: bool) -> None:
    if on:
        flags.add(conversation_id)
    else:
        flags.discard(conversation_id)


class Changes:
    """The memory store's accounts and what changes them."""

    def __init__(
        self,
        on_event: Callable[[ev.Event], None] | None = None,
        *,
        retention: Retention | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        # Hears of new messages and comments, read marks and account status changes.
        self.on_event = on_event
        # None keeps everything for good.
        self.retention = retention if retention is not None and not retention.keeps_everything else None
        self._clock = clock
        self._over_bound = Throttle(60)
        self._accounts: dict[str, AccountState] = {}
        self._handling: dict[str, Handling] = {}
        self._account_order: SortedList = SortedList()
        # The team's quick replies, by id (templates.py).
        self._templates: dict[str, e.Template] = {}
        # The managed accounts, and their sealed sessions, by account id (fleet.py).
        self._fleet: dict[str, fl.ManagedAccount] = {}
        self._sessions: dict[str, bytes] = {}
        # Set by the master when it runs with a data directory: every change is journaled.
        self.journal: Journal | None = None
        # Advanced with every change, before anyone hears of it: per account, and in all
        # (the stamps of the gateway's response cache).
        self._generations: Counter[str] = Counter()
        self._generation = 0
        # Set by the master while gateways in other processes keep answers: every change is
        # announced to them before it is acknowledged (coherence.py).
        self.coherence: Coherence | None = None

    def stamp(self, account_id: str = "") -> int:
        """The generation of an account's state ("" for the whole store's): it moves with
        every change, synchronously."""
        return self._generations[account_id] if account_id else self._generation

    def _changed(self, account_id: str) -> None:
        self._generations[account_id] += 1
        self._generation += 1
        if self.coherence is not None:
            self.coherence.changed(account_id)

    # ------------------------------------------------------------ journal

    def persisted(self) -> Awaitable[object] | None:
        """Done once every change so far is on disk (the journal) and known to every gateway
        keeping answers (coherence); None when both are already."""
        on_disk = self.journal.persisted() if self.journal is not None else None
        announced = self.coherence.announced() if self.coherence is not None else None
        if on_disk is None or announced is None:
            return on_disk or announced
        return asyncio.gather(on_disk, announced)

    def _log(self, account_id: str, record: jpb.Record) -> None:
        if self.journal is not None:
            self.journal.append(account_id, record.SerializeToString)

    def _log_reads(self, state: AccountState, items: list[str], now_ns: int, seen_content_id: str = "") -> None:
        if items or seen_content_id:
            self._changed(state.account_id)
        if self.journal is not None and (items or seen_content_id):
            marks = jpb.ReadMarks(account_id=state.account_id, item_ids=items, seen_content_id=seen_content_id)
            marks.read_at.FromNanoseconds(now_ns)
            self._log(state.account_id, jpb.Record(read_marks=marks))

    def replay(self, record: jpb.Record, body: bytes | None = None) -> None:
        """Applies a journaled change (parsed from `body`, when at hand) again, as it was
        applied the first time."""
        kind = record.WhichOneof("change")
        if kind == "snapshot":
            snap = record.snapshot
            wires = None if body is None else [(body, _SNAPSHOT_ENTITIES)]
            self._apply_snapshot(
                SnapshotData(
                    snap.account_id, snap.version, frozenset(snap.collections), snap.account, snap.entities, wires=wires
                )
            )
        elif kind == "delta":
            delta = record.delta
            account = delta.account if delta.HasField("account") else None
            self._apply_delta(
                DeltaData(delta.account_id, delta.base_version, delta.version, account, delta.upserts, delta.removals)
            )
        elif kind == "read_marks":
            marks = record.read_marks
            state = self._state(marks.account_id)
            now_ns = marks.read_at.ToNanoseconds()
            for item in marks.item_ids:
                state.mark_read(item, now_ns)
            state.handling.new_contents.discard(marks.seen_content_id)
        elif kind == "conversation_flags":
            flags = record.conversation_flags
            state = self._state(flags.account_id)
            if flags.conversation_id not in state.conversations:
                raise NotFound(f"conversation {flags.conversation_id!r} not found")
            if flags.HasField("pinned"):
                state.set_pinned(flags.conversation_id, flags.pinned)
            if flags.HasField("muted"):
                _set_flag(state.handling.muted, flags.conversation_id, flags.muted)
        elif kind == "thread":
            thread = record.thread
            state = self._state(thread.account_id)
            # A comment thread is handled through any of its comments: its top-level one
            # may not be held.
            root = thread.comment_id
            if root and root not in state.comments and root not in state.replies_by_parent:
                raise NotFound(f"comment {root!r} not found")
            if not thread.comment_id and thread.conversation_id not in state.conversations:
                raise NotFound(f"conversation {thread.conversation_id!r} not found")
            state.handling.threads[threads.key_of(thread)] = thread.handling
        elif kind == "eviction":
            eviction = record.eviction
            horizons = {}
            if eviction.HasField("messages_horizon"):
                horizons["messages"] = eviction.messages_horizon.ToNanoseconds()
            if eviction.HasField("comments_horizon"):
                horizons["comments"] = eviction.comments_horizon.ToNanoseconds()
            self._evict(self._state(eviction.account_id), eviction.removals, horizons)
        else:
            raise InvalidArgument(f"unknown journal record {kind!r}", field="change")

    def handling(self, account_id: str) -> Handling:
        """The master's own state of an account (read marks, pins, mutes, retention's
        horizons): kept apart from what syncs replace."""
        return self._state(account_id).handling

    def has_account(self, account_id: str) -> bool:
        return account_id in self._accounts

    async def known_accounts(self, account_ids: Iterable[str]) -> set[str]:
        return {account_id for account_id in account_ids if account_id in self._accounts}

    async def account_count(self) -> int:
        return len(self._accounts)

    def reset_version(self, account_id: str) -> int:
        """Forgets which versions of the account were applied (admin.py); returns the
        version it had. Everything else the account holds stays."""
        state = self._accounts.get(account_id)
        if state is None:
            raise NotFound(f"account {account_id!r} not found")
        before = state.version
        state.version = 0
        state.applied_versions.clear()
        self._changed(account_id)
        return before

    def holds_anything(self, account_id: str) -> bool:
        """Whether the account has a version or state of the master's own (read marks, pins):
        one only ever named by a worker has nothing to remember."""
        state = self._accounts.get(account_id)
        if state is None:
            return False
        handling = state.handling
        return bool(
            state.version
            or handling.read_at
            or handling.pinned
            or handling.muted
            or handling.horizons
            or handling.threads
        )

    def account_ids(self) -> list[str]:
        return [str(key[0]) for key in self._account_order]

    async def entity_count(self) -> int:
        return self.count_entities()

    def count_entities(self) -> int:
        return sum(state.entity_count() for state in self._accounts.values())

    def capture(self, account_id: str) -> Callable[[], list[bytes]]:
        """The account's state now, as a function that encodes it into a checkpoint."""
        return checkpoints.capture(self._accounts[account_id])

    def restore(self, checkpoint: Checkpoint) -> None:
        """Puts back an account as a checkpoint holds it."""
        with collector.bulk():
            state = checkpoints.state_of(checkpoint)
        self._changed(state.account_id)
        if state.account_id not in self._accounts:
            self._account_order.add((state.account_id,))
        self._handling[state.account_id] = state.handling
        self._accounts[state.account_id] = state

    # ------------------------------------------------------------------ sync

    async def account_versions(self, account_ids: Iterable[str]) -> dict[str, int]:
        return {
            account_id: (state.version if (state := self._accounts.get(account_id)) else 0)
            for account_id in account_ids
        }

    async def apply_snapshot(self, snapshot: SnapshotData) -> bool:
        return self._apply_snapshot(snapshot)

    async def apply_delta(self, delta: DeltaData) -> bool:
        return self._apply_delta(delta)

    def _apply_snapshot(self, snapshot: SnapshotData) -> bool:
        current = self._accounts.get(snapshot.account_id)
        if not transitions.snapshot_is_new(current, snapshot):
            return False  # delivered again
        handling = self._handling.setdefault(snapshot.account_id, Handling())
        with collector.bulk():
            state = transitions.after_snapshot(current, handling, snapshot, self._floors(current))
        if current is None:
            fleet.mirror(state.presence, self._fleet.get(snapshot.account_id))
        self._announce_arrivals(state)
        self._accounts[snapshot.account_id] = state
        self._changed(snapshot.account_id)
        if current is None:
            self._account_order.add((snapshot.account_id,))
        if self.journal is not None:
            self.journal.append(
                snapshot.account_id,
                lambda: encode_snapshot(
                    snapshot.account_id, snapshot.version, snapshot.collections, snapshot.account, snapshot.batches
                ),
            )
        return True

    def _apply_delta(self, delta: DeltaData) -> bool:
        state = self._accounts.get(delta.account_id)
        if not transitions.delta_is_new(state, delta):
            return False  # delivered again
        assert state is not None
        transitions.apply_delta(state, delta, self._floors(state))
        self._changed(delta.account_id)
        self._announce_arrivals(state)
        if self.journal is not None:
            head = sync_pb2.Delta(account_id=delta.account_id, base_version=delta.base_version, version=delta.version)
            if delta.account is not None:
                head.account.CopyFrom(delta.account)
            self.journal.append(delta.account_id, lambda: encode_delta(head, delta.upserts, delta.removals))
        return True

    # ------------------------------------------------------------ retention

    def _floors(self, state: AccountState | None) -> dict[str, int] | None:
        if self.retention is None:
            return None
        horizons = self.retention.horizons(self._clock())
        return state.floors(horizons) if state is not None else horizons

    async def enforce_retention(self, *, budget: int = 100_000) -> int:
        return self._enforce_retention(budget)

    def _enforce_retention(self, budget: int) -> int:
        """Drops what outlived its time to live, then the oldest read messages and comments
        while the store is over its bound; at most `budget` entities a call. Returns how many."""
        if self.retention is None:
            return 0
        horizons = self.retention.horizons(self._clock())
        evicted = 0
        for state in list(self._accounts.values()):
            removals = state.expired(horizons)
            count = removal_count(removals)
            if count:
                self._evict(state, removals, {})
                evicted += count
        bound = self.retention.max_entities
        if bound and (excess := self.count_entities() - bound) > 0:
            # Down to 95% of the bound, so that eviction does not run at every new message.
            wanted = min(budget, excess + bound // 20)
            evicted += self._evict_oldest_read(wanted)
            left = self.count_entities() - bound
            if left > 0 and self._over_bound.due():
                log.warning("%d entities over the bound of %d: the rest are unread and are kept", left, bound)
        return evicted

    def _evict_oldest_read(self, wanted: int) -> int:
        chosen = oldest_read(self._accounts.values(), wanted)
        for account_id, (removals, horizons) in chosen.items():
            self._evict(self._accounts[account_id], removals, horizons)
        return sum(removal_count(removals) for removals, _ in chosen.values())

    def _evict(self, state: AccountState, removals: sync_pb2.Removals, horizons: dict[str, int]) -> None:
        state.evict(removals)
        self._changed(state.account_id)
        for kind, at_ns in horizons.items():
            state.handling.horizons[kind] = max(state.handling.horizons.get(kind, 0), at_ns)
        if self.journal is not None:
            eviction = jpb.Eviction(account_id=state.account_id, removals=removals)
            if "messages" in horizons:
                eviction.messages_horizon.FromNanoseconds(state.handling.horizons["messages"])
            if "comments" in horizons:
                eviction.comments_horizon.FromNanoseconds(state.handling.horizons["comments"])
            self._log(state.account_id, jpb.Record(eviction=eviction))

    # --------------------------------------------------------------- events

    def _emit(self, event: ev.Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _announce_arrivals(self, state: AccountState) -> None:
        for entity in state.arrivals:
            self._emit(arrival_event(state, entity))
        state.arrivals.clear()
        for own in state.own_arrivals:
            self._emit(own_event(state, own))
        state.own_arrivals.clear()
        # Threads a customer's message or comment opened again (the journal's snapshot or
        # delta opens them again on replay: no record of their own).
        for thread_key in state.reopened:
            self._emit(threads.event_of(state.account_id, thread_key, state.handling.threads[thread_key]))
        state.reopened.clear()

    def _announce_read(self, state: AccountState, items: list[str]) -> None:
        if items:
            change = ev.ReadStateChange(item_ids=items, is_read=True)
            self._emit(ev.Event(type=ev.EVENT_TYPE_READ_STATE_CHANGED, account_id=state.account_id, read_state=change))

    def _announce_status(self, state: AccountState) -> None:
        self._changed(state.account_id)
        self._emit(
            ev.Event(
                type=ev.EVENT_TYPE_ACCOUNT_STATUS_CHANGED, account_id=state.account_id, account=state.account_view()
            )
        )

    def _state_or_new(self, account_id: str) -> AccountState:
        state = self._accounts.get(account_id)
        if state is None:
            # A worker speaks of an account it could not crawl yet: show it, empty.
            state = AccountState.empty(account_id)
            state.handling = self._handling.setdefault(account_id, Handling())
            fleet.mirror(state.presence, self._fleet.get(account_id))
            self._accounts[account_id] = state
            self._account_order.add((account_id,))
        return state

    async def report_status(self, report: sync_pb2.AccountStatusReport) -> None:
        state = self._state_or_new(report.account_id)
        if state.presence.status != report:
            state.presence.status.CopyFrom(report)
            self._announce_status(state)

    async def set_presence(self, account_id: str, worker_id: str, online: bool) -> None:
        state = self._state_or_new(account_id)
        if (state.presence.worker_id, state.presence.online) != (worker_id, online):
            state.presence.worker_id = worker_id
            state.presence.online = online
            self._announce_status(state)

    async def get_presence(self, account_id: str) -> Presence:
        presence = self._state(account_id).presence
        copy = dataclasses.replace(presence, status=sync_pb2.AccountStatusReport())
        copy.status.CopyFrom(presence.status)
        return copy

    def _mirror_fleet(self, account_id: str) -> None:
        """Shows the account's fleet entry on it (model/fleet.py's mirror), when the master
        has it."""
        state = self._accounts.get(account_id)
        if state is not None and fleet.mirror(state.presence, self._fleet.get(account_id)):
            self._announce_status(state)

    # ------------------------------------------------------------ accounts
    def _state(self, account_id: str) -> AccountState:
        if not account_id:
            raise InvalidArgument("required", field="account_id")
        state = self._accounts.get(account_id)
        if state is None:
            raise NotFound(f"account {account_id!r} not found")
        return state
