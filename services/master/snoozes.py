"""Snoozes that run out: when a snoozed conversation's time passes, it becomes open again
and shown unread, as a change like any other (journaled, announced, seen by every cache).

Each master keeps the snoozes it knows of in a heap: those in the store when it starts,
and every one announced since (over Redis the event stream carries other masters' too).
Two masters waking one conversation is harmless: the second finds nothing to change.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from typing import Any

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from services.master.model import threads
from services.master.model.errors import StoreError
from services.master.model.events import EventBus
from services.master.model.store import Store

log = logging.getLogger(__name__)

# How long the clock sleeps at most with nothing due.
_IDLE = 60.0


class SnoozeClock:
    def __init__(self, store: Store, bus: EventBus) -> None:
        self._store = store
        self._bus = bus

    async def run(self) -> None:
        while True:
            subscription = self._bus.subscribe(
                (), (ev.EVENT_TYPE_CONVERSATION_HANDLED, ev.EVENT_TYPE_THREAD_HANDLED), ""
            )
            try:
                due = await self._store.snoozed()
                heapq.heapify(due)
                if not await self._tick(subscription.queue, due):
                    return
            except StoreError as error:  # the store is out of reach: try again shortly
                log.warning("snoozes: %s", error)
                await asyncio.sleep(5.0)
            finally:
                self._bus.unsubscribe(subscription)

    async def _tick(self, queue: asyncio.Queue[Any], due: list[tuple[int, str, str]]) -> bool:
        """Wakes what is due as it comes due; False once the bus closed, True when this
        subscriber fell behind (and must load the snoozes again)."""
        while True:
            wait = (due[0][0] - time.time_ns()) / 1e9 if due else _IDLE
            event: object = ()
            if wait > 0:
                try:
                    async with asyncio.timeout(min(wait, _IDLE)):
                        event = await queue.get()
                except TimeoutError:
                    pass
            if event is None:
                return True
            if isinstance(event, ev.Event):
                handled: e.Conversation | e.Thread = event.conversation
                thread_key = event.conversation.conversation_id
                if event.HasField("thread"):
                    handled, thread_key = event.thread, threads.comment_thread(event.thread.thread_id)
                if handled.thread_state == threads.SNOOZED:
                    heapq.heappush(due, (handled.snoozed_until.ToNanoseconds(), event.account_id, thread_key))
            elif event != ():
                return False  # the bus closed: the master stops
            now = time.time_ns()
            while due and due[0][0] <= now:
                _, account_id, thread_key = heapq.heappop(due)
                root = threads.root_of(thread_key)
                try:
                    if root is None:
                        await self._store.handle_conversation(account_id, thread_key, threads.wake, now)
                    else:
                        await self._store.handle_comment_thread(account_id, root, threads.wake, now)
                except StoreError as error:
                    log.info("snooze of %r in %s: %s", thread_key, account_id, error)
