"""A clock of the time this process was awake: monotonic time less the pauses of its event
loop (a machine that froze for seconds, a process stopped or starved of CPU).

Leases and liveness timeouts measure a peer's silence. Measured on the wall clock, a
pause of the process that measures counts as the peer's silence: when it resumes, the
timers fire before the messages waiting in its sockets are read, and a peer that spoke
all along is found silent (on a shared two-core machine every process here was seen
pausing at the same moments, for up to 2 s, and in CI a master took away the leases of
a worker unheard for a whole 4 s lease, then the worker gave up its stream). On this
clock a pause counts as `GAP` at most; a peer that was silent while this process was
running is found silent as before.

The clock runs while `run()` does (a task of the process); before or without it, it is
the monotonic clock."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from services.common.futures import abandon

T = TypeVar("T")

TICK = 0.25  # seconds between two looks at the monotonic clock
GAP = 1.0  # the most that one look counts: a longer pause of the loop counts as this


class AwakeClock:
    def __init__(self) -> None:
        self._running = False
        self._awake = 0.0  # awake seconds until the last look
        self._looked = time.monotonic()
        self._offset = 0.0  # monotonic - awake while not running, so the clock never goes back

    def __call__(self) -> float:
        now = time.monotonic()
        if not self._running:
            return now - self._offset
        return self._awake + min(now - self._looked, GAP)

    async def run(self) -> None:
        """Counts awake time until cancelled."""
        now = time.monotonic()
        self._awake, self._looked = now - self._offset, now
        self._running = True
        try:
            while True:
                await asyncio.sleep(TICK)
                self._look()
        finally:
            self._look()
            self._running = False
            self._offset = time.monotonic() - self._awake

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _look(self) -> None:
        now = time.monotonic()
        self._awake += min(now - self._looked, GAP)
        self._looked = now


async def before(awaitable: Awaitable[T], clock: AwakeClock, deadline: float) -> T:
    """What `awaitable` gives, unless `deadline` (on `clock`) comes first: TimeoutError,
    the awaitable cancelled. Unlike asyncio.timeout, a pause of this process does not
    bring the deadline nearer, and what arrived during it is taken first."""
    future = asyncio.ensure_future(awaitable)
    try:
        while (left := deadline - clock()) > 0:
            done, _ = await asyncio.wait({future}, timeout=min(left, TICK))
            if done:
                return future.result()
        raise TimeoutError
    except BaseException:
        # Done or not, what it ends with is taken: it may have ended, with an error, as the
        # deadline passed or the caller was cancelled.
        abandon(future)
        raise
