"""Where the Redis store keeps things, and how a change is committed there.

Every key of an account carries the hash tag `{<account id>}`, so that an account lives in
one Redis Cluster slot and each change to it is one atomic script:

    <p>:{a}:meta                hash: rev, version, applied versions, profile, presence,
                                unread totals, retention horizons
    <p>:{a}:e:<collection>      hash: entity id -> serialized entity
    <p>:{a}:o:<order>           sorted set, every score 0, ordered by member: an IM order
    <p>:{a}:g:<group>:<id>      sorted set: a conversation's messages, a work's comments,
                                a comment's replies
    <p>:{a}:h:read              hash: inbox item -> when it was marked read (ns)
    <p>:{a}:h:<set>             sets of the master's own state: pinned, muted, new, newc
    <p>:{a}:h:threads           hash: thread key (a conversation's id, or a comment
                                thread's) -> the team's handling of the thread
                                (journal.v1.ThreadHandling, model/threads.py)
    <p>:{a}:x:...               the search index (search.py)
    <p>:{a}:c:<counter>         hash: conversation or work id -> unread or new count
    <p>:{a}:outbox              list: events of committed changes on their way to the stream
    <p>:{a}:lease               hash: the master, worker and stream holding the account
    <p>:{a}:cmd:<request id>    hash: a reply (command) for the account's worker

and beside them, in no account's slot: `<p>:accounts` (the account ids), `<p>:events` (the
event stream every master follows), `<p>:commands` (notices of new replies) and
`<p>:rid:<request id>` (which account a request id belongs to). On a Redis Cluster,
`<p>:flushed{<p>:events}`, in the event stream's slot, holds the digests of the events
added to it lately (FLUSH_ADD).

A member of an order is the memory store's sort key with each integer written as 20 digits
(offset by 2**63) and the id last, so that Redis's byte order is the key's tuple order and
a cursor means the same in either backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.master.model import time_keys
from services.master.model.cursor import Newest, SortKey

_OFFSET = 1 << 63
_WIDTH = 20
# The characters of an integer in a member (the ids follow the integers).
WIDTH = _WIDTH
# Arguments of one command in a commit; Lua's unpack() has a bound near 8,000.
_CHUNK = 1_000

COLLECTIONS = ("contents", "comments", "conversations", "messages", "notifications")
ORDERS = ("conversations", "messages", "contents", "comments", "inbox")
COUNTERS = ("conversation_unread", "content_unread", "content_new")
SETS = ("pinned", "muted", "new", "newc")


def number(value: int) -> str:
    """An integer as 20 digits whose byte order is the integers' order (clamped to 64 bits)."""
    value = min(max(value, -_OFFSET), _OFFSET - 1)
    return f"{value + _OFFSET:0{_WIDTH}d}"


def _newest(text: str) -> str:
    """An id whose byte order is the reverse of its own: each UTF-8 byte complemented, in
    hex, and "~" (after every hex digit) at the end, so that a longer id sharing a prefix
    comes first too."""
    return bytes(255 - b for b in text.encode()).hex() + "~"


def _from_newest(text: str) -> str:
    return bytes(255 - b for b in bytes.fromhex(text[:-1])).decode()


def inbox_key(key: bytes, item: str) -> SortKey:
    """The inbox's sort key of a packed key of the memory store's messages or comments:
    (-ns, Newest("message:<id>")) or (-ns, Newest("comment:<id>"))."""
    neg_ns, entity_id = time_keys.to_cursor(key)
    return (neg_ns, Newest(item + str(entity_id)))


def member_of(key: SortKey | bytes) -> str:
    """The member of a sort key; a packed key of the memory store's orders (time_keys.py)
    is taken as the (-ns, Newest(id)) it orders as."""
    if isinstance(key, bytes):
        neg_ns, item = time_keys.to_cursor(key)
        key = (neg_ns, Newest(item))
    return "".join(
        number(part) if isinstance(part, int) else _newest(part) if isinstance(part, Newest) else part for part in key
    )


def key_of(member: str, shape: Sequence[type]) -> SortKey:
    """The sort key a member encodes: its integers, then the id that makes up the rest."""
    parts: list[int | str] = []
    at = 0
    for kind in shape:
        if kind is int:
            parts.append(int(member[at : at + _WIDTH]) - _OFFSET)
            at += _WIDTH
        elif kind is Newest:
            parts.append(Newest(_from_newest(member[at:])))
        else:
            parts.append(member[at:])
    return tuple(parts)


