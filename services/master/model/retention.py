"""How long the master keeps what it was sent, and how much of it.

Two rules, enforced by the master's sweep and journaled like every other change:

- a time to live per collection, counted from the entity's platform time (a message's or
  comment's creation, a work's publication, a conversation's last activity); past it the
  entity is dropped, and a worker's crawl that still lists it does not bring it back;
- a bound on the entities held in all: past it the oldest read messages and comments go
  first (a customer's unread message is never dropped to make room; the master warns
  instead). Counters, statistics and cursors stay right: an evicted item is removed as a
  platform deletion would remove it.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

from imsync.v1 import sync_pb2
from services.master.model import time_keys
from services.master.model.account_state import AccountState
from services.master.model.keys import comment_key, message_key

DAY = 86_400.0

KINDS = ("messages", "comments", "conversations", "contents", "notifications")


@dataclass(frozen=True)
class Retention:
    # Seconds each collection's entities are kept after their platform time; 0 keeps them.
    messages: float = 180 * DAY
    comments: float = 180 * DAY
    conversations: float = 180 * DAY
    contents: float = 365 * DAY
    notifications: float = 30 * DAY
    # Entities held in all; past it the oldest read messages and comments go. 0: no bound.
    max_entities: int = 2_000_000

    def horizons(self, now_ns: int) -> dict[str, int]:
        """Per collection, the platform time at or before which an entity has expired (0: never)."""
        return {kind: now_ns - int(ttl * 1e9) if (ttl := getattr(self, kind)) > 0 else 0 for kind in KINDS}

    @property
    def keeps_everything(self) -> bool:
        return self.max_entities == 0 and all(getattr(self, kind) == 0 for kind in KINDS)


KEEP_EVERYTHING = Retention(0, 0, 0, 0, 0, 0)

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}


def parse_retention(text: str, base: Retention = Retention()) -> Retention:
    """Reads "messages=90d,comments=90d,max_entities=500000" (units s, m, h, d; 0 keeps
    for good) over `base`; "none" keeps everything."""
    text = text.strip()
    if text in ("", "default"):
        return base
    if text == "none":
        return KEEP_EVERYTHING
    values: dict[str, float | int] = {}
    names = {f.name for f in fields(Retention)}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in names:
            raise ValueError(f"{part!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(names))}")
        if name == "max_entities":
            if not value.isdigit():
                raise ValueError(f"{part!r}: max_entities is a count")
            values[name] = int(value)
            continue
        found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", value)
        if found is None:
            raise ValueError(f"{part!r}: expected a duration such as 90d, 12h or 0")
        values[name] = float(found.group(1)) * _UNITS[found.group(2) or "s"]
    merged = {f.name: getattr(base, f.name) for f in fields(Retention)} | values
    return Retention(**merged)


def removal_count(removals: sync_pb2.Removals) -> int:
    return (
        len(removals.message_ids)
        + len(removals.comment_ids)
        + len(removals.content_ids)
        + len(removals.conversation_ids)
        + len(removals.notification_ids)
    )


def oldest_read(states: Iterable[AccountState], wanted: int) -> dict[str, tuple[sync_pb2.Removals, dict[str, int]]]:
    """The `wanted` oldest read (or own) messages and comments across accounts, per account
    as removals and the newest platform time evicted per collection."""

    def read_messages(state: AccountState) -> Iterator[tuple[int, str, str, str]]:
        for key in reversed(state.message_order):
            message_id = time_keys.item_of(key)
            if message_key(message_id) in state.handling.read_at or not state.is_inbound(state.messages[message_id]):
                yield time_keys.ns_of_key(key), state.account_id, "messages", message_id

    def read_comments(state: AccountState) -> Iterator[tuple[int, str, str, str]]:
        for key in reversed(state.comment_order):
            comment_id = time_keys.item_of(key)
            if comment_key(comment_id) in state.handling.read_at or state.is_own(state.comments[comment_id]):
                yield time_keys.ns_of_key(key), state.account_id, "comments", comment_id

    streams = [gen(state) for state in states for gen in (read_messages, read_comments)]
    chosen: dict[str, tuple[sync_pb2.Removals, dict[str, int]]] = {}
    for at_ns, account_id, kind, entity_id in itertools.islice(heapq.merge(*streams), wanted):
        removals, horizons = chosen.setdefault(account_id, (sync_pb2.Removals(), {}))
        (removals.message_ids if kind == "messages" else removals.comment_ids).append(entity_id)
        horizons[kind] = max(horizons.get(kind, 0), at_ns)
    return chosen
