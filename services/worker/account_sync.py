"""The sync bookkeeping of one account on the worker: which version the master has, what
is in flight, and what to send next.

The worker sends a delta from the last view it sent to the newest crawl, or a snapshot when
the master's version is not one it knows. At most `window` versions are unacknowledged;
past that, new crawls wait and are coalesced into the next delta instead of queueing.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from google.rpc import error_details_pb2, status_pb2

from imsync.v1 import sync_pb2
from imsync_client.sync import split_batch
from services.common.rpc_errors import reason_of

from .account_state import EMPTY, AccountView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Sent:
    version: int
    view: AccountView
    generation: int


class AccountSync:
    def __init__(self, account_id: str, *, window: int, chunk_bytes: int) -> None:
        self.account_id = account_id
        self.window = window
        self.chunk_bytes = chunk_bytes
        self.granted = False
        # The fencing epoch of the master's last grant of it (0 before any), which the
        # worker names when it lets the account go.
        self.lease_epoch = 0
        # The newest crawl, and a counter of crawls.
        self.current: AccountView | None = None
        self.generation = 0
        # What the master acknowledged.
        self.confirmed: AccountView | None = None
        self.confirmed_version = 0
        self.confirmed_generation = -1
        self.inflight: deque[_Sent] = deque()
        self.last_version = 0
        self.needs_snapshot = True
        # A crawl the master refused as invalid is not sent again; the next crawl is.
        self.blocked_generation = -1

    @property
    def synced(self) -> bool:
        """The master this worker is connected to holds the newest crawl (as it said on
        this stream: a master that restarted has to say so again)."""
        return self.granted and self.current is not None and self.confirmed_generation == self.generation

    def publish(self, view: AccountView) -> None:
        self.current = view
        self.generation += 1

    # ------------------------------------------------------------ from master

    def on_welcome(self, master_version: int, lease_epoch: int = 0) -> None:
        """The master holds `master_version` (and granted the account at `lease_epoch`):
        resume from it, or snapshot if it is unknown."""
        self.granted = True
        self.lease_epoch = lease_epoch or self.lease_epoch
        self.last_version = max(self.last_version, master_version)
        sent = next((s for s in self.inflight if s.version == master_version), None)
        if sent is not None:  # applied, but the Ack was lost with the stream
            self._confirm(sent)
        elif self.confirmed is None or self.confirmed_version != master_version or master_version == 0:
            self.confirmed, self.confirmed_version, self.confirmed_generation = None, master_version, -1
            self.needs_snapshot = True
        self.inflight.clear()

    def on_ack(self, version: int) -> None:
        while self.inflight and self.inflight[0].version <= version:
            sent = self.inflight.popleft()
            if sent.version == version:
                self._confirm(sent)

    def _confirm(self, sent: _Sent) -> None:
        self.confirmed, self.confirmed_version, self.confirmed_generation = sent.view, sent.version, sent.generation

    def on_nack(self, nack: sync_pb2.Nack) -> str:
        """Returns the refusal's reason; what is in flight is dropped and a snapshot follows."""
        sent = next((s for s in self.inflight if s.version == nack.version), None)
        if sent is None:
            return ""  # about a version already given up
        reason = reason_of(nack.status)
        self.inflight.clear()
        self.needs_snapshot = True
        if reason == "NOT_OWNER":
            self.granted = False
        elif reason in ("BASE_VERSION_MISMATCH", "STALE_VERSION"):
            self.last_version = max(self.last_version, _applied_version(nack.status) or 0)
        else:
            # The master will not take this data; sending it again would loop.
            self.blocked_generation = sent.generation
            log.error("master refused version %d of %s: %s", nack.version, self.account_id, nack.status.message)
        return reason

    # -------------------------------------------------------------- to master

    def next_messages(self) -> list[sync_pb2.SyncDataRequest]:
        """What to send now, or nothing (not granted, nothing new, window full)."""
        if not self.granted or self.current is None or self.generation == self.blocked_generation:
            return []
        if len(self.inflight) >= self.window:
            return []  # coalesce: the next delta will carry every crawl until then
        if self.needs_snapshot:
            return self._snapshot()
        last = self.inflight[-1] if self.inflight else None
        if (last.generation if last else self.confirmed_generation) == self.generation:
            return []
        base_view = last.view if last else (self.confirmed or EMPTY)
        base_version = last.version if last else self.confirmed_version
        account, upserts, removals = base_view.diff(self.current)
        if account is None and not upserts.ListFields() and not removals.ListFields():
            # Nothing changed: the newest crawl is what was already sent.
            if last is None:
                self.confirmed_generation = self.generation
            else:
                self.inflight[-1] = _Sent(last.version, last.view, self.generation)
            return []
        version = self.last_version + 1
        delta = sync_pb2.Delta(
            account_id=self.account_id,
            base_version=base_version,
            version=version,
            account=account,
            upserts=upserts,
            removals=removals,
        )
        if delta.ByteSize() > self.chunk_bytes:
            return self._snapshot()
        self._sent(version)
        return [sync_pb2.SyncDataRequest(delta=delta)]

    def _snapshot(self) -> list[sync_pb2.SyncDataRequest]:
        assert self.current is not None
        version = self.last_version + 1
        chunks = list(split_batch(self.current.to_batch(), self.chunk_bytes))
        self.needs_snapshot = False
        self._sent(version)
        return [
            sync_pb2.SyncDataRequest(
                snapshot=sync_pb2.Snapshot(
                    account_id=self.account_id,
                    version=version,
                    chunk_index=index,
                    last=index == len(chunks) - 1,
                    account=self.current.account if index == len(chunks) - 1 else None,
                    entities=chunk,
                )
            )
            for index, chunk in enumerate(chunks)
        ]

    def _sent(self, version: int) -> None:
        assert self.current is not None
        self.last_version = version
        self.inflight.append(_Sent(version, self.current, self.generation))


def _applied_version(status: status_pb2.Status) -> int | None:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and "applied_version" in info.metadata:
            return int(info.metadata["applied_version"])
    return None
