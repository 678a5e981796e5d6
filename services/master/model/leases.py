"""One live owner per account: leases with fencing epochs.

A worker's stream claims its accounts in Hello. A claim succeeds when the account is free,
its lease has lapsed (no message from the owner for a lease duration), or the claimant is
the same worker reconnecting. Each grant gets a larger epoch; the session holding an older
epoch is fenced: whatever it sends for the account afterwards is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from imsync.v1 import fleet_pb2 as fl


@dataclass
class Lease:
    account_id: str
    worker_id: str
    session_id: int
    epoch: int
    expires_at: float  # on the leases' clock


class AccountOwned(Exception):
    def __init__(self, lease: Lease, remaining: float) -> None:
        super().__init__(
            f"account {lease.account_id!r} is owned by worker {lease.worker_id!r} for {remaining:.1f} s more "
            "unless its heartbeats stop"
        )
        self.lease = lease
        self.remaining = remaining


class Leases:
    def __init__(self, duration: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.duration = duration
        self._clock = clock
        self._leases: dict[str, Lease] = {}
        self._epochs: dict[str, int] = {}

    def claim(self, account_id: str, worker_id: str, session_id: int) -> Lease:
        """Grants the account to this session, or raises AccountOwned."""
        now = self._clock()
        current = self._leases.get(account_id)
        # The stream's own live lease is renewed; one that lapsed is granted anew, to its
        # stream too, with a new epoch (what the worker names when it lets a grant go).
        if current is not None and current.session_id == session_id and current.expires_at > now:
            current.expires_at = now + self.duration
            return current
        if current is not None and current.worker_id != worker_id and current.expires_at > now:
            raise AccountOwned(current, current.expires_at - now)
        epoch = self._epochs.get(account_id, 0) + 1
        self._epochs[account_id] = epoch
        lease = Lease(account_id, worker_id, session_id, epoch, now + self.duration)
        self._leases[account_id] = lease
        return lease

    def holder(self, account_id: str) -> Lease | None:
        """The live lease of an account, if any."""
        lease = self._leases.get(account_id)
        if lease is None or lease.expires_at <= self._clock():
            return None
        return lease

    def holds(self, account_id: str, session_id: int) -> bool:
        lease = self.holder(account_id)
        return lease is not None and lease.session_id == session_id

    def renew(self, session_id: int, account_ids: set[str]) -> None:
        """A message from the session: its live leases last a duration from now."""
        deadline = self._clock() + self.duration
        for account_id in account_ids:
            lease = self._leases.get(account_id)
            if lease is not None and lease.session_id == session_id and lease.expires_at > self._clock():
                lease.expires_at = deadline

    def release(self, session_id: int, account_ids: set[str]) -> list[str]:
        """The session let these accounts go (Released, or taken from it): they are free at
        once. Returns the accounts released."""
        released = []
        for account_id in account_ids:
            lease = self._leases.get(account_id)
            if lease is not None and lease.session_id == session_id:
                del self._leases[account_id]
                released.append(account_id)
        return released

    def remaining(self, lease: Lease) -> float:
        return max(0.0, lease.expires_at - self._clock())


class SharedLeaseBook(Protocol):
    """Leases between masters sharing one store (the Redis backend's SharedLeases): a
    worker's claim of an account holds across masters, with its fencing epoch."""

    async def claim(self, account_id: str, worker_id: str, session_id: int) -> int: ...

    async def renew(self, held: dict[str, int]) -> list[str]: ...

    async def release(self, held: dict[str, int]) -> None: ...

    async def alive(self, account_ids: list[str]) -> dict[str, bool]:
        """Whether some master holds each account's lease."""
        ...

    async def owners(self, account_ids: list[str]) -> dict[str, str]:
        """The worker holding each account's lease, of those some master holds."""
        ...

    @property
    def master_id(self) -> str: ...

    async def announce_workers(self, workers: list[fl.FleetWorker]) -> None:
        """This master's scheduled workers now, for the other masters' lists."""
        ...

    async def fleet_workers(self) -> list[fl.FleetWorker]:
        """Every master's scheduled workers, as each last announced them (a master that
        stopped announcing drops out after a lease)."""
        ...
