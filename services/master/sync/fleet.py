"""Scheduling: the managed accounts (model/fleet.py) given to the workers that joined to
take them, over their SyncData streams.

A worker joins with a capacity and labels in Hello. Once a second the master's scheduler:

- asks back (Release) what a worker holds that is removed, paused, or no longer matches
  its labels; the worker stops crawling it, uploads its session and says Released, and
  only then is the lease free: no second worker crawls the account meanwhile;
- gives each account that no worker holds (new, resumed, or whose worker's lease lapsed:
  its stream ended, or it fell silent) to the eligible worker with the most room for its
  capacity (Assign: the lease, the version the master has, and the kept session, so the
  worker resumes without a login when the platform still accepts it);
- when nothing waits, moves accounts from the most loaded workers to the least (by load
  over capacity) while a move brings both nearer their share, at most one in fifty of the
  accounts a round: a worker that joins takes its share gradually.

The leases (leases.py, and between masters SharedLeases) keep one owner per account
whatever the schedulers do: over Redis each master schedules the workers connected to it,
and two masters offering one account race for its lease, one wins.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import TYPE_CHECKING

from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import sync_pb2
from services.common.logs import Throttle
from services.master.model import fleet
from services.master.model.errors import FailedPrecondition, InvalidArgument, NotFound, StoreError
from services.master.model.leases import AccountOwned
from services.master.model.metrics import FLEET_ASSIGNMENTS, FLEET_RELEASES, FLEET_WAITING, WORKER_ONLINE

if TYPE_CHECKING:
    from services.master.sync.hub import SyncHub
    from services.master.sync.session import SyncSession

log = logging.getLogger(__name__)

MAX_CAPACITY = 10_000


def offer(hello: sync_pb2.Hello) -> tuple[int, dict[str, str], int]:
    """The capacity, labels and concurrent crawls a worker offers, checked."""
    if not 0 < hello.capacity <= MAX_CAPACITY:
        raise InvalidArgument(f"1 to {MAX_CAPACITY} accounts", field="hello.capacity")
    if hello.max_concurrent_crawls > MAX_CAPACITY:
        raise InvalidArgument(f"at most {MAX_CAPACITY}", field="hello.max_concurrent_crawls")
    if len(hello.labels) > fleet.MAX_LABELS:
        raise InvalidArgument(f"at most {fleet.MAX_LABELS} labels", field="hello.labels")
    for name, value in hello.labels.items():
        if not (0 < len(name) <= 63 and 0 < len(value) <= 63):
            raise InvalidArgument("names and values of 1 to 63 characters", field="hello.labels")
    return hello.capacity, dict(hello.labels), hello.max_concurrent_crawls


async def keep_session(session: SyncSession, upload: sync_pb2.SessionUpload) -> None:
    """A worker's upload of an account's session (it holds the account): sealed and kept."""
    hub = session.hub
    if hub.session_keys is None:
        raise FailedPrecondition(
            "this master keeps no sessions (it runs without --session-keys): the account logs in again where it moves",
            field="session",
            reason="NO_SESSION_KEYS",
        )
    if len(upload.storage_state) > fleet.MAX_SESSION_BYTES:
        raise InvalidArgument(f"at most {fleet.MAX_SESSION_BYTES} bytes", field="session.storage_state")
    sealed = hub.session_keys.seal(upload.account_id, upload.storage_state)
    await hub.store.save_session_state(upload.account_id, sealed)


async def released(session: SyncSession, account_id: str, lease_epoch: int = 0) -> None:
    """The worker stopped running an account: its lease is free (and the account goes to
    another worker on the scheduler's next round). `lease_epoch`: of the grant it let go
    (0: the one held now)."""
    if not account_id:
        raise InvalidArgument("must not be empty", field="released.account_id")
    hub = session.hub
    if session.lapsed.pop(account_id, None) is not None and account_id not in session.granted:
        return  # the answer to the Release of a lease that lapsed: nothing was held
    held = session.granted.get(account_id)
    if lease_epoch and held is not None and held != lease_epoch:
        # About a grant gone before: the answer to a lapsed lease's Release that came after
        # the account was given to this stream again. The worker runs the new grant.
        log.info("worker %s released an earlier grant of account %s; it holds it still", session.worker_id, account_id)
        return
    reason = session.releasing.pop(account_id, "released")
    epoch = session.granted.pop(account_id, None)
    if epoch is None:
        return
    session.drop_pending(account_id)
    hub.leases.release(session.id, {account_id})
    if hub.shared is not None:
        await hub.shared.release({account_id: epoch})
    # Paused or removed, it is meant to run nowhere: on no worker, and not an account
    # without its worker (ImsyncWorkerOffline). Otherwise the worker that had it stays
    # named (offline) until another takes it: where to look when it is not run again.
    nowhere = reason in ("paused", "removed")
    await hub.store.set_presence(account_id, "" if nowhere else session.worker_id, online=False)
    if nowhere:
        with contextlib.suppress(KeyError):
            WORKER_ONLINE.remove(account_id)
        await hub.store.announce(fleet.assignment_event(account_id, "", session.worker_id, reason))
    else:
        WORKER_ONLINE.labels(account=account_id).set(0)
        hub.previous[account_id] = (session.worker_id, reason)
    log.info("worker %s released account %s (%s)", session.worker_id, account_id, reason)


async def goodbye(session: SyncSession) -> None:
    """The worker stops and runs none of this stream's accounts: each lease it still holds
    is freed at once (an account assigned as the worker stopped, whose Assign it never
    read), and the stream ends behind the answers already queued."""
    session.stopping = True
    for account_id in list(session.granted):
        await released(session, account_id)
    log.info("worker %s said goodbye", session.worker_id)
    session.end()


async def _last_worker(hub: SyncHub, account_id: str) -> tuple[str, str]:
    """The worker an account ran on last, and why it runs elsewhere now, when this master
    did not see it leave (another master's worker had it, or it started since): the worker
    its presence still names (a released account's stays named until another takes it),
    "reassigned"; none named, "new". The memory store keeps no presence across a restart:
    there, an account moved after one is "new"."""
    try:
        last = (await hub.store.get_presence(account_id)).worker_id
    except NotFound:  # never heard of but in the fleet
        last = ""
    return (last, "reassigned") if last else ("", "new")


def _load(session: SyncSession) -> float:
    return len(session.granted) / session.capacity


class Scheduler:
    def __init__(self, hub: SyncHub) -> None:
        self.hub = hub
        # The accounts that wait for room are said in the log once a minute at most.
        self._waiting = Throttle(60)
        # Nothing is placed before then (wait_for_returning_workers).
        self._placing_from = -math.inf

    def wait_for_returning_workers(self) -> None:
        """This master starts from an earlier run's journal, whose leases were in memory:
        the workers that ran its accounts may run them still, and take them back as they
        reconnect (or stop them by themselves within a lease). Nothing is placed or moved
        for a lease, so no account goes to a second worker meanwhile."""
        self._placing_from = self.hub.clock() + self.hub.config.lease_duration

    def workers(self) -> list[SyncSession]:
        """The streams that take scheduled accounts and were heard from within a lease (a
        worker gone silent, its connection still open, loses its leases and is given
        nothing more until it speaks again), of workers not stopping."""
        heard_since = self.hub.clock() - self.hub.config.lease_duration
        return [
            s
            for s in self.hub.sessions.values()
            if s.capacity and s.said_hello and not s.closing and not s.stopping and s.heard_at > heard_since
        ]

    async def round(self) -> None:
        """One round of scheduling (the master runs one a second)."""
        hub = self.hub
        workers = self.workers()
        accounts = {a.account_id: a for a in await hub.store.list_managed_accounts()}
        for session in workers:
            for account_id in list(session.granted):
                if account_id in session.releasing:
                    continue
                account = accounts.get(account_id)
                if account is None:
                    self.ask_back(session, account_id, "removed")
                elif account.paused:
                    self.ask_back(session, account_id, "paused")
                elif not fleet.eligible(account, session.labels):
                    self.ask_back(session, account_id, "labels")
        if self.hub.clock() < self._placing_from:
            return
        waiting = [a for a in accounts.values() if not a.paused and hub.leases.holder(a.account_id) is None]
        if waiting and hub.shared is not None:
            alive = await hub.shared.alive([a.account_id for a in waiting])
            waiting = [a for a in waiting if not alive[a.account_id]]
        unplaced = [a.account_id for a in waiting if not await self.place(a, workers)]
        FLEET_WAITING.set(len(unplaced))
        if unplaced and self._waiting.due():
            log.warning(
                "%d accounts wait for a worker with room and the labels they ask for: %s",
                len(unplaced),
                ", ".join(unplaced[:10]) + (" ..." if len(unplaced) > 10 else ""),
            )
        if not waiting:
            self.rebalance(workers, accounts)
        if hub.shared is not None:
            # For the workers lists of the other masters.
            await hub.shared.announce_workers([worker_of(s) for s in workers])

    async def place(self, account: fl.ManagedAccount, workers: list[SyncSession]) -> bool:
        """Gives the account to the eligible worker with the most room; False when none has
        any (True too when another master's worker took it meanwhile: it waits for nobody)."""
        hub = self.hub
        candidates = [
            s
            for s in workers
            if len(s.granted) < s.capacity
            and not s.owes_released(account.account_id)
            and fleet.eligible(account, s.labels)
            and hub.tokens.may_sync(s.worker_id, account.account_id)
        ]
        if not candidates:
            return False
        # Of workers equally full, the one with the most concurrent crawls per account.
        session = min(candidates, key=lambda s: (_load(s), _per_crawl(s), len(s.granted), s.worker_id, s.id))
        try:
            epoch = await session.take(account.account_id)
        except AccountOwned:
            return True  # another master's worker took it meanwhile
        seen = hub.previous.pop(account.account_id, None)
        previous, reason = seen if seen is not None else await _last_worker(hub, account.account_id)
        version = (await hub.store.account_versions([account.account_id])).get(account.account_id, 0)
        session.versions[account.account_id] = version
        state = await self.session_of(account.account_id)
        session.send(
            sync_pb2.SyncDataResponse(
                assign=sync_pb2.Assign(
                    account=account,
                    version=sync_pb2.AccountVersion(account_id=account.account_id, version=version, lease_epoch=epoch),
                    storage_state=state,
                )
            )
        )
        await hub.store.set_presence(account.account_id, session.worker_id, online=True)
        WORKER_ONLINE.labels(account=account.account_id).set(1)
        await hub.store.announce(fleet.assignment_event(account.account_id, session.worker_id, previous, reason))
        FLEET_ASSIGNMENTS.labels(reason=reason).inc()
        log.info(
            "account %s assigned to worker %s (%s%s)",
            account.account_id,
            session.worker_id,
            reason,
            f", from {previous}" if previous else "",
        )
        await hub.deliver(account.account_id)
        return True

    async def session_of(self, account_id: str) -> bytes:
        """The account's kept session, opened; b"" when none is kept or it does not open
        (it counts as logged out: the worker logs in). One sealed by an older key of the
        ring is sealed again with the newest."""
        keys = self.hub.session_keys
        if keys is None:
            return b""
        try:
            sealed = await self.hub.store.session_state(account_id)
        except StoreError as error:
            log.warning("could not read the session of account %s: %s", account_id, error)
            return b""
        if sealed is None:
            return b""
        state = keys.open(account_id, sealed)
        if state is None:
            log.warning(
                "the kept session of account %s does not open with this master's keys; it logs in again", account_id
            )
            return b""
        if not keys.is_current(sealed):
            try:
                await self.hub.store.save_session_state(account_id, keys.seal(account_id, state))
            except StoreError as error:
                log.warning("could not seal the session of account %s again: %s", account_id, error)
        return state

    def ask_back(self, session: SyncSession, account_id: str, reason: str) -> None:
        session.releasing[account_id] = reason
        session.send(sync_pb2.SyncDataResponse(release=sync_pb2.Release(account_id=account_id, reason=reason)))
        FLEET_RELEASES.labels(reason=reason).inc()
        log.info("asked worker %s to release account %s (%s)", session.worker_id, account_id, reason)

    def rebalance(self, workers: list[SyncSession], accounts: dict[str, fl.ManagedAccount]) -> None:
        """Asks back accounts of the most loaded workers for the least loaded, as long as a
        move leaves both nearer their share (never swapping who is over): at most one in
        fifty of the accounts a round, so a joining worker takes its share gradually and
        what moves is crawled again without a storm; never while a move is under way."""
        if len(workers) < 2 or any(s.releasing for s in workers):
            return
        load = {s.id: len(s.granted) for s in workers}
        budget = max(1, len(accounts) // 50)
        asked: set[str] = set()
        while budget > 0:
            busiest = max(workers, key=lambda s: (load[s.id] / s.capacity, s.worker_id))
            candidates = [s for s in workers if s is not busiest and load[s.id] < s.capacity]
            if not candidates:
                return
            idlest = min(candidates, key=lambda s: (load[s.id] / s.capacity, s.worker_id))
            if (load[busiest.id] - 1) / busiest.capacity < (load[idlest.id] + 1) / idlest.capacity:
                return
            movable = [
                a
                for a in busiest.granted
                if a in accounts
                and a not in asked
                and fleet.eligible(accounts[a], idlest.labels)
                and self.hub.tokens.may_sync(idlest.worker_id, a)
            ]
            if not movable:
                return
            account_id = max(movable)
            asked.add(account_id)
            self.ask_back(busiest, account_id, "rebalance")
            load[busiest.id] -= 1
            load[idlest.id] += 1
            budget -= 1


def _per_crawl(session: SyncSession) -> float:
    """The accounts a worker holds per crawl it runs at once (one, when it did not say)."""
    return len(session.granted) / (session.crawls or 1)


def worker_of(session: SyncSession) -> fl.FleetWorker:
    shared = session.hub.shared
    worker = fl.FleetWorker(
        worker_id=session.worker_id,
        master_id=shared.master_id if shared is not None else "",
        capacity=session.capacity,
        max_concurrent_crawls=session.crawls,
        labels=session.labels,
        account_ids=sorted(session.granted),
        peer=session.peer,
    )
    worker.connect_time.FromNanoseconds(session.connected_at)
    return worker
