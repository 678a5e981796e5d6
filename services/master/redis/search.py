"""The Redis store's search index (model/search.py), in the account's hash slot:

    <p>:{a}:x:<kind>:<bigram>   sorted set, every score 0: the members (layout.member_of)
                                of the items holding that pair of characters, newest first
    <p>:{a}:x:terms             set: the names of those sorted sets (so that a snapshot,
                                which rewrites the account, can delete them all)

Kept with every change to the account, in its commit: the recording state's index records
ZADD and ZREM (RecordingSearch); a snapshot writes it whole. A query reads the rarest
pair's set from the cursor in chunks, each chunk's items with one HMGET, until a page is
full or the scan bound is reached, exactly as the memory store pages.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from imsync.v1 import entities_pb2 as e
from services.master.model import search
from services.master.model.account_state import AccountState
from services.master.model.cursor import Newest
from services.master.model.time_keys import item_of, of_time
from services.master.redis.layout import AccountKeys, Writes, key_of, member_of

_CHUNK = 64
_ENTITIES = {"m": "messages", "c": "comments", "w": "contents"}
_PARSE = {"m": e.Message.FromString, "c": e.Comment.FromString, "w": e.Content.FromString}


def index_key(keys: AccountKeys, kind: str, term: str) -> str:
    return f"{keys.search_prefix}{kind}:{term}"


class RecordingSearch:
    """Stands for a SearchIndex in a recording state: records what is added and removed."""

    def __init__(self, writes: Writes, keys: AccountKeys) -> None:
        self._writes, self._keys = writes, keys

    def add(self, kind: str, entity: Any) -> None:
        self._write(kind, entity, True)

    def discard(self, kind: str, entity: Any) -> None:
        self._write(kind, entity, False)

    def _write(self, kind: str, entity: Any, present: bool) -> None:
        member = member_of(search.key_of(kind, entity))
        terms = self._writes.set(self._keys.search_terms)
        for term in search.terms_of(kind, entity):
            name = index_key(self._keys, kind, term)
            self._writes.zset(name)[member] = present
            if present:
                terms[name] = True


def write_whole_index(writes: Writes, keys: AccountKeys, old_terms: Collection[str], state: AccountState) -> None:
    """The index of `state`, in place of the one named by `old_terms` (a snapshot)."""
    writes.deleted += [*old_terms, keys.search_terms]
    recording = RecordingSearch(writes, keys)
    for kind, name in _ENTITIES.items():
        for entity in getattr(state, name).values():
            recording.add(kind, entity)


def key_from_member(member: str) -> bytes:
    """The packed time key (time_keys.py) a member of an index stands for."""
    neg_ns, newest = key_of(member, (int, Newest))
    assert isinstance(neg_ns, int) and isinstance(newest, Newest)
    seconds, nanos = divmod(-neg_ns, 1_000_000_000)
    return of_time(seconds, nanos, str(newest))


class Candidates:
    """One kind's candidates, newest first from a cursor, read from Redis a chunk at a time
    with their entities."""

    def __init__(self, redis: Any, keys: AccountKeys, kind: str, source: str, after: bytes) -> None:
        self.redis, self.keys, self.kind, self.source = redis, keys, kind, source
        self.start = f"({member_of(after)}" if after else "-"
        self.keys_read: list[bytes] = []
        self.entities: dict[bytes, Any] = {}
        self.done = False
        self.at = 0

    async def peek(self) -> bytes | None:
        if self.at == len(self.keys_read) and not self.done:
            members = await self.redis.zrange(self.source, self.start, "+", bylex=True, offset=0, num=_CHUNK)
            self.done = len(members) < _CHUNK
            if members:
                decoded = [m.decode() if isinstance(m, bytes) else m for m in members]
                self.start = f"({decoded[-1]}"
                chunk = [key_from_member(m) for m in decoded]
                raw = await self.redis.hmget(self.keys.entities[_ENTITIES[self.kind]], [item_of(k) for k in chunk])
                parse = _PARSE[self.kind]
                for key, body in zip(chunk, raw, strict=True):
                    self.entities[key] = parse(body) if body is not None else None
                self.keys_read += chunk
        return self.keys_read[self.at] if self.at < len(self.keys_read) else None


async def candidates_of(redis: Any, keys: AccountKeys, kind: str, wanted: str, after: bytes) -> Candidates | None:
    """The stream of the rarest pair of `wanted`'s characters; None when one is in nothing."""
    names = [index_key(keys, kind, term) for term in sorted(search.bigrams_of(wanted))]
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.zcard(name)
    sizes = await pipe.execute()
    if not all(sizes):
        return None
    rarest = min(zip(sizes, names, strict=True))[1]
    return Candidates(redis, keys, kind, rarest, after)


async def page(streams: list[Candidates], wanted: str, count: int) -> tuple[list[search.Hit], bytes]:
    """model/search.page over streams read from Redis: the same hits, the same cursor."""
    hits: list[search.Hit] = []
    last = b""
    scanned = 0
    while True:
        heads = [(key, stream) for stream in streams if (key := await stream.peek()) is not None]
        if not heads:
            return hits, b""
        if len(hits) == count or scanned == search.SCAN:
            return hits, last
        key, stream = min(heads, key=lambda head: head[0])
        stream.at += 1
        scanned += 1
        last = key
        entity = stream.entities.get(key)
        found = search.match(stream.kind, entity, wanted) if entity is not None else None
        if found is not None:
            hits.append(search.Hit(key, stream.kind, entity, *found))
