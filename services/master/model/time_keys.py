"""Sort keys of items in time order, newest first, each packed into one bytes object.

A key is the item's platform time inverted, so that later sorts first (8 bytes of
seconds, 4 of nanoseconds, big-endian), then its id with every byte inverted and 0xff
after it, so that among items of the same instant the larger id comes first. UTF-8's
byte order is code point order, so keys order exactly as the cursors' (-ns, Newest(id))
do, which both store backends share; one bytes object costs a third of such a tuple's
memory, and is made in a fraction of its time. The master's reader of snapshot messages
(_wire.c) makes the same keys in C; tests/test_wire.py holds the two equal.
"""

from __future__ import annotations

import struct

from google.protobuf.timestamp_pb2 import Timestamp

from services.master.model.cursor import SortKey
from services.master.model.errors import InvalidArgument

# Public for the one loop that inlines of_time (intake.py); the rest use the functions.
HEAD = struct.Struct(">QI")
BIAS = 1 << 62
_NANOS = 999_999_999
INVERT = bytes(range(255, -1, -1))
END = b"\xff"


def _inverted(item_id: str) -> bytes:
    """The id's part of a key (its inverted bytes and the end mark)."""
    return item_id.encode("utf-8", "surrogatepass").translate(INVERT) + END


def after_head(at: bytes) -> bytes:
    """The least time part after `at` (every key of that time sorts before it)."""
    value = int.from_bytes(at, "big") + 1
    return value.to_bytes(12, "big") if value < 1 << 96 else b"\xff" * 13


def time_key(ts: Timestamp, item_id: str) -> bytes:
    """The key of an item at `ts`."""
    return of_time(ts.seconds, ts.nanos, item_id)


def of_time(seconds: int, nanos: int, item_id: str) -> bytes:
    """The key of an item at `seconds`, `nanos` (as time_key, when they are read already)."""
    return HEAD.pack(BIAS - seconds, _NANOS - nanos) + _inverted(item_id)


def item_of(key: bytes) -> str:
    return key[12:-1].translate(INVERT).decode("utf-8", "surrogatepass")


def ns_of_key(key: bytes) -> int:
    seconds: int
    nanos: int
    seconds, nanos = HEAD.unpack_from(key)
    return (BIAS - seconds) * 1_000_000_000 + _NANOS - nanos


def to_cursor(key: bytes) -> SortKey:
    """The key as cursors carry it: (-ns, id)."""
    return (-ns_of_key(key), item_of(key))


def from_cursor(parts: SortKey) -> bytes:
    """The key of a decoded cursor's (-ns, id)."""
    seconds, nanos = divmod(-int(parts[0]), 1_000_000_000)
    try:
        return HEAD.pack(BIAS - seconds, _NANOS - nanos) + _inverted(str(parts[1]))
    except struct.error:
        raise InvalidArgument("cursor does not belong to this list", field="cursor") from None
