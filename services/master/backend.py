"""What a deployment chooses together, built by one factory (`open_backend`): where the
accounts live (the store), how events reach live clients (the bus), where replies wait for
their workers (the command book), leases between masters, what an acknowledgement means,
and the background work each needs.

- `MemoryBackend`: this process's memory, journaled under --data-dir (one master per
  directory: the lock), with gateways allowed to keep answers (coherence).
- `RedisBackend`: one Redis shared by several masters: its event stream, its command
  outboxes, leases between masters; an acknowledgement means Redis's own persistence.

The master (server.py) sees only this interface; the servicers see only the store, the
bus and the book, and the store's errors (model/errors.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from imsync.v1 import events_pb2 as ev
from services.common.rate_limit import RateLimiter
from services.master.auth.api_keys import SharedLimiter, SharedSeats
from services.master.data_lock import DataDirLock
from services.master.health import Health
from services.master.memory.durability import Recovery, checkpoint_all, compact, open_data_dir
from services.master.memory.store import MemoryStore
from services.master.model.coherence import Coherence
from services.master.model.commands import CommandBook, Commands, is_reply, reply_of
from services.master.model.errors import Unavailable
from services.master.model.events import EventBus
from services.master.model.leases import SharedLeaseBook
from services.master.model.metrics import observe_reply
from services.master.model.store import Store
from services.master.redis.commands import RedisCommandBook
from services.master.redis.connect import is_redis_url
from services.master.redis.errors import FAILURES, UNREACHABLE, reraise_cancellation
from services.master.redis.events import RedisEventFeed
from services.master.redis.leases import SharedLeases
from services.master.redis.rate_limit import SharedRateLimiter, SharedStreamSeats
from services.master.redis.store import RedisStore

log = logging.getLogger("services.master.server")

Task = Coroutine[Any, Any, None]


class Backend:
    """The parts a master runs on, and their lifecycle around its server."""

    store: Store
    bus: EventBus
    book: Commands
    # Leases between masters sharing the store; None for a master alone.
    shared_leases: SharedLeaseBook | None = None
    # Gateways keeping answers watch this; None where other masters change the store.
    coherence: Coherence | None = None
    # What an acknowledgement means (told at start).
    persistence: str = ""
    # Retention runs every so many sweeps (a second each).
    retention_every: int = 1
    # What the store raises when it is out of reach for a while: the master's background
    # loops say so once, not with a traceback every second.
    out_of_reach: tuple[type[BaseException], ...] = (Unavailable,)

    async def open(self, listen: str, health: Health, failed: asyncio.Event) -> None:
        """Before serving: recover or reach what the store keeps."""

    def bound(self, address: str) -> None:
        """The server listens on `address`."""

    def background(self, health: Health, renew_leases: Callable[[], Task]) -> list[Task]:
        """What runs beside the server while it serves."""
        return []

    def stopping(self) -> None:
        """The master stops: background work ends at its next turn."""

    async def sweep(self, count: int) -> None:
        """The backend's share of the master's sweep, once a second."""

    async def close(self, settle: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """After the server stopped: leave what the store keeps consistent and closed."""

    def shared_limiter(self, local: RateLimiter) -> SharedLimiter | None:
        """Where every master counts a key's requests; None where this master is alone."""
        return None

    def shared_seats(self) -> SharedSeats | None:
        """Where every master counts a key's event streams; None where this master is alone."""
        return None

    def publisher(self, publish: Callable[[ev.Event], None]) -> Callable[[ev.Event], None]:
        """Publishes an event once gateways keeping answers know of its change, so that a
        client reading on at once is not answered the older state."""
        coherence = self.coherence
        if coherence is None:
            return publish
        return lambda event: coherence.when_announced(lambda: publish(event))


