"""SyncService: the master's end of the SyncData stream.

One `SyncSession` per stream. A refused message gets a Nack naming the bad field and the
stream goes on; nothing of a refused or unfinished snapshot reaches the store.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from google.rpc import code_pb2, status_pb2

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2, sync_pb2_grpc

from .errors import FailedPrecondition, InvalidArgument, StoreError
from .status import rpc_status_of
from .store import SnapshotData, Store
from .validation import clean_account, clean_batch

log = logging.getLogger(__name__)

# Bound on the entities of one snapshot held while its chunks arrive.
MAX_SNAPSHOT_ENTITIES = 5_000_000


@dataclass
class _PendingSnapshot:
    version: int
    next_chunk: int
    collections: frozenset[sync_pb2.Collection.ValueType]
    entities: sync_pb2.EntityBatch = field(default_factory=sync_pb2.EntityBatch)
    size: int = 0


def _entity_count(batch: sync_pb2.EntityBatch) -> int:
    return (
        len(batch.contents)
        + len(batch.comments)
        + len(batch.conversations)
        + len(batch.messages)
        + len(batch.notifications)
    )


class SyncSession:
    """The state of one worker's stream: who it is and its snapshots in progress."""

    def __init__(self, store: Store, peer: str) -> None:
        self._store = store
        self._peer = peer
        self.worker_id = ""
        self._accounts: set[str] = set()
        self._pending: dict[str, _PendingSnapshot] = {}
        # Account -> version whose snapshot was refused: its later chunks are dropped
        # quietly, so that one refused snapshot gets one Nack.
        self._refused: dict[str, int] = {}

    def handle(self, request: sync_pb2.SyncDataRequest) -> sync_pb2.SyncDataResponse:
        kind = request.WhichOneof("kind")
        if kind == "hello":
            return self._hello(request.hello)
        if kind == "snapshot":
            chunk = request.snapshot
            if chunk.chunk_index > 0 and self._refused.get(chunk.account_id) == chunk.version:
                return sync_pb2.SyncDataResponse()
            self._refused.pop(chunk.account_id, None)
            try:
                return self._snapshot(chunk)
            except StoreError as error:
                self._pending.pop(chunk.account_id, None)
                if not chunk.last:
                    self._refused[chunk.account_id] = chunk.version
                log.warning("refused version %d of %r from %s: %s", chunk.version, chunk.account_id, self.worker_id, error)
                return _nack(chunk.account_id, chunk.version, rpc_status_of(error))
        if kind == "delta":
            return _nack(
                request.delta.account_id,
                request.delta.version,
                status_pb2.Status(code=code_pb2.UNIMPLEMENTED, message="delta: not supported yet; send a snapshot"),
            )
        return _nack("", 0, rpc_status_of(InvalidArgument("one of hello, snapshot, delta is required", field="kind")))

    def _hello(self, hello: sync_pb2.Hello) -> sync_pb2.SyncDataResponse:
        if not hello.worker_id:
            return _nack("", 0, rpc_status_of(InvalidArgument("must not be empty", field="hello.worker_id")))
        for index, account in enumerate(hello.accounts):
            if not account.account_id:
                return _nack(
                    "", 0, rpc_status_of(InvalidArgument("must not be empty", field=f"hello.accounts[{index}].account_id"))
                )
        self.worker_id = hello.worker_id
        self._accounts = {account.account_id for account in hello.accounts}
        versions = self._store.account_versions(sorted(self._accounts))
        log.info("worker %s (%s) says hello with %d accounts", self.worker_id, self._peer, len(self._accounts))
        return sync_pb2.SyncDataResponse(
            welcome=sync_pb2.Welcome(
                accounts=[sync_pb2.AccountVersion(account_id=a, version=v) for a, v in versions.items()]
            )
        )

    def _snapshot(self, chunk: sync_pb2.Snapshot) -> sync_pb2.SyncDataResponse:
        if not self.worker_id:
            raise FailedPrecondition("the stream must start with hello", field="hello")
        account_id = chunk.account_id
        if not account_id:
            raise InvalidArgument("must not be empty", field="snapshot.account_id")
        if account_id not in self._accounts:
            raise FailedPrecondition(f"account {account_id!r} was not announced in hello", field="snapshot.account_id")
        if chunk.version == 0:
            raise InvalidArgument("must be positive", field="snapshot.version")
        pending = self._pending.get(account_id)
        if chunk.chunk_index == 0:
            pending = _PendingSnapshot(chunk.version, 0, frozenset(chunk.collections))
            self._pending[account_id] = pending
        elif pending is None or pending.version != chunk.version or pending.next_chunk != chunk.chunk_index:
            expected = "0" if pending is None or pending.version != chunk.version else str(pending.next_chunk)
            raise InvalidArgument(f"chunk {chunk.chunk_index} out of order, expected {expected}", field="snapshot.chunk_index")
        if frozenset(chunk.collections) != pending.collections:
            raise InvalidArgument("differs from the first chunk's", field="snapshot.collections")

        clean_batch(chunk.entities, account_id, "snapshot.entities")
        pending.size += _entity_count(chunk.entities)
        if pending.size > MAX_SNAPSHOT_ENTITIES:
            raise InvalidArgument(f"more than {MAX_SNAPSHOT_ENTITIES} entities", field="snapshot.entities")
        pending.entities.MergeFrom(chunk.entities)
        pending.next_chunk += 1
        if not chunk.last:
            return sync_pb2.SyncDataResponse()

        del self._pending[account_id]
        account = e.Account()
        account.CopyFrom(chunk.account)
        clean_account(account, account_id, "snapshot.account")
        self._store.apply_snapshot(
            SnapshotData(account_id, chunk.version, pending.collections, account, pending.entities)
        )
        return sync_pb2.SyncDataResponse(ack=sync_pb2.Ack(account_id=account_id, version=chunk.version))


def _nack(account_id: str, version: int, status: status_pb2.Status) -> sync_pb2.SyncDataResponse:
    return sync_pb2.SyncDataResponse(nack=sync_pb2.Nack(account_id=account_id, version=version, status=status))


class SyncServicer(sync_pb2_grpc.SyncServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def SyncData(
        self,
        request_iterator: AsyncIterator[sync_pb2.SyncDataRequest],
        context: grpc.aio.ServicerContext[sync_pb2.SyncDataRequest, sync_pb2.SyncDataResponse],
    ) -> AsyncIterator[sync_pb2.SyncDataResponse]:
        session = SyncSession(self._store, context.peer())
        async for request in request_iterator:
            response = session.handle(request)
            # A non-final chunk is answered by nothing; its snapshot's last chunk gets the Ack.
            if response.WhichOneof("kind") is not None:
                yield response
