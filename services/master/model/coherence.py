"""Answers kept by gateways in other processes, kept exact (CacheService.WatchChanges).

A gateway that keeps answers of reads watches the master's changes. The store tells
`Coherence` of every account it changes, synchronously; the changes of one turn of the
event loop go out as one numbered invalidation to every watching gateway, and whatever
must wait for a change to be known everywhere (the Ack of a sync, the answer to a
mark-read, an event) waits until each gateway has applied it.

A gateway that does not answer (hung, partitioned, killed) is waited for no longer than
its lease: it serves kept answers only while its lease runs, and counts the lease from
before it asked for it, so the master, counting from when it granted, never ends it
sooner. Grants follow invalidations on the one ordered stream, so a gateway whose lease
lapsed applies what it missed before it may serve again. A gateway that vanishes thus
holds acknowledgements back at most one lease, once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from imsync.v1 import cache_pb2
from services.master.model.metrics import CACHE_INVALIDATIONS

Waiter = asyncio.Future[None] | Callable[[], None]


class Watcher:
    """One watching gateway."""

    def __init__(self, applied: int) -> None:
        self.outbound: asyncio.Queue[cache_pb2.WatchChangesResponse | None] = asyncio.Queue()
        # The last invalidation it applied.
        self.applied = applied
        # When its lease ends at the latest (the loop's clock); before its first grant, it
        # serves nothing.
        self.lease_end = float("-inf")
        self.leaving = False


@dataclass
class _Round:
    sequence: int
    # The gateways it waits for, each until the lease it held when the round was sent.
    holders: list[tuple[Watcher, float]]
    waiters: list[Waiter] = field(default_factory=list)


class Coherence:
    def __init__(self, lease: float = 1.0, *, margin: float = 0.1, max_queued: int = 10_000) -> None:
        self.lease = lease
        # Messages queued for a gateway that does not read them, before its stream is ended.
        self._max_queued = max_queued
        # Added to a lease as the master counts it: time for the grant to travel is the
        # gateway's loss, and clocks of two machines may tick slightly apart.
        self._margin = margin
        self._watchers: set[Watcher] = set()
        self._sequence = 0
        self._pending: set[str] = set()
        self._everything = False
        # Waiting for what is pending, before it is sent.
        self._next: list[Waiter] = []
        self._scheduled = False
        self._rounds: deque[_Round] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def watching(self) -> int:
        return len(self._watchers)

    # ------------------------------------------------------------ changes

    def changed(self, account_id: str) -> None:
        """An account's state changed (called synchronously with the change)."""
        if self._watchers:
            self._pending.add(account_id)
            self._schedule()

    def changed_everything(self) -> None:
        """Every kept answer must go (API keys changed)."""
        if self._watchers:
            self._everything = True
            self._schedule()

    def announced(self) -> asyncio.Future[None] | None:
        """A future resolved once every change made so far is known to every watching
        gateway; None when it already is."""
        if not self._pending and not self._everything and not self._rounds:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wait(future)
        return future

    def when_announced(self, callback: Callable[[], None]) -> None:
        """Calls `callback` once every change made so far is known everywhere, in order."""
        if not self._pending and not self._everything and not self._rounds:
            callback()
        else:
            self._wait(callback)

    def _wait(self, waiter: Waiter) -> None:
        if self._pending or self._everything:
            self._next.append(waiter)
        else:
            self._rounds[-1].waiters.append(waiter)

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        if not self._pending and not self._everything:
            return
        self._sequence += 1
        message = cache_pb2.WatchChangesResponse(
            invalidation=cache_pb2.Invalidation(
                sequence=self._sequence, account_ids=sorted(self._pending), everything=self._everything
            )
        )
        self._pending.clear()
        self._everything = False
        if self._watchers:
            CACHE_INVALIDATIONS.inc()
        now = asyncio.get_running_loop().time()
        holders = []
        for watcher in list(self._watchers):
            if watcher.lease_end > now:
                holders.append((watcher, watcher.lease_end))
            if watcher.outbound.qsize() >= self._max_queued:
                # It stopped reading: its stream ends (this round waits out its lease).
                self._watchers.discard(watcher)
                while not watcher.outbound.empty():
                    watcher.outbound.get_nowait()
                watcher.outbound.put_nowait(None)
            else:
                watcher.outbound.put_nowait(message)
        self._rounds.append(_Round(self._sequence, holders, self._next))
        self._next = []
        self._settle()

    def _settle(self) -> None:
        """Resolves the rounds every gateway applied or stopped serving for."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._rounds:
            head = self._rounds[0]
            waiting = [
                end
                for watcher, end in head.holders
                if watcher.applied < head.sequence and not watcher.leaving and end > now
            ]
            if waiting:
                self._timer = loop.call_at(min(waiting), self._settle)
                return
            self._rounds.popleft()
            for waiter in head.waiters:
                if isinstance(waiter, asyncio.Future):
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    waiter()

    # ------------------------------------------------------------ gateways

    def join(self) -> Watcher:
        # It has applied everything sent so far: it kept nothing before.
        watcher = Watcher(self._sequence)
        self._watchers.add(watcher)
        return watcher

    def leave(self, watcher: Watcher) -> None:
        """Its stream ended: nothing more is sent to it, but the rounds sent wait for its
        lease (a gateway cut off may not know yet)."""
        self._watchers.discard(watcher)

    def handle(self, watcher: Watcher, request: cache_pb2.WatchChangesRequest) -> None:
        kind = request.WhichOneof("kind")
        if kind == "renew":
            # Behind the invalidations queued already: the gateway applies them first.
            watcher.lease_end = asyncio.get_running_loop().time() + self.lease + self._margin
            watcher.outbound.put_nowait(
                cache_pb2.WatchChangesResponse(grant=cache_pb2.LeaseGrant(renewal=request.renew))
            )
        elif kind == "applied":
            watcher.applied = max(watcher.applied, min(request.applied, self._sequence))
            self._settle()
        elif kind == "leaving":
            watcher.leaving = request.leaving
            self._settle()