class MemoryBackend(Backend):
    def __init__(self, config: Any, store: Store | None = None) -> None:
        self.config = config
        self.bus = EventBus(history=config.event_history, history_bytes=config.event_history_bytes)
        memory = store if store is not None else MemoryStore(retention=config.retention)
        self.store = memory
        if isinstance(memory, MemoryStore):
            self.coherence = memory.coherence = Coherence(config.cache_lease)
        self.store.on_event = self.publisher(self.bus.publish)
        book = CommandBook(ttl=config.command_ttl)
        book.subscribe(observe_reply)
        bus = self.bus

        def announce(record: Any) -> None:
            if is_reply(record.command):
                bus.publish(
                    ev.Event(
                        type=ev.EVENT_TYPE_REPLY_STATE_CHANGED,
                        account_id=record.command.account_id,
                        reply=reply_of(record),
                    )
                )

        book.subscribe(announce)
        self.book = book
        self.recovery: Recovery | None = None
        # The data directory's lock, held while running (one master per directory).
        self.lock: DataDirLock | None = None

    async def open(self, listen: str, health: Health, failed: asyncio.Event) -> None:
        if self.config.data_dir is None:
            return
        if not isinstance(self.store, MemoryStore):
            raise ValueError("a data directory journals the memory store only")
        assert isinstance(self.book, CommandBook)
        self.lock = DataDirLock(self.config.data_dir)
        self.lock.acquire(listen)
        self.recovery = open_data_dir(self.config.data_dir, self.store, self.book, synchronous=self.config.journal_sync)
        journal = self.recovery.journal
        self.bus.epoch = journal.epoch
        journal.on_failure = lambda error: failed.set()
        journal.on_stall = lambda error: health.set_reason(
            "journal", None if error is None else f"the journal cannot write ({error})"
        )
        journal.start()
        # An event goes out only once what it reports is on disk.
        publish = self.publisher(self.bus.publish)
        self.store.on_event = lambda event: journal.when_persisted(lambda: publish(event))

    def bound(self, address: str) -> None:
        if self.lock is not None:
            self.lock.say(address)

    def background(self, health: Health, renew_leases: Callable[[], Task]) -> list[Task]:
        return [self._compact()] if self.recovery is not None else []

    async def _compact(self) -> None:
        assert self.recovery is not None and isinstance(self.store, MemoryStore)
        while True:
            await asyncio.sleep(2.0)
            try:
                await compact(self.store, self.recovery.journal, minimum_bytes=self.config.checkpoint_min_bytes)
            except Exception:
                log.exception("compaction failed")

    async def close(self, settle: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self.recovery is not None:
            journal = self.recovery.journal
            if journal.failed is None and journal.stalled is None:
                await checkpoint_all(self.store, journal)  # type: ignore[arg-type]
            await journal.close()
        if self.lock is not None:
            self.lock.release()


class RedisBackend(Backend):
    # Retention in Redis scans every account's orders: less often than in memory.
    retention_every = 10
    out_of_reach = (Unavailable, *UNREACHABLE)

    def __init__(self, config: Any) -> None:
        self.config = config
        if config.data_dir is not None:
            raise ValueError("a data directory journals the memory store only; Redis keeps its own data")
        if not is_redis_url(config.store):
            raise ValueError(
                f"--store: {config.store!r} is neither 'memory' nor a Redis URL "
                "(redis://host:port/db, or redis+cluster://host:port,host:port for a Redis Cluster)"
            )
        if config.redis_wait_replicas < 0:
            raise ValueError("--redis-wait-replicas: a number of replicas, 0 or more")
        if config.redis_wait_timeout <= 0:
            raise ValueError("--redis-wait-timeout: seconds, more than 0")
        self.redis = RedisStore.from_url(
            config.store,
            prefix=config.redis_prefix,
            retention=config.retention,
            wait_replicas=config.redis_wait_replicas,
            wait_timeout=config.redis_wait_timeout,
        )
        self.store = self.redis
        # Events come from the shared stream, with its ids, whichever master caused them.
        self.bus = EventBus(shared=True, history=config.event_history, history_bytes=config.event_history_bytes)
        self.feed = RedisEventFeed(self.redis.redis, self.redis.events_key, self.bus)
        self.commands = RedisCommandBook(self.redis, ttl=config.command_ttl)
        self.book = self.commands
        master_id = config.master_id or f"{socket.gethostname()}:{os.getpid()}:{config.listen}"
        self.shared_leases = SharedLeases(self.redis.redis, config.redis_prefix, master_id, config.sync.lease_duration)
        self._stopped = asyncio.Event()

    def shared_limiter(self, local: RateLimiter) -> SharedLimiter | None:
        return SharedRateLimiter(self.redis.redis, self.config.redis_prefix, local)

    def shared_seats(self) -> SharedSeats | None:
        return SharedStreamSeats(self.redis.redis, self.config.redis_prefix)

    async def open(self, listen: str, health: Health, failed: asyncio.Event) -> None:
        try:
            self.persistence = await self.redis.check_persistence()
            if self.redis.replication is not None:
                self.persistence += "; " + await self.redis.replication.describe()
            await self.feed.prime()
        except FAILURES as error:
            raise OSError(f"cannot reach Redis at {self.config.store}: {error}") from error

    def background(self, health: Health, renew_leases: Callable[[], Task]) -> list[Task]:
        return [self.feed.follow(), self.commands.follow(), renew_leases(), self._watch(health)]

    def stopping(self) -> None:
        self.feed.stopping.set()
        self.commands.stopping.set()
        self._stopped.set()

    async def _watch(self, health: Health) -> None:
        """Not serving while Redis does not answer; serving again once it does (until the
        master stops: a cancellation alone may be lost in the ping's own timeout)."""
        while not self._stopped.is_set():
            try:
                async with asyncio.timeout(1.0):
                    await self.redis.redis.ping()
                health.set_reason("redis", None)
            except FAILURES as error:  # (TimeoutError, the ping's own, is an OSError)
                reraise_cancellation()
                health.set_reason("redis", f"Redis does not answer ({type(error).__name__})")
            await asyncio.sleep(0.5)

    async def sweep(self, count: int) -> None:
        if count % 5 == 0:
            # A master that died could not say its workers went away, nor announce what it
            # committed last.
            await self.redis.show_orphans_offline()
            await self.redis.flush_outboxes()

    async def close(self, settle: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await settle()
        except TimeoutError:
            log.warning("streams still ending after 5 s; closing the Redis connections anyway")
        await self.redis.close()


def open_backend(config: Any, store: Store | None = None) -> Backend:
    """The backend `config.store` names: "memory" or a Redis URL."""
    if config.shared:
        return RedisBackend(config)
    return MemoryBackend(config, store)
