"""Full-text search over an account's messages, comments and works, Chinese included.

Chinese is written without spaces, so words cannot be split out; instead every pair of
neighbouring characters (a bigram) of an item's text is indexed, and a query of two
characters or more is looked up by its rarest bigram, each candidate then checked for the
whole query. What an item is found by: a message by its text and its customer's name, a
comment by its text and its author's name, a work by its title and description (any case).

An index holds, per kind ("m" messages, "c" comments, "w" works) and bigram, the items'
time keys (time_keys.py: newest first), so that a query walks them from a cursor and stops
once a page is full. The memory store keeps one per account, built the first time the
account is searched and then kept as changes are applied (AccountState calls `add` and
`discard`); the Redis store keeps the same in sorted sets (redis/search.py).
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sortedcontainers import SortedList

from imsync.v1 import entities_pb2 as e
from services.master.model import time_keys
from services.master.model.errors import InvalidArgument

MIN_QUERY = 2
MAX_QUERY = 100
KINDS = ("m", "c", "w")
# Around the match in a result's snippet, at most this many characters on each side.
CONTEXT = 30
# A postings list this long becomes a SortedList (inserting stays O(log n)); shorter ones
# are plain lists (a few dozen bytes each).
_BIG = 256


def check_query(query: str) -> str:
    """The query as searched (stripped, case-folded); InvalidArgument naming it otherwise."""
    wanted = " ".join(query.split()).casefold()
    if len(wanted) < MIN_QUERY:
        raise InvalidArgument(f"at least {MIN_QUERY} characters", field="query")
    if len(wanted) > MAX_QUERY:
        raise InvalidArgument(f"at most {MAX_QUERY} characters", field="query")
    if not bigrams_of(wanted):
        raise InvalidArgument("needs two characters side by side that are not spaces", field="query")
    return wanted


def bigrams_of(text: str) -> set[str]:
    """Every pair of neighbouring characters of `text` (already case-folded) without a space."""
    return {text[i : i + 2] for i in range(len(text) - 1) if not text[i].isspace() and not text[i + 1].isspace()}


def fields_of(kind: str, entity: Any) -> list[tuple[str, str]]:
    """The (field, text) pairs an item is found by."""
    if kind == "m":
        customer = entity.receiver if entity.direction == e.DIRECTION_OUTBOUND else entity.sender
        return [("content", entity.content), ("customer_name", customer.user_name)]
    if kind == "c":
        return [("content", entity.content), ("customer_name", entity.author.user_name)]
    return [("title", entity.title), ("description", entity.description)]


def key_of(kind: str, entity: Any) -> bytes:
    if kind == "m":
        return time_keys.time_key(entity.create_time, entity.message_id)
    if kind == "c":
        return time_keys.time_key(entity.created_at, entity.comment_id)
    return time_keys.time_key(entity.publish_time, entity.content_id)


def terms_of(kind: str, entity: Any) -> set[str]:
    terms: set[str] = set()
    for _, text in fields_of(kind, entity):
        terms |= bigrams_of(" ".join(text.split()).casefold())
    return terms


def match(kind: str, entity: Any, wanted: str) -> tuple[str, str, str, str] | None:
    """(field, before, matched, after) of the first field holding `wanted`, or None."""
    for field, text in fields_of(kind, entity):
        flat = " ".join(text.split())
        at = flat.casefold().find(wanted)
        if at >= 0:
            end = at + len(wanted)
            before = flat[max(0, at - CONTEXT) : at]
            after = flat[end : end + CONTEXT]
            return (
                field,
                ("…" if at > CONTEXT else "") + before,
                flat[at:end],
                after + ("…" if end + CONTEXT < len(flat) else ""),
            )
    return None


class SearchIndex:
    """An account's postings, in memory.

    Built a slice at a time (`fill`, yielding to the event loop between slices, so that a
    million messages do not stall the master), while the account goes on changing: what
    changes meanwhile waits in `pending` and is applied, in order, once the slices are in.
    """

    def __init__(self) -> None:
        self.postings: dict[str, dict[str, list[bytes] | SortedList]] = {kind: {} for kind in KINDS}
        # Changes made while the index is being built: (present, kind, entity).
        self.pending: list[tuple[bool, str, Any]] | None = None
        self.ready = asyncio.Event()

    async def fill(self, slices: Iterable[list[tuple[str, Any]]]) -> None:
        """Builds the index from slices of (kind, entity) pairs, then applies what changed
        meanwhile. Items may come twice (a slice read after a change): kept once."""
        self.pending = []
        try:
            for items in slices:
                for kind, entity in items:
                    key, postings, terms = self._entry(kind, entity)
                    for term in terms:
                        found = postings.get(term)
                        if found is None:
                            postings[term] = [key]
                        else:
                            found.append(key)
                await asyncio.sleep(0)
            for postings in self.postings.values():
                for term, keys in postings.items():
                    unique = sorted(set(keys))
                    postings[term] = SortedList(unique) if len(unique) >= _BIG else unique
        finally:
            pending, self.pending = self.pending, None
            for present, kind, entity in pending:
                (self.add if present else self.discard)(kind, entity)
            self.ready.set()

    def _entry(self, kind: str, entity: Any) -> tuple[bytes, dict[str, list[bytes] | SortedList], set[str]]:
        """An item's key, its kind's postings, and the pairs it is found by."""
        return key_of(kind, entity), self.postings[kind], terms_of(kind, entity)

    def add(self, kind: str, entity: Any) -> None:
        if self.pending is not None:
            self.pending.append((True, kind, entity))
            return
        key, postings, terms = self._entry(kind, entity)
        for term in terms:
            found = postings.get(term)
            if found is None:
                postings[term] = [key]
            elif isinstance(found, SortedList):
                if key not in found:
                    found.add(key)
            else:
                at = bisect.bisect_left(found, key)
                if at == len(found) or found[at] != key:
                    found.insert(at, key)
                if len(found) >= _BIG:
                    postings[term] = SortedList(found)

    def discard(self, kind: str, entity: Any) -> None:
        if self.pending is not None:
            self.pending.append((False, kind, entity))
            return
        key, postings, terms = self._entry(kind, entity)
        for term in terms:
            found = postings.get(term)
            if found is None:
                continue
            if isinstance(found, SortedList):
                found.discard(key)
            else:
                at = bisect.bisect_left(found, key)
                if at < len(found) and found[at] == key:
                    del found[at]
            if not found:
                del postings[term]

    def candidates(self, kind: str, wanted: str, after: bytes) -> Iterator[bytes]:
        """The keys of the items holding every bigram of `wanted`'s rarest one, newest
        first, after the key `after` (b"" for the first)."""
        postings = self.postings[kind]
        lists = [postings.get(term) for term in sorted(bigrams_of(wanted))]
        if any(found is None for found in lists):
            return iter(())
        rarest = min(lists, key=len)  # type: ignore[arg-type]
        if isinstance(rarest, SortedList):
            return rarest.irange(minimum=after, inclusive=(False, True)) if after else iter(rarest)
        start = bisect.bisect_right(rarest, after) if after else 0  # type: ignore[arg-type]
        return iter(rarest[start:])  # type: ignore[index]


# Candidates a page looks at, at most: a query whose rarest pair of characters is common
# while the whole of it is rare answers a short page (has_more) rather than scanning on.
SCAN = 5_000


@dataclass
class Hit:
    """One item found: its key (its place, newest first), its view, and where it matched."""

    key: bytes
    kind: str
    view: Any
    field: str
    before: str
    matched: str
    after: str


def page(streams: dict[str, Iterator[bytes]], entity_of: Any, wanted: str, count: int) -> tuple[list[Hit], bytes]:
    """The first `count` hits of candidate streams (per kind, each newest first), checked
    against the whole query; and the key to continue after (b"" when nothing follows).
    `entity_of(kind, key)` is the stored item or None (gone meanwhile)."""
    merged = heapq.merge(*(_tagged(kind, keys) for kind, keys in streams.items()))
    hits: list[Hit] = []
    last = b""
    for scanned, (key, kind) in enumerate(merged):
        if len(hits) == count or scanned == SCAN:
            return hits, last
        last = key
        entity = entity_of(kind, key)
        found = match(kind, entity, wanted) if entity is not None else None
        if found is not None:
            hits.append(Hit(key, kind, entity, *found))
    return hits, b""


def _tagged(kind: str, keys: Iterator[bytes]) -> Iterator[tuple[bytes, str]]:
    for key in keys:
        yield key, kind
