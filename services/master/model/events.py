"""Live events: a bounded history and the subscribers that follow it.

Every event gets an increasing id, "<epoch>-<n>": the epoch changes whenever the master
starts, so a subscriber resuming with an id of an earlier run is told it missed events
(OUT_OF_RANGE) instead of silently skipping or repeating them. A bus shared by several
masters (over Redis) takes the ids of the shared stream instead ("<ms>-<seq>"), the same
on every master, so a client may resume on any of them. A subscriber can resume
after an id as long as the history still holds the events after it; a subscriber that
cannot keep up is dropped (its buffer is bounded) and resumes from its last id, instead
of growing the master's memory.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field

from imsync.v1 import events_pb2 as ev
from services.common.series import series
from services.master.model.errors import InvalidArgument, OutOfRange, ResourceExhausted
from services.master.model.metrics import EVENT_DROPPED, EVENT_LAG, EVENT_SUBSCRIBERS, EVENTS

_EVENT_ID = re.compile(r"(\d+)-(\d+)")


# Each event type's name in the metrics: "new_message" for EVENT_TYPE_NEW_MESSAGE.
_TYPE_NAMES = {number: name.removeprefix("EVENT_TYPE_").lower() for name, number in ev.EventType.items()}


class _Closed:
    """Put on a subscriber's queue when the bus closes (the master is stopping)."""


@dataclass(eq=False)  # compared and hashed by identity: subscribers live in a set
class Subscription:
    account_ids: frozenset[str]
    types: frozenset[int]
    queue: asyncio.Queue[ev.Event | _Closed | None] = field(default_factory=lambda: asyncio.Queue(1000))
    dropped: bool = False

    def wants(self, event: ev.Event) -> bool:
        """Events of the subscribed accounts and types; a team-wide event (a template,
        naming no account) reaches every subscriber of its type."""
        return (not self.account_ids or not event.account_id or event.account_id in self.account_ids) and (
            not self.types or event.type in self.types
        )


class EventBus:
    def __init__(
        self,
        *,
        history: int = 10_000,
        history_bytes: int = 64 * 1024 * 1024,
        buffer: int = 1_000,
        epoch: int | None = None,
        shared: bool = False,
    ) -> None:
        # The newest events, at most `history` of them and `history_bytes` of their bytes.
        self._history: deque[ev.Event] = deque()
        self._sizes: deque[int] = deque()
        self._max_events = history
        self._max_bytes = history_bytes
        self._bytes = 0
        # Without a journal to count starts, the start time (ms) tells runs apart.
        self.epoch = epoch if epoch is not None else time.time_ns() // 1_000_000
        # Ids come from the shared stream with each event; there are no runs to tell apart.
        self.shared = shared
        self._ids = itertools.count(1)
        # The position of the newest event no longer held: resuming before it misses events.
        self._dropped_upto: tuple[int, int] = (0, 0)
        self._buffer = buffer
        self._subscribers: set[Subscription] = set()
        EVENT_SUBSCRIBERS.set_function(lambda: len(self._subscribers))
        EVENT_LAG.set_function(lambda: max((s.queue.qsize() for s in list(self._subscribers)), default=0))

    def kept_events(self) -> tuple[ev.Event, ...]:
        """The events kept for streams that resume, oldest first (bounded in count and bytes)."""
        return tuple(self._history)

    def publish(self, event: ev.Event) -> None:
        if not self.shared:
            event.event_id = f"{self.epoch}-{next(self._ids)}"
        if not event.HasField("create_time"):
            # Not GetCurrentTime(): it goes through datetime, a tenth of a delta's cost.
            seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
            event.create_time.seconds, event.create_time.nanos = seconds, nanos
        size = event.ByteSize()
        self._history.append(event)
        self._sizes.append(size)
        self._bytes += size
        while len(self._history) > self._max_events or (self._bytes > self._max_bytes and len(self._history) > 1):
            self._dropped_upto = _position(self._history.popleft().event_id)
            self._bytes -= self._sizes.popleft()
        series(EVENTS, _TYPE_NAMES[event.type]).inc()
        for subscriber in list(self._subscribers):
            if not subscriber.wants(event):
                continue
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                EVENT_DROPPED.inc()
                subscriber.dropped = True
                self._subscribers.discard(subscriber)
                subscriber.queue.get_nowait()
                subscriber.queue.put_nowait(None)

    def held_since(self, dropped_upto: str) -> None:
        """For a shared bus primed with the stream's newest events: the id of the newest one
        it did not take (or that the stream no longer holds)."""
        self._dropped_upto = _position(dropped_upto)

    def subscribe(self, account_ids: Collection[str], types: Collection[int], after_event_id: str) -> Subscription:
        """Registers a subscriber, with the events after `after_event_id` already queued."""
        subscription = Subscription(frozenset(account_ids), frozenset(types), asyncio.Queue(self._buffer))
        if after_event_id:
            found = _EVENT_ID.fullmatch(after_event_id)
            if found is None:
                raise InvalidArgument("must be an event id (<epoch>-<n>)", field="after_event_id")
            if not self.shared and int(found.group(1)) != self.epoch:
                raise OutOfRange(
                    f"event {after_event_id} is from an earlier run of the master; reload, then subscribe anew",
                    field="after_event_id",
                )
            after = _position(after_event_id)
            if after < self._dropped_upto:
                oldest = self._history[0].event_id if self._history else "none"
                raise OutOfRange(
                    f"events after {after_event_id} are no longer held (the oldest is {oldest}); "
                    "reload, then subscribe anew",
                    field="after_event_id",
                )
            missed = [
                event for event in self._history if _position(event.event_id) > after and subscription.wants(event)
            ]
            if len(missed) >= self._buffer:
                raise ResourceExhausted(f"{len(missed)} events to replay; reload, then subscribe anew")
            for event in missed:
                subscription.queue.put_nowait(event)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def close(self) -> None:
        """Ends every subscriber's stream after what it has queued (the master is stopping)."""
        for subscriber in list(self._subscribers):
            self._subscribers.discard(subscriber)
            if subscriber.queue.full():
                subscriber.queue.get_nowait()
                subscriber.queue.put_nowait(None)  # it had fallen behind anyway
            else:
                subscriber.queue.put_nowait(_Closed())

    async def follow(
        self, subscription: Subscription, check: Callable[[], None] | None = None, every: float = 0.25
    ) -> AsyncIterator[ev.Event]:
        """The subscription's events as they come. `check`, called before each event and at
        least every `every` seconds while none comes, ends the stream by raising (a key
        revoked or narrowed since the stream began)."""
        try:
            while True:
                if check is not None:
                    check()
                    try:
                        async with asyncio.timeout(every):
                            event = await subscription.queue.get()
                    except TimeoutError:
                        continue
                    check()
                else:
                    event = await subscription.queue.get()
                if event is None:
                    raise ResourceExhausted("this subscriber fell too far behind; resume from the last event id")
                if isinstance(event, _Closed):
                    return
                yield event
        finally:
            self.unsubscribe(subscription)


def _position(event_id: str) -> tuple[int, int]:
    first, _, second = event_id.partition("-")
    return int(first), int(second)
