"""The clock of the time a process was awake (services/common/awake.py): a pause of the
process counts as a second at most, and what arrived during it is read before a deadline
on that clock is called missed."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from services.common.awake import GAP, TICK, AwakeClock, before


async def test_a_pause_of_the_process_counts_as_a_gap_at_most() -> None:
    clock = AwakeClock()
    async with clock.running():
        await asyncio.sleep(0.3)
        began, wall = clock(), time.monotonic()
        time.sleep(2.5)  # noqa: ASYNC251  # the loop, the process, the machine: nothing runs
        await asyncio.sleep(0.3)
        assert time.monotonic() - wall >= 2.8
        # The pause counted as GAP; the 0.3 s after it as about itself (a busier machine
        # only makes the clock slower).
        assert 0 < clock() - began <= GAP + 0.3 + 2 * TICK
    stopped = clock()
    await asyncio.sleep(0.3)
    # Not running, it is the monotonic clock again, from where it was.
    assert 0.25 <= clock() - stopped < 1.0


async def test_what_came_during_a_pause_is_taken_before_the_deadline() -> None:
    clock = AwakeClock()
    async with clock.running():
        loop = asyncio.get_running_loop()
        heartbeat: asyncio.Future[str] = loop.create_future()
        loop.call_later(0.5, heartbeat.set_result, "heartbeat")  # due during the pause
        reading = asyncio.create_task(before(heartbeat, clock, clock() + 1.0))
        await asyncio.sleep(0)
        time.sleep(2.0)  # noqa: ASYNC251  # past the deadline on the wall clock
        assert await reading == "heartbeat"


async def test_a_silence_while_awake_misses_the_deadline_and_cancels_the_read() -> None:
    clock = AwakeClock()
    async with clock.running():
        silent: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            await before(silent, clock, clock() + 0.6)
        assert time.monotonic() - began >= 0.6
        assert silent.cancelled()


async def test_a_read_that_failed_as_it_was_given_up_is_not_reported_unretrieved() -> None:
    """A read ending with an error just as its deadline passes (or as its caller is
    cancelled) is not awaited by anyone: its error is taken, not logged by asyncio as
    "exception was never retrieved" (CI printed such tracebacks of reads of streams whose
    connection failed as the worker gave up on them)."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
    try:
        clock = AwakeClock()
        for cancelled in (False, True):
            failed: asyncio.Future[str] = loop.create_future()
            error = ConnectionError("failed to connect to all addresses")
            if cancelled:
                waiting = asyncio.create_task(before(failed, clock, clock() + 10))
                await asyncio.sleep(0)  # it waits for the read
                failed.set_exception(error)
                waiting.cancel()  # in the same turn of the loop
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            else:
                failed.set_exception(error)
                with pytest.raises(TimeoutError):
                    await before(failed, clock, clock() - 1)  # the deadline passed already
            await asyncio.sleep(0)  # the done callbacks run
            del failed
            gc.collect()
        assert reported == []
    finally:
        loop.set_exception_handler(None)
