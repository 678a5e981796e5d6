"""The sync service's hub: what every SyncData stream of this master shares (the store,
the worker tokens, the command book, the leases of accounts to streams, between masters
too) and the pieces of a stream's outbound queue. service.py says how a stream goes."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.protobuf.duration_pb2 import Duration

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.awake import AwakeClock
from services.master.auth.session_keys import SessionKeys
from services.master.auth.worker_tokens import WorkerTokens
from services.master.model.commands import Commands
from services.master.model.errors import (
    StoreError,
)
from services.master.model.intake import Intake
from services.master.model.leases import Leases, SharedLeaseBook
from services.master.model.metrics import (
    CRAWL_STATE,
    CRAWL_STATES,
    LOGIN_STATE,
    LOGIN_STATES,
    WORKER_ONLINE,
    set_one_hot,
)
from services.master.model.store import Store
from services.master.rpc.status import rpc_status_of
from services.master.sync.fleet import Scheduler

if TYPE_CHECKING:
    from services.master.sync.session import SyncSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncConfig:
    heartbeat_interval: float = 5.0
    lease_duration: float = 15.0
    # The protocol's bound on one message; the transport takes more, so that a message
    # over it is refused with a Nack instead of breaking the stream.
    max_message_bytes: int = 4 * 1024 * 1024
    # Bound on the entities of one snapshot held while its chunks arrive.
    max_snapshot_entities: int = 5_000_000
    # Bounds on the bytes of snapshots held while their chunks arrive: per stream, and per
    # worker over all its streams.
    max_pending_bytes: int = 256 * 1024 * 1024
    max_pending_bytes_per_worker: int = 512 * 1024 * 1024
    # Accounts one Hello may name, and accounts the master holds in all (a worker's Hello
    # naming an account it does not know yet makes one, up to this bound).
    max_hello_accounts: int = 1000
    max_accounts: int = 10_000
    # A version further than this past the one applied is refused (a wedged account).
    max_version_jump: int = 1_000_000
    outbound_queue: int = 10_000


@dataclass
class _PendingSnapshot:
    version: int
    next_chunk: int
    collections: frozenset[sync_pb2.Collection.ValueType]
    # The chunks' entities, checked and read as each chunk came.
    intake: Intake
    # The chunks' batches as they came, for the journal (a copy into one costs as much as their parse).
    batches: list[sync_pb2.EntityBatch] = field(default_factory=list)
    size: int = 0
    # The bytes of its chunks so far (what the pending snapshot holds).
    bytes: int = 0


def _entity_count(batch: sync_pb2.EntityBatch) -> int:
    return (
        len(batch.contents)
        + len(batch.comments)
        + len(batch.conversations)
        + len(batch.messages)
        + len(batch.notifications)
    )


def _nack(account_id: str, version: int, error: StoreError) -> sync_pb2.SyncDataResponse:
    return sync_pb2.SyncDataResponse(
        nack=sync_pb2.Nack(account_id=account_id, version=version, status=rpc_status_of(error))
    )


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


class _End:
    """Put on an outbound queue when the worker's side of the stream is over."""


@dataclass(frozen=True)
class _WhenPersisted:
    """A response that leaves only once the change it answers is durable (and known to
    every gateway keeping answers)."""

    persisted: Awaitable[object]
    response: sync_pb2.SyncDataResponse
    # When the message it answers was taken (perf_counter), for the Ack's latency.
    taken_at: float = 0.0


_Outbound = sync_pb2.SyncDataResponse | _WhenPersisted | StoreError | _End


