"""One SyncData stream of one worker: its Hello, the accounts it claimed, its snapshots
(chunks taken in as they arrive, applied with the last), deltas, status reports and
command results; each answered in order through its one outbound queue."""

from __future__ import annotations

import asyncio
import itertools
import time

from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.rpc_errors import error_status
from services.common.series import series
from services.master.model import collector
from services.master.model.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    StoreError,
    Unauthenticated,
    Unavailable,
)
from services.master.model.intake import Intake, clean_batch
from services.master.model.leases import AccountOwned
from services.master.model.metrics import (
    DELTAS_APPLIED,
    SNAPSHOTS_APPLIED,
    SYNC_ACK_SECONDS,
    SYNC_BYTES,
    SYNC_ENTITIES,
    SYNC_VERSIONS,
    WORKER_ONLINE,
)
from services.master.model.store import DeltaData, SnapshotData
from services.master.model.validation import check_status, clean_account, clean_removals
from services.master.sync import fleet
from services.master.sync.hub import (
    ENTITIES_PATH,
    SyncHub,
    _count_status,
    _duration,
    _End,
    _entity_count,
    _nack,
    _Outbound,
    _PendingSnapshot,
    _subject,
    _WhenPersisted,
    log,
)


class SyncSession:
    """One worker's stream."""

    _ids = itertools.count(1)

    def __init__(self, hub: SyncHub, worker_id: str, peer: str, token_hash: str = "") -> None:
        self.id = next(self._ids)
        self.token_hash = token_hash
        self.hub = hub
        self.worker_id = worker_id
        self.peer = peer
        # Bounded by send(), not by the queue: the end of a stream must always get in.
        self.outbound: asyncio.Queue[_Outbound] = asyncio.Queue()
        self.said_hello = False
        # Account -> lease epoch granted to this stream.
        self.granted: dict[str, int] = {}
        self._pending: dict[str, _PendingSnapshot] = {}
        # The bytes of chunks all its pending snapshots hold.
        self.pending_bytes = 0
        # Account -> the version the store holds, as this stream last saw it (at its Hello,
        # then after each version it applied): a version far past it is refused.
        self.versions: dict[str, int] = {}
        # Account -> version whose snapshot was refused: its later chunks are dropped
        # quietly, so that one refused snapshot gets one Nack.
        self._refused: dict[str, int] = {}
        # Set once the stream's end is queued (GoAway, Goodbye): nothing more is taken or sent.
        self.closing = False
        # Set once the worker said it stops (Released.stopping, Goodbye): it is given nothing more.
        self.stopping = False
        # When the message being handled was taken (perf_counter): its Ack's latency.
        self._taken_at = 0.0
        # A worker that takes scheduled accounts says how many it can hold, and what it
        # offers (Hello.capacity, Hello.labels; fleet.py).
        self.capacity = 0
        self.crawls = 0  # its concurrent crawls (Hello.max_concurrent_crawls)
        self.labels: dict[str, str] = {}
        # Accounts asked back from the worker (Release), with why; it holds them until it
        # says Released.
        self.releasing: dict[str, str] = {}
        # Accounts whose lease lapsed while this stream stayed open (hub.sweep), with when
        # (the hub's clock): told so by a Release, the worker answers Released; that answer
        # is about the lapsed grant, so the account is not given to this stream again
        # before it comes (or a lease went by).
        self.lapsed: dict[str, float] = {}
        self.connected_at = time.time_ns()
        # When its last message came (the hub's clock): a worker silent for a lease is given nothing.
        self.heard_at = hub.clock()

    def owes_released(self, account_id: str) -> bool:
        """Whether the worker has yet to answer the Release of a lease that lapsed."""
        told = self.lapsed.get(account_id)
        return told is not None and self.hub.clock() - told < self.hub.config.lease_duration

    def drop_pending(self, account_id: str) -> None:
        """Forgets a snapshot whose chunks were arriving (done, refused, or taken away)."""
        pending = self._pending.pop(account_id, None)
        if pending is not None:
            self.pending_bytes -= pending.bytes
            self.hub.pending_bytes[self.worker_id] -= pending.bytes
            if self.hub.pending_bytes[self.worker_id] <= 0:
                del self.hub.pending_bytes[self.worker_id]

    def send(self, response: sync_pb2.SyncDataResponse | _WhenPersisted) -> None:
        if self.closing:
            return
        if self.outbound.qsize() >= self.hub.config.outbound_queue:
            # The worker stopped reading; ending its stream frees its accounts.
            self.closing = True
            while not self.outbound.empty():
                self.outbound.get_nowait()
            self.outbound.put_nowait(ResourceExhausted("the worker does not read what the master sends"))
            return
        self.outbound.put_nowait(response)

    def send_when_persisted(self, response: sync_pb2.SyncDataResponse, taken_at: float) -> None:
        persisted = self.hub.store.persisted()
        if persisted is None:
            SYNC_ACK_SECONDS.observe(time.perf_counter() - taken_at)
            self.send(response)
        else:
            self.send(_WhenPersisted(persisted, response, taken_at))

    def go_away(self, reconnect_after: float) -> None:
        """Queues a GoAway and the end of the stream behind what is queued already."""
        if not self.closing:
            away = sync_pb2.GoAway(reconnect_after=_duration(reconnect_after), reason="the master is stopping")
            self.send(sync_pb2.SyncDataResponse(go_away=away))
            self.end()

    def end(self) -> None:
        """Ends the stream behind what is queued already: nothing more is taken or sent."""
        self.closing = True
        self.outbound.put_nowait(_End())

    # ------------------------------------------------------------- dispatch

    async def handle(self, request: sync_pb2.SyncDataRequest, data: bytes | None = None) -> None:
        """Handles one message (parsed from `data`, when at hand); raises only for what
        must end the stream."""
        hub = self.hub
        if self.closing:
            return  # unanswered: the worker sends it again on its next stream
        if self.token_hash and hub.tokens.holder_of(self.token_hash) != self.worker_id:
            raise Unauthenticated("the worker token was revoked or rotated; connect again with the new one")
        hub.leases.renew(self.id, set(self.granted))
        self.heard_at = hub.clock()
        kind = request.WhichOneof("kind")
        account_id, version = _subject(request)
        self._taken_at = time.perf_counter()
        try:
            size = request.ByteSize() if data is None else len(data)
            if account_id and account_id in self.granted:
                series(SYNC_BYTES, account_id).inc(size)
            if size > hub.config.max_message_bytes:
                raise ResourceExhausted(
                    f"{size} bytes, over the limit of {hub.config.max_message_bytes}; send smaller chunks",
                    field=kind or "kind",
                )
            if kind == "hello":
                await self._hello(request.hello)
            elif not self.said_hello:
                raise FailedPrecondition("the stream must start with hello", field="hello")
            elif kind == "snapshot":
                await self._chunk(request.snapshot, data)
            elif kind == "delta":
                await self._delta(request.delta)
            elif kind == "heartbeat":
                pass  # renewing the leases was all it had to do
            elif kind == "account_status":
                await self._owned(request.account_status.account_id, "account_status.account_id")
                check_status(request.account_status, "account_status")
                await hub.store.report_status(request.account_status)
                _count_status(request.account_status)
            elif kind == "command_result":
                await self._command_result(request.command_result)
            elif kind == "session":
                await self._owned(request.session.account_id, "session.account_id")
                await fleet.keep_session(self, request.session)
            elif kind == "released":
                self.stopping = self.stopping or request.released.stopping
                await fleet.released(self, request.released.account_id, request.released.lease_epoch)
            elif kind == "goodbye":
                await fleet.goodbye(self)
            else:
                raise InvalidArgument(
                    "one of hello, snapshot, delta, heartbeat, account_status, command_result, session, released, goodbye",
                    field="kind",
                )
        except (Unauthenticated, PermissionDenied, Unavailable):
            raise  # a wrong identity, or a store out of reach: the stream ends
        except StoreError as error:
            if kind == "snapshot":
                self.drop_pending(account_id)
                if not request.snapshot.last:
                    self._refused[account_id] = version
            log.warning("refused %s %d of %r from %s: %s", kind, version, account_id, self.worker_id, error)
            if kind in ("snapshot", "delta"):
                SYNC_VERSIONS.labels(kind=kind, outcome="refused", reason=error.reason or _code_name(error)).inc()
            self.send(_nack(account_id, version, error))

    # ---------------------------------------------------------------- hello

    async def _hello(self, hello: sync_pb2.Hello) -> None:
        if hello.worker_id != self.worker_id:
            raise PermissionDenied(
                f"this token belongs to worker {self.worker_id!r}, not {hello.worker_id!r}", field="hello.worker_id"
            )
        hub = self.hub
        if len(hello.accounts) > hub.config.max_hello_accounts:
            raise InvalidArgument(
                f"{len(hello.accounts)} accounts, over the {hub.config.max_hello_accounts} one hello may name",
                field="hello.accounts",
            )
        for index, claim in enumerate(hello.accounts):
            if not claim.account_id:
                raise InvalidArgument("must not be empty", field=f"hello.accounts[{index}].account_id")
        if hello.capacity or hello.labels:
            self.capacity, self.labels, self.crawls = fleet.offer(hello)
        self.said_hello = True
        known = await hub.store.known_accounts([claim.account_id for claim in hello.accounts])
        room = hub.config.max_accounts - await hub.store.account_count()
        welcome = sync_pb2.Welcome(
            heartbeat_interval=_duration(hub.config.heartbeat_interval),
            lease_duration=_duration(hub.config.lease_duration),
        )
        granted = []
        for claim in hello.accounts:
            if claim.account_id not in known and claim.account_id not in self.granted:
                if room <= 0:
                    welcome.refused.add(
                        account_id=claim.account_id,
                        status=error_status(
                            code_pb2.RESOURCE_EXHAUSTED,
                            f"the master holds its maximum of {hub.config.max_accounts} accounts; "
                            f"account {claim.account_id!r} is new (an operator raises --max-accounts)",
                            reason="ACCOUNT_LIMIT",
                        ),
                    )
                    continue
            if not hub.tokens.may_sync(self.worker_id, claim.account_id):
                welcome.refused.add(
                    account_id=claim.account_id,
                    status=error_status(
                        code_pb2.PERMISSION_DENIED,
                        f"account {claim.account_id!r} is not assigned to worker {self.worker_id!r}",
                        reason="ACCOUNT_NOT_ASSIGNED",
                    ),
                )
                continue
            new = claim.account_id not in known and claim.account_id not in self.granted
            try:
                await self.take(claim.account_id)
            except AccountOwned as owned:
                expires = Timestamp()
                expires.GetCurrentTime()
                expires.FromNanoseconds(expires.ToNanoseconds() + int(owned.remaining * 1e9))
                welcome.refused.add(
                    account_id=claim.account_id,
                    owner_worker_id=owned.lease.worker_id,
                    lease_expires_at=expires,
                    status=error_status(
                        code_pb2.FAILED_PRECONDITION,
                        str(owned),
                        reason="ACCOUNT_OWNED",
                        metadata={"owner_worker_id": owned.lease.worker_id},
                    ),
                )
                continue
            room -= new
            granted.append(claim.account_id)
            hub.previous.pop(claim.account_id, None)  # back with its worker: it did not move
        versions = await hub.store.account_versions(granted)
        self.versions.update(versions)
        for account_id in granted:
            welcome.accounts.add(
                account_id=account_id, version=versions[account_id], lease_epoch=self.granted[account_id]
            )
            await hub.store.set_presence(account_id, self.worker_id, online=True)
            WORKER_ONLINE.labels(account=account_id).set(1)
        refused = len(welcome.refused)
        log.info("worker %s (%s): %d accounts granted, %d refused", self.worker_id, self.peer, len(granted), refused)
        self.send(sync_pb2.SyncDataResponse(welcome=welcome))
        # Commands that waited for these accounts follow the Welcome.
        for account_id in granted:
            await hub.deliver(account_id)

    async def take(self, account_id: str) -> int:
        """Grants the account's lease to this stream (between masters too) and fences any
        other stream that held it; raises AccountOwned while another worker's lease lives."""
        hub = self.hub
        epoch = hub.leases.claim(account_id, self.worker_id, self.id).epoch
        if hub.shared is not None:
            try:
                epoch = await hub.shared.claim(account_id, self.worker_id, self.id)
            except AccountOwned:
                hub.leases.release(self.id, {account_id})
                raise
        # A stream of the same worker that still held it is fenced now.
        self.granted[account_id] = epoch
        self._fence_others(account_id)
        return epoch

    def _fence_others(self, account_id: str) -> None:
        for other in self.hub.sessions.values():
            if other is not self and account_id in other.granted:
                del other.granted[account_id]
                other.drop_pending(account_id)

    async def _owned(self, account_id: str, field: str) -> None:
        if not account_id:
            raise InvalidArgument("must not be empty", field=field)
        if not self.hub.tokens.may_sync(self.worker_id, account_id):
            # Taken away from this worker while it held it: the account is free at once.
            if self.granted.pop(account_id, None) is not None:
                for released in self.hub.leases.release(self.id, {account_id}):
                    await self.hub.store.set_presence(released, self.worker_id, online=False)
            raise FailedPrecondition(
                f"account {account_id!r} is not assigned to worker {self.worker_id!r}",
                field=field,
                reason="ACCOUNT_NOT_ASSIGNED",
            )
        if account_id not in self.granted or not self.hub.leases.holds(account_id, self.id):
            lease = self.hub.leases.holder(account_id)
            owner = f"; worker {lease.worker_id!r} owns it" if lease is not None else ""
            raise FailedPrecondition(
                f"account {account_id!r} is not held by this stream{owner}; say hello again to claim it",
                field=field,
                reason="NOT_OWNER",
            )

    # ------------------------------------------------------------- snapshot

    async def _chunk(self, chunk: sync_pb2.Snapshot, data: bytes | None = None) -> None:
        account_id = chunk.account_id
        if chunk.chunk_index > 0 and self._refused.get(account_id) == chunk.version:
            return
        self._refused.pop(account_id, None)
        await self._owned(account_id, "snapshot.account_id")
        if chunk.version == 0:
            raise InvalidArgument("must be positive", field="snapshot.version")
        self._check_jump(account_id, chunk.version, "snapshot.version")
        pending = self._pending.get(account_id)
        if chunk.chunk_index == 0:
            self.drop_pending(account_id)
            pending = _PendingSnapshot(chunk.version, 0, frozenset(chunk.collections), Intake(account_id))
            self._pending[account_id] = pending
        elif pending is None or pending.version != chunk.version or pending.next_chunk != chunk.chunk_index:
            expected = "0" if pending is None or pending.version != chunk.version else str(pending.next_chunk)
            raise InvalidArgument(
                f"chunk {chunk.chunk_index} out of order, expected {expected}", field="snapshot.chunk_index"
            )
        if frozenset(chunk.collections) != pending.collections:
            raise InvalidArgument("differs from the first chunk's", field="snapshot.collections")

        pending.size += _entity_count(chunk.entities)
        if pending.size > self.hub.config.max_snapshot_entities:
            raise ResourceExhausted(
                f"more than {self.hub.config.max_snapshot_entities} entities", field="snapshot.entities"
            )
        self._hold(pending, len(data) if data is not None else chunk.ByteSize())
        with collector.bulk():
            pending.intake.take(chunk.entities, "snapshot.entities", None if data is None else (data, ENTITIES_PATH))
        pending.batches.append(chunk.entities)
        pending.next_chunk += 1
        if not chunk.last:
            return

        self.drop_pending(account_id)
        account = e.Account()
        account.CopyFrom(chunk.account)
        clean_account(account, account_id, "snapshot.account")
        await self.hub.store.apply_snapshot(
            SnapshotData(
                account_id,
                chunk.version,
                pending.collections,
                account,
                pending.batches,
                self._fence(account_id),
                intake=pending.intake,
            )
        )
        self.versions[account_id] = max(self.versions.get(account_id, 0), chunk.version)
        SNAPSHOTS_APPLIED.inc()
        series(SYNC_ENTITIES, account_id).inc(pending.size)
        self.send_when_persisted(
            sync_pb2.SyncDataResponse(ack=sync_pb2.Ack(account_id=account_id, version=chunk.version)), self._taken_at
        )

    def _hold(self, pending: _PendingSnapshot, size: int) -> None:
        """Counts a chunk's bytes against the bounds of this stream and of its worker."""
        config, hub = self.hub.config, self.hub
        if self.pending_bytes + size > config.max_pending_bytes:
            raise ResourceExhausted(
                f"the snapshots this stream is sending hold over {config.max_pending_bytes} bytes; "
                "finish one (last = true) before starting more",
                field="snapshot",
            )
        if hub.pending_bytes[self.worker_id] + size > config.max_pending_bytes_per_worker:
            raise ResourceExhausted(
                f"the snapshots worker {self.worker_id!r} is sending hold over {config.max_pending_bytes_per_worker} bytes",
                field="snapshot",
            )
        pending.bytes += size
        self.pending_bytes += size
        hub.pending_bytes[self.worker_id] += size

    def _check_jump(self, account_id: str, version: int, field: str) -> None:
        applied = self.versions.get(account_id, 0)
        if version > applied + self.hub.config.max_version_jump:
            raise InvalidArgument(
                f"{version} is more than {self.hub.config.max_version_jump} past the applied version {applied}",
                field=field,
                reason="VERSION_JUMP",
            )

    def _fence(self, account_id: str) -> int:
        """The epoch a store shared between masters checks this stream's writes against."""
        return self.granted[account_id] if self.hub.shared is not None else 0

    # ---------------------------------------------------------------- delta

    async def _delta(self, delta: sync_pb2.Delta) -> None:
        account_id = delta.account_id
        await self._owned(account_id, "delta.account_id")
        if delta.version <= delta.base_version:
            raise InvalidArgument(f"must be greater than base_version {delta.base_version}", field="delta.version")
        self._check_jump(account_id, delta.version, "delta.version")
        clean_batch(delta.upserts, account_id, "delta.upserts")
        clean_removals(delta.removals, "delta.removals")
        account: e.Account | None = None
        if delta.HasField("account"):
            account = e.Account()
            account.CopyFrom(delta.account)
            clean_account(account, account_id, "delta.account")
        await self.hub.store.apply_delta(
            DeltaData(
                account_id,
                delta.base_version,
                delta.version,
                account,
                delta.upserts,
                delta.removals,
                self._fence(account_id),
            )
        )
        self.versions[account_id] = max(self.versions.get(account_id, 0), delta.version)
        DELTAS_APPLIED.inc()
        series(SYNC_ENTITIES, account_id).inc(_entity_count(delta.upserts))
        self.send_when_persisted(
            sync_pb2.SyncDataResponse(ack=sync_pb2.Ack(account_id=account_id, version=delta.version)), self._taken_at
        )

    # -------------------------------------------------------------- commands

    async def _command_result(self, result: sync_pb2.CommandResult) -> None:
        if not result.request_id:
            raise InvalidArgument("must not be empty", field="command_result.request_id")
        if result.outcome == sync_pb2.COMMAND_OUTCOME_UNSPECIFIED:
            raise InvalidArgument("must be SENT or FAILED", field="command_result.outcome")
        # Only the stream the command went to, while it holds the account, may answer it.
        await self._owned(result.account_id, "command_result.account_id")
        book = self.hub.book
        if await book.delivered_to(result.account_id, result.request_id) != self.id:
            log.warning(
                "worker %s answered command %r of account %r, which this stream was not given",
                self.worker_id,
                result.request_id,
                result.account_id,
            )
            raise FailedPrecondition(
                f"command {result.request_id!r} of account {result.account_id!r} was not delivered to this stream",
                field="command_result.request_id",
                reason="NOT_DELIVERED",
            )
        await book.complete(result)


def _code_name(error: StoreError) -> str:
    return type(error).__name__.upper()