def id_of(member: str, ints: int, newest: bool = True) -> str:
    """The id a member ends with: in the other order (Newest) in the orders of messages,
    comments and the inbox, as it is in those of conversations and works."""
    rest = member[ints * _WIDTH :]
    return _from_newest(rest) if newest else rest


class AccountKeys:
    def __init__(self, prefix: str, account_id: str) -> None:
        tag = f"{prefix}:{{{account_id}}}"
        self.account_id = account_id
        self.meta = f"{tag}:meta"
        self.lease = f"{tag}:lease"
        self.outbox = f"{tag}:outbox"
        self.read = f"{tag}:h:read"
        self.threads = f"{tag}:h:threads"
        # The search index (search.py): a sorted set per kind and pair of characters.
        self.search_prefix = f"{tag}:x:"
        self.search_terms = f"{tag}:x:terms"
        self.entities = {name: f"{tag}:e:{name}" for name in COLLECTIONS}
        self.orders = {name: f"{tag}:o:{name}" for name in ORDERS}
        self.counters = {name: f"{tag}:c:{name}" for name in COUNTERS}
        self.sets = {name: f"{tag}:h:{name}" for name in SETS}
        self._tag = tag

    def group(self, name: str, group_id: str) -> str:
        return f"{self._tag}:g:{name}:{group_id}"

    def command(self, request_id: str) -> str:
        return f"{self._tag}:cmd:{request_id}"

    @property
    def pending(self) -> str:
        """Sorted set of the account's pending commands, scored by expiry (ms)."""
        return f"{self._tag}:cmdq"


Value = str | bytes


@dataclass
class Writes:
    """The net writes of one change to one account: what each field, member and counter
    ends as, whatever order the change made them in."""

    deleted: list[str] = field(default_factory=list)
    hashes: dict[str, dict[str, Value | None]] = field(default_factory=dict)
    sets: dict[str, dict[str, bool]] = field(default_factory=dict)
    zsets: dict[str, dict[str, bool]] = field(default_factory=dict)
    increments: dict[str, dict[str, int]] = field(default_factory=dict)
    pushes: dict[str, list[bytes]] = field(default_factory=dict)

    def hash(self, key: str) -> dict[str, Value | None]:
        return self.hashes.setdefault(key, {})

    def set(self, key: str) -> dict[str, bool]:
        return self.sets.setdefault(key, {})

    def zset(self, key: str) -> dict[str, bool]:
        return self.zsets.setdefault(key, {})

    def increment(self, key: str, name: str, by: int) -> None:
        if by:
            counters = self.increments.setdefault(key, {})
            counters[name] = counters.get(name, 0) + by

    def push(self, key: str, value: bytes) -> None:
        self.pushes.setdefault(key, []).append(value)

    def encode(self, first_keys: Sequence[str]) -> tuple[list[str], list[Value]]:
        """KEYS and the op part of ARGV for COMMIT: each op is a command, its key's index
        in KEYS, its argument count and the arguments; or ZADDALL / ZREMALL, the index of
        the first of its keys, how many, and the one member added to (score 0) or removed
        from each."""
        keys = list(first_keys)
        where = {key: index + 1 for index, key in enumerate(keys)}
        argv: list[Value] = []

        def op(command: str, key: str, args: Sequence[Value]) -> None:
            if key not in where:
                keys.append(key)
                where[key] = len(keys)
            for start in range(0, max(len(args), 1), _CHUNK):
                chunk = args[start : start + _CHUNK]
                argv.extend((command, str(where[key]), str(len(chunk))))
                argv.extend(chunk)

        for key in self.deleted:
            op("DEL", key, ())
        for key, fields in self.hashes.items():
            gone = [name for name, value in fields.items() if value is None]
            if gone:
                op("HDEL", key, gone)
            pairs: list[Value] = []
            for name, value in fields.items():
                if value is not None:
                    pairs += (name, value)
            if pairs:
                op("HSET", key, pairs)
        for key, members in self.sets.items():
            if gone := [m for m, present in members.items() if not present]:
                op("SREM", key, gone)
            if added := [m for m, present in members.items() if present]:
                op("SADD", key, added)
        # Sorted sets that change by one member (every score is 0), grouped by that member:
        # one op for the group, over consecutive KEYS (a key there may be in KEYS already).
        # The search index changes so: an item added to or removed from the set of each pair
        # of characters it holds.
        fanned: dict[tuple[str, bool], list[str]] = {}
        for key, members in self.zsets.items():
            if len(members) == 1:
                fanned.setdefault(next(iter(members.items())), []).append(key)
                continue
            if gone := [m for m, present in members.items() if not present]:
                op("ZREM", key, gone)
            scored: list[Value] = []
            for m, present in members.items():
                if present:
                    scored += ("0", m)
            if scored:
                op("ZADD", key, scored)
        for (member, present), names in fanned.items():
            argv.extend(("ZADDALL" if present else "ZREMALL", str(len(keys) + 1), str(len(names)), member))
            keys.extend(names)
        for key, counters in self.increments.items():
            for name, by in counters.items():
                op("HINCRBY", key, (name, str(by)))
        for key, values in self.pushes.items():
            op("RPUSH", key, list(values))
        return keys, argv


