"""Every master's clients hear every master's events: the shared Redis stream, followed.

Changes committed by any master put their events on `<p>:events` (through the account's
outbox, redis/store.py); each master follows the stream and publishes what it reads to its
own bus, with the stream's ids, so that an id a client got from one master resumes it on
any other. At start the bus is primed with the stream's newest events, so that a client
moving to this master resumes without a gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from imsync.v1 import events_pb2 as ev
from services.common.logs import Outage
from services.master.model.events import EventBus
from services.master.redis.connect import Client
from services.master.redis.errors import FAILURES, reraise_cancellation
from services.master.redis.lane import Lane

log = logging.getLogger(__name__)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisEventFeed:
    def __init__(self, client: Client, key: str, bus: EventBus, *, history: int = 10_000) -> None:
        self._redis = client
        self._key = key
        self._bus = bus
        self._history = history
        self._last = "0-0"
        # Set when the master stops: the follow ends (its cancellation alone may be lost in
        # redis-py's blocking read).
        self.stopping = asyncio.Event()

    def _publish(self, entry_id: Any, fields: dict[bytes, bytes]) -> None:
        self._last = _text(entry_id)
        raw = fields.get(b"e")
        if raw is None:
            return
        event = ev.Event.FromString(raw)
        event.event_id = self._last
        self._bus.publish(event)

    async def prime(self) -> None:
        """Takes the stream's newest events into the bus's history."""
        newest: Any = await self._redis.xrevrange(self._key, count=self._history + 1)
        dropped = "0-0"
        if len(newest) > self._history:
            dropped = _text(newest.pop()[0])
        try:
            info: Any = await self._redis.xinfo_stream(self._key)
            trimmed = _text(info.get("max-deleted-entry-id", "0-0"))
            dropped = max(dropped, trimmed, key=lambda i: tuple(map(int, i.split("-"))))
        except RedisError:
            pass  # no stream yet: nothing was ever dropped
        self._bus.held_since(dropped)
        for entry_id, fields in reversed(newest):
            self._publish(entry_id, fields)

    async def follow(self) -> None:
        """Publishes each new event of the stream to the bus, until cancelled. On one node
        it reads on a lane of its own (lane.py): every change's events come back to every
        master this way, and redis-py's read was most of what that cost."""
        lane = Lane(self._redis) if isinstance(self._redis, aioredis.Redis) else None
        try:
            await follow_stream(
                self._redis, self._key, self._last, self._publish, "the event stream", self.stopping, lane
            )
        finally:
            if lane is not None:
                await lane.close()


async def follow_stream(
    client: Client,
    key: str,
    after: str,
    handle: Callable[[Any, dict[bytes, bytes]], None],
    what: str,
    stopping: asyncio.Event,
    lane: Lane | None = None,
) -> None:
    """Hands each entry of a stream after `after` to `handle` (its id and fields), until
    cancelled or `stopping` is set (a read blocks a second at most); Redis out of reach is
    waited for, and reading goes on where it stopped. `lane`: read on it (one node)."""
    last = after
    outage = Outage(log, f"reading {what}")
    while not stopping.is_set():
        try:
            if lane is not None:
                found = _streams(await lane.call("XREAD", "COUNT", 500, "BLOCK", 1000, "STREAMS", key, last))
            else:
                found = await client.xread({key: last}, block=1000, count=500)
        except asyncio.CancelledError:
            raise
        except FAILURES as error:
            reraise_cancellation()
            outage.failed(error)
            await asyncio.sleep(1.0)
            continue
        outage.succeeded()
        for _, entries in found or ():
            for entry_id, fields in entries:
                last = _text(entry_id)
                handle(entry_id, fields)


def _streams(raw: Any) -> Any:
    """XREAD's reply as hiredis reads it (a map of the streams in RESP3, which redis-py
    asks for, a list of pairs in RESP2), in the shape redis-py makes of it: each stream's
    name and entries, each entry its id and a dict of its fields."""
    streams = raw.items() if isinstance(raw, dict) else raw or ()
    return [
        (name, [(entry_id, dict(zip(flat[::2], flat[1::2], strict=True))) for entry_id, flat in entries])
        for name, entries in streams
    ]
