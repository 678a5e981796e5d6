"""The separate gateway's side of CacheService.WatchChanges: the stamps of its response
cache, moved by the master's invalidations before the master acknowledges the changes.

The gateway serves kept answers only while its lease runs. It counts each lease from the
moment it asked for it (before the master granted it), applies invalidations in the order
they come, and answers each once applied. When the stream breaks, every kept answer goes:
what changed meanwhile was not heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

import grpc

from imsync.v1 import cache_pb2, cache_pb2_grpc
from services.common.rate_limit import RateLimiter

from .cache import Metadata

log = logging.getLogger(__name__)

# The master cannot let any gateway keep answers (its store is shared, or it is too old).
_FINAL = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED)
# The master will not let this one: asked again now and then (a key may be given later).
_REFUSED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


class Refused(Exception):
    """Raised by `authorize` for a caller a kept answer may not be given to."""


class ChangeWatch:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        key: str = "",
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_after: float = 1.0,
        refused_retry_after: float = 30.0,
    ) -> None:
        self._stub = cache_pb2_grpc.CacheServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {key}"),) if key else ()
        self._clock = clock
        self._retry_after = retry_after
        self._refused_retry_after = refused_retry_after
        self._generations: Counter[str] = Counter()
        self._generation = 0
        # Moves whenever the stream starts again (or every answer must go): it is in every stamp.
        self._epoch = 0
        self._lease_end = float("-inf")
        self._lease = 0.0
        self._asked: dict[int, float] = {}
        self._limiter: RateLimiter | None = None
        self._keys_enforced = True
        self._outbound: asyncio.Queue[cache_pb2.WatchChangesRequest | None] | None = None
        self._closing = False
        self._stopping = asyncio.Event()
        # Why the master refuses to let this gateway keep answers, while it does.
        self.refused = ""
        self.invalidations = 0
        self.connected = asyncio.Event()

    # ------------------------------------------------------------ the cache's

    def current(self) -> bool:
        """Whether the watch holds a lease now (its kept answers are exact)."""
        return self._clock() < self._lease_end

    def stamp(self, account_id: str) -> int | None:
        """What kept answers of the account are valid at, while the lease runs; else None."""
        if self._clock() >= self._lease_end:
            return None
        generation = self._generations[account_id] if account_id else self._generation
        return self._epoch << 40 | generation

    def authorize(self, metadata: Metadata) -> object:
        """A kept answer goes only to the very credentials the master answered (its key is
        part of the cache's key), within the key's rate as the master counts it."""
        header = next((value for name, value in metadata if name == "authorization"), "")
        if self._keys_enforced and not header:
            raise Refused("no API key")
        if self._limiter is not None and self._limiter.take(header):
            raise Refused("over its rate")
        return None

    # ------------------------------------------------------------ the stream

    async def run(self) -> None:
        """Watches until closed or refused for good, connecting again after a failure: at
        once, then backing off up to 30 s while the master stays away; said once, not at
        each try."""
        failures = 0
        while not self._closing:
            pause = min(30.0, self._retry_after * 2 ** min(failures, 8))
            try:
                await self._watch()
                failures = 0
                if not self._closing:
                    log.info("the master ended the watch of its changes; again in %g s", pause)
            except grpc.aio.AioRpcError as error:
                failures += 1
                if error.code() in _FINAL or error.code() in _REFUSED:
                    refused = f"{error.code().name}: {error.details()}"
                    if refused != self.refused:
                        log.warning("the master lets this gateway keep no answers (%s); every read calls it", refused)
                    self.refused = refused
                    if error.code() in _FINAL:
                        return
                    pause = self._refused_retry_after
                else:
                    # Said once when the master goes away; the tries after it only at DEBUG.
                    (log.warning if failures == 1 else log.debug)(
                        "watching the master's changes failed (%s); again in %g s", error.code().name, pause
                    )
            finally:
                self._forget()
            if not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)

    async def close(self, running: asyncio.Task[None]) -> None:
        """Stops serving kept answers, tells the master (which then waits for this gateway
        no more) and ends `running` (the task of `run`)."""
        self._closing = True
        self._stopping.set()
        self._lease_end = float("-inf")
        if self._outbound is not None:
            self._outbound.put_nowait(cache_pb2.WatchChangesRequest(leaving=True))
            self._outbound.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(running), 1.0)
        except TimeoutError:
            running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    def _forget(self) -> None:
        self._epoch += 1
        self._lease_end = float("-inf")
        self._asked.clear()
        self._outbound = None
        self.connected.clear()

    async def _watch(self) -> None:
        call = self._stub.WatchChanges(None, metadata=self._metadata)  # written below
        outbound: asyncio.Queue[cache_pb2.WatchChangesRequest | None] = asyncio.Queue()
        self._outbound = outbound

        async def write() -> None:
            while (request := await outbound.get()) is not None:
                await call.write(request)
            await call.done_writing()

        writer = asyncio.create_task(write())
        renewing: asyncio.Task[None] | None = None
        try:
            async for response in call:
                kind = response.WhichOneof("kind")
                if kind == "settings":
                    settings = response.settings
                    self.refused = ""
                    self._epoch += 1  # nothing heard before counts
                    self._lease = settings.lease.ToNanoseconds() / 1e9
                    self._keys_enforced = settings.keys_enforced
                    self._limiter = (
                        RateLimiter(settings.rate_limit, settings.rate_burst) if settings.keys_enforced else None
                    )
                    if renewing is None and not self._closing:
                        renewing = asyncio.create_task(self._renew(outbound))
                elif kind == "invalidation":
                    self._invalidate(response.invalidation)
                    outbound.put_nowait(cache_pb2.WatchChangesRequest(applied=response.invalidation.sequence))
                elif kind == "grant" and not self._closing:
                    asked = self._asked.pop(response.grant.renewal, None)
                    if asked is not None:
                        self._lease_end = max(self._lease_end, asked + self._lease)
                        self.connected.set()
        finally:
            for task in (renewing, writer):
                if task is not None:
                    task.cancel()
            call.cancel()

    def _invalidate(self, invalidation: cache_pb2.Invalidation) -> None:
        self.invalidations += 1
        if invalidation.everything:
            self._epoch += 1
        for account_id in invalidation.account_ids:
            self._generations[account_id] += 1
        self._generation += 1

    async def _renew(self, outbound: asyncio.Queue[cache_pb2.WatchChangesRequest | None]) -> None:
        for renewal in range(1, 1 << 62):
            # Counted from now, before the master grants it.
            self._asked[renewal] = self._clock()
            outbound.put_nowait(cache_pb2.WatchChangesRequest(renew=renewal))
            # Old requests never granted are forgotten.
            self._asked.pop(renewal - 8, None)
            await asyncio.sleep(self._lease / 4)