# KEYS[1] the account's meta, KEYS[2] its lease, KEYS[3] its outbox, KEYS[4] the events
# stream; ARGV[1] the rev the change was computed from, ARGV[2] the lease epoch of the
# writer ("" for a change not made by a worker), ARGV[3] at most how many of the outbox's
# events to move to the stream once the change is made, as FLUSH does ("" for none: on a
# Redis Cluster, where the stream is in another slot and KEYS[4] is the outbox again),
# ARGV[4] about how many events the stream keeps, then the ops. Returns {the new rev, how
# many events it moved}; {-1} when the account changed meanwhile (compute again), {-2}
# when the writer's lease is no longer the account's (it was fenced). One script, one
# round trip and one fsync (appendfsync always) for a change and its events.
COMMIT = """
local rev = redis.call('HGET', KEYS[1], 'rev')
if not rev then rev = '0' end
if rev ~= ARGV[1] then return {-1} end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[2] then return {-2} end
local i = 5
local n = #ARGV
while i <= n do
  local op = ARGV[i]
  local count = tonumber(ARGV[i + 2])
  if op == 'ZADDALL' or op == 'ZREMALL' then
    local first = tonumber(ARGV[i + 1])
    local member = ARGV[i + 3]
    for k = first, first + count - 1 do
      if op == 'ZADDALL' then
        redis.call('ZADD', KEYS[k], 0, member)
      else
        redis.call('ZREM', KEYS[k], member)
      end
    end
    i = i + 4
  else
    local key = KEYS[tonumber(ARGV[i + 1])]
    if count == 0 then
      redis.call(op, key)
    else
      redis.call(op, key, unpack(ARGV, i + 3, i + 2 + count))
    end
    i = i + 3 + count
  end
end
local new_rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
local moved = 0
if ARGV[3] ~= '' then
  local events = redis.call('LPOP', KEYS[3], ARGV[3])
  if events then
    for _, event in ipairs(events) do
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'e', event)
    end
    moved = #events
  end
end
return {new_rev, moved}
"""


# KEYS[1] an account's outbox, KEYS[2] the events stream; ARGV[1] at most how many events,
# ARGV[2] about how many the stream keeps. Moves the oldest queued events to the stream in
# one step, so that no crash (nor a second master flushing the same outbox) can take an
# event off the outbox without adding it, or add it twice. Returns how many it moved.
FLUSH = """
local events = redis.call('LPOP', KEYS[1], ARGV[1])
if not events then return 0 end
for _, event in ipairs(events) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'e', event)
end
return #events
"""


# On a Redis Cluster an account's outbox and the events stream are in different slots, so
# no one script can move events from one to the other. There they move in three steps:
# the flusher reads the outbox's head (LRANGE), adds it to the stream (FLUSH_ADD), then
# takes it off the outbox (FLUSH_TRIM). A crash between the steps, or two masters flushing
# one outbox at once, would add an event twice; FLUSH_ADD skips an event whose digest
# (SHA-1 of its bytes, which hold its creation time in ns) is among those the stream took
# lately. "Lately" is the last events_kept events: as long as the stream keeps.
#
# KEYS[1] the events stream, KEYS[2] the digests (a sorted set in the stream's slot, each
# scored by when it was added), KEYS[3] the count of events added (the scores); ARGV[1]
# about how many the stream keeps, then the events in order. Returns how many it added.
FLUSH_ADD = """
local kept = tonumber(ARGV[1])
local added = 0
for i = 2, #ARGV do
  local digest = redis.sha1hex(ARGV[i])
  if not redis.call('ZSCORE', KEYS[2], digest) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', kept, '*', 'e', ARGV[i])
    local seq = redis.call('INCR', KEYS[3])
    redis.call('ZADD', KEYS[2], seq, digest)
    added = added + 1
  end
end
if added > 0 and redis.call('ZCARD', KEYS[2]) > kept + kept / 10 + 100 then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -kept - 1)
end
return added
"""

