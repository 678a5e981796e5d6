"""Answers of repeated reads without calling the services again, never stale.

An answer is kept, under the request exactly as it came (path, query, credentials), with
the *stamp* of what it was computed from: the generation of the
account the request names (or of the whole store, for a request naming none), which the
store advances synchronously with every change it makes, before the change is
acknowledged to anyone. A later request whose stamp is still the same gets the same bytes;
any change makes the stamp move and the next request computes afresh. The stamp is read
before the answer is computed, so an answer computed while a change happened is kept
under the older stamp and never served after it.

The stamps come from the store itself in the embedded mode (`imsync master
--gateway-listen`), where they move synchronously with its changes; a gateway in another
process takes them from the master's invalidations, which the master waits for before it
acknowledges a change (watch.py, coherence.py), and has none while its lease is not
running. Masters over Redis give no stamps: their gateways get ETags and 304s but no
cache. Each hit is still authorized (API key and rate) as a call would be.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from imsync.v1 import (
    accounts_pb2,
    contents_pb2,
    conversations_pb2,
    discussions_pb2,
    messages_pb2,
    unified_messages_pb2,
)

Metadata = Sequence[tuple[str, str]]

# The services whose reads depend on the store alone (replies and events do not).
CACHED_SERVICES = frozenset(
    service.full_name
    for module in (accounts_pb2, conversations_pb2, messages_pb2, contents_pb2, discussions_pb2, unified_messages_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
)


def with_body(headers: list[tuple[bytes, bytes]], body: bytes) -> list[tuple[bytes, bytes]]:
    """A read answer's raw headers for a 200 carrying `body` (JSON)."""
    return [*headers, (b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]


class Answer:
    """A kept answer, with its HTTP headers ready to send (for 304, and for 200 with the body)."""

    def __init__(self, body: bytes, headers: dict[str, str], route: str = "") -> None:
        self.body = body
        self.headers = headers
        # The route's template, for the access log and the metrics of a hit.
        self.route = route
        self.raw_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
        ]
        self.raw_headers_200 = with_body(self.raw_headers, body)


class ResponseCache:
    """Answers kept by request, LRU, within a byte budget of which one caller (one API key,
    or everyone without one) holds at most `key_share`: a caller varying its requests
    (a parameter nobody reads, say) pushes out its own answers, not everyone's, and never
    grows the process past the budget."""

    def __init__(
        self,
        stamp: Callable[[str], int | None],
        authorize: Callable[[Metadata], object],
        *,
        services: frozenset[str] = CACHED_SERVICES,
        max_entries: int = 20_000,
        max_bytes: int = 64 * 1024 * 1024,
        key_share: float = 0.25,
    ) -> None:
        # The generation of an account ("" for the whole store); None while none is known.
        self.stamp = stamp
        # Raises for a caller that may not read (or is over its rate), as a call would.
        self.authorize = authorize
        # The gRPC services whose GET answers may be kept (full names).
        self.services = services
        # key -> (account, stamp, answer, who asked, its size)
        self._entries: OrderedDict[tuple[object, ...], tuple[str, int, Answer, object, int]] = OrderedDict()
        self._max = max_entries
        self.max_bytes = max_bytes
        self._per_caller = max(1, int(max_bytes * key_share))
        self.bytes = 0
        self._bytes_of: dict[object, int] = {}
        # Each caller's keys, oldest first.
        self._keys_of: dict[object, OrderedDict[tuple[object, ...], None]] = {}
        # Answers served from the cache.
        self.hits = 0

    def get(self, key: tuple[object, ...]) -> Answer | None:
        """The answer kept for `key`, if what it was computed from has not changed since."""
        found = self._entries.get(key)
        if found is None or found[1] != self.stamp(found[0]):
            return None
        self._entries.move_to_end(key)
        return found[2]

    def put(self, key: tuple[object, ...], account_id: str, stamp: int | None, answer: Answer) -> None:
        """Keeps an answer computed from the account's state at `stamp` (read before computing).
        The caller is the key's last part (who asked)."""
        if stamp is None:
            return
        size = len(answer.body) + sum(len(k) + len(v) for k, v in answer.raw_headers) + 256
        caller = key[-1]
        if size > self._per_caller:
            return  # one answer larger than a caller's share is not kept
        self._drop(key)
        self._entries[key] = (account_id, stamp, answer, caller, size)
        self._keys_of.setdefault(caller, OrderedDict())[key] = None
        self.bytes += size
        self._bytes_of[caller] = self._bytes_of.get(caller, 0) + size
        while self._bytes_of[caller] > self._per_caller:
            self._drop(next(iter(self._keys_of[caller])))
        while len(self._entries) > self._max or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[object, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        caller = entry[3]
        self.bytes -= entry[4]
        keys = self._keys_of[caller]
        del keys[key]
        left = self._bytes_of[caller] - entry[4]
        if keys:
            self._bytes_of[caller] = left
        else:
            del self._bytes_of[caller], self._keys_of[caller]

    def clear(self) -> None:
        self._entries.clear()
        self._bytes_of.clear()
        self._keys_of.clear()
        self.bytes = 0