class SyncHub:
    """What all streams share: the store, the leases, the commands and the live sessions."""

    def __init__(
        self,
        store: Store,
        tokens: WorkerTokens,
        book: Commands,
        config: SyncConfig = SyncConfig(),
        shared: SharedLeaseBook | None = None,
        session_keys: SessionKeys | None = None,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.book = book
        self.config = config
        # Silence is measured on the time the master was awake: a pause of its own is not
        # the workers' silence (services/common/awake.py). Master.start runs it.
        self.clock = AwakeClock()
        self.leases = Leases(config.lease_duration, self.clock)
        # Leases between masters (several masters over Redis); None for a master alone.
        self.shared = shared
        # The keys workers' uploaded sessions are sealed with; None: none are kept.
        self.session_keys = session_keys
        # Account -> (the worker that last held it, why it went), for the event of its
        # next assignment (fleet.py).
        self.previous: dict[str, tuple[str, str]] = {}
        self.scheduler = Scheduler(self)
        self.sessions: dict[int, SyncSession] = {}
        # Worker id -> bytes of the snapshots its streams hold while their chunks arrive.
        self.pending_bytes: Counter[str] = Counter()
        # Set when the master stops: no new streams, no new messages taken.
        self.draining = False
        # Tasks of their own: command deliveries and the ends of streams.
        self._tasks: set[asyncio.Task[None]] = set()
        # Streams whose end is being recorded in the store.
        self._ending = 0
        book.on_pending = self.wake

    def drain(self, reconnect_after: float) -> None:
        """Ends every stream after what it already took is answered, with a GoAway."""
        self.draining = True
        for session in list(self.sessions.values()):
            session.go_away(reconnect_after)

    def wake(self, account_id: str) -> None:
        """An account has a new command: delivers it soon, if a stream here owns the account."""
        if self.leases.holder(account_id) is None:
            return
        task = asyncio.get_running_loop().create_task(self.deliver(account_id))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("a task of the sync hub failed: %s", error)

    async def deliver(self, account_id: str) -> None:
        """Sends the account's waiting commands to the stream owning it, if one does."""
        lease = self.leases.holder(account_id)
        session = self.sessions.get(lease.session_id) if lease is not None else None
        if session is None:
            return
        for command in await self.book.deliverable(account_id, session.id):
            session.send(sync_pb2.SyncDataResponse(command=command))

    async def sweep(self) -> None:
        """Expires commands and takes away lapsed leases; run about once a second."""
        await self.book.expire()
        for session in list(self.sessions.values()):
            for account_id in [a for a in session.granted if not self.leases.holds(a, session.id)]:
                epoch = session.granted.pop(account_id)
                if self.shared is not None:
                    await self.shared.release({account_id: epoch})
                if self.leases.holder(account_id) is None:
                    WORKER_ONLINE.labels(account=account_id).set(0)
                    await self.store.set_presence(account_id, session.worker_id, online=False)
                    self.previous[account_id] = (session.worker_id, "lease_lapsed")
                session.releasing.pop(account_id, None)
                log.warning("worker %s lost account %s: its lease lapsed", session.worker_id, account_id)
                if session.capacity and self.sessions.get(session.id) is session:
                    # Its stream is open, but nothing came through it for a lease (the
                    # worker froze; or only this way is cut): it stops the account now,
                    # not when its next message is refused. It answers Released.
                    release = sync_pb2.Release(account_id=account_id, reason="its lease lapsed")
                    session.send(sync_pb2.SyncDataResponse(release=release))
                    session.lapsed[account_id] = self.clock()

    async def renew_shared(self) -> None:
        """Renews the leases between masters of the accounts this master's streams hold;
        an account whose lease another master took is taken from its stream here."""
        if self.shared is None:
            return
        for session in list(self.sessions.values()):
            live = {a: epoch for a, epoch in session.granted.items() if self.leases.holds(a, session.id)}
            for account_id in await self.shared.renew(live):
                if session.granted.get(account_id) == live[account_id]:
                    del session.granted[account_id]
                    self.leases.release(session.id, {account_id})
                    log.warning("worker %s lost account %s: another master holds it now", session.worker_id, account_id)

    def end_soon(self, session: SyncSession) -> asyncio.Task[None]:
        """Ends a stream in a task of its own, which a cancellation of the caller does not stop."""
        task = asyncio.get_running_loop().create_task(self.end(session))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def end(self, session: SyncSession) -> None:
        self.sessions.pop(session.id, None)
        for account_id in list(session._pending):
            session.drop_pending(account_id)
        held = dict(session.granted)
        session.granted.clear()
        # Its leases are not freed: they lapse a lease after the worker was last heard from
        # (a worker lets an account go by saying Released). The worker may run its accounts
        # still (a killed worker's browser outlives it by a moment; a cut network stops
        # nothing) and stops them by itself once it cannot renew them; the same worker
        # reconnecting takes them back at once. Another worker gets them only then: never
        # two on one account.
        for account_id in held:
            self.previous[account_id] = (session.worker_id, "worker_left")
        self._ending += 1
        try:
            for account_id in held:
                WORKER_ONLINE.labels(account=account_id).set(0)
                await self.store.set_presence(account_id, session.worker_id, online=False)
        except (StoreError, OSError) as error:
            # The store is out of reach: the leases between masters lapse by themselves.
            log.warning("could not release the accounts of worker %s: %s", session.worker_id, error)
        finally:
            self._ending -= 1

    async def settle(self, timeout: float = 5.0) -> None:
        """Waits until every stream's end is recorded and no delivery runs (the master stops)."""
        async with asyncio.timeout(timeout):
            while self.sessions or self._ending or self._tasks:
                await asyncio.sleep(0.01)


Received = tuple[sync_pb2.SyncDataRequest, bytes]

# Where a snapshot's entities are in a SyncDataRequest's bytes: its field numbers.
ENTITIES_PATH = (
    sync_pb2.SyncDataRequest.DESCRIPTOR.fields_by_name["snapshot"].number,
    sync_pb2.Snapshot.DESCRIPTOR.fields_by_name["entities"].number,
)


def _count_status(report: sync_pb2.AccountStatusReport) -> None:
    """An account's crawl and login state, as gauges (metrics.py)."""
    account = report.account_id
    crawl = e.CrawlState.Name(report.crawl_state).removeprefix("CRAWL_STATE_").lower()
    login = e.LoginState.Name(report.login_state).removeprefix("LOGIN_STATE_").lower()
    set_one_hot(CRAWL_STATE, account, CRAWL_STATES, crawl)
    set_one_hot(LOGIN_STATE, account, LOGIN_STATES, login)


def _subject(request: sync_pb2.SyncDataRequest) -> tuple[str, int]:
    """The account and version a message is about, for its Nack."""
    kind = request.WhichOneof("kind")
    if kind == "snapshot":
        return request.snapshot.account_id, request.snapshot.version
    if kind == "delta":
        return request.delta.account_id, request.delta.version
    if kind == "account_status":
        return request.account_status.account_id, 0
    if kind == "command_result":
        return request.command_result.account_id, 0
    if kind == "session":
        return request.session.account_id, 0
    return "", 0