# KEYS[1] an account's outbox; ARGV[1] the first event read, ARGV[2] how many were read.
# Takes them off if the outbox still starts with them (nobody else took them meanwhile):
# the outbox is only pushed at its tail and only taken from at its head, so a head that is
# still the first event read is still followed by the rest. Returns how many it took.
FLUSH_TRIM = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
return tonumber(ARGV[2])
"""

# What a change touches, in one round trip (base.py's _load). KEYS[1] the account's meta,
# then one key per lookup; ARGV: each lookup's command (HMGET or SMISMEMBER), how many
# fields follow, and the fields. Returns {meta as HGETALL gives it} when the account is not
# there, else {meta, each lookup's answer in turn}.
LOAD = """
local out = {redis.call('HGETALL', KEYS[1])}
if #out[1] == 0 then return out end
local at = 1
for k = 2, #KEYS do
  local command, count = ARGV[at], tonumber(ARGV[at + 1])
  local answers = {}
  -- A thousand fields a call: unpack() takes only so many.
  for first = at + 2, at + 1 + count, 1000 do
    local part = redis.call(command, KEYS[k], unpack(ARGV, first, math.min(first + 999, at + 1 + count)))
    for n = 1, #part do answers[#answers + 1] = part[n] end
  end
  out[k] = answers
  at = at + 2 + count
end
return out
"""

# A page of an account's order and what its items need, in one round trip and at one
# instant (a script runs alone), so a page needs no rev check and no second trip.
# KEYS[1] the account's meta, KEYS[2] the order, KEYS[3] the hash holding the order's owner
# (a conversation, for its messages), then one key per lookup. ARGV[1] the first member
# (ZRANGEBYLEX's min), ARGV[2] how many, ARGV[3] the characters before a member's id,
# ARGV[4] "1" when the id is written Newest (_newest), ARGV[5] the owner's field ("" for
# none), then each lookup's command (HMGET or SMISMEMBER) and the prefix of its fields
# (the id as it is, or "message:" and the like for read marks; "-message:" asks the ids
# that start so without it, and the others as "", which no hash holds). Returns false for an
# account that is not there, else {meta as HGETALL gives it, members, whether the order
# or its owner exists (1 or 0), each lookup's answer in turn}.
PAGE = """
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return false end
local members = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
local present = 1
if #members == 0 and ARGV[5] ~= '' then
  present = redis.call('EXISTS', KEYS[2]) + redis.call('HEXISTS', KEYS[3], ARGV[5])
end
local out = {meta, members, present}
if #members == 0 then return out end
local skip = tonumber(ARGV[3])
local function complement(pair) return string.char(255 - tonumber(pair, 16)) end
local ids = {}
for i, member in ipairs(members) do
  local id = string.sub(member, skip + 1)
  if ARGV[4] == '1' then
    id = string.gsub(string.sub(id, 1, -2), '%x%x', complement)
  end
  ids[i] = id
end
for k = 4, #KEYS do
  local command, prefix = ARGV[4 + 2 * (k - 3)], ARGV[5 + 2 * (k - 3)]
  local fields = ids
  if string.sub(prefix, 1, 1) == '-' then
    local strip = string.sub(prefix, 2)
    fields = {}
    for i, id in ipairs(ids) do
      if string.sub(id, 1, #strip) == strip then fields[i] = string.sub(id, #strip + 1) else fields[i] = '' end
    end
  elseif prefix ~= '' then
    fields = {}
    for i, id in ipairs(ids) do fields[i] = prefix .. id end
  end
  out[#out + 1] = redis.call(command, KEYS[k], unpack(fields))
end
return out
"""
