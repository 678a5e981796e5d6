"""Pushing an account's state to a master over SyncData."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc
from google.rpc import status_pb2

from imsync.v1 import entities_pb2, sync_pb2, sync_pb2_grpc

# Well under gRPC's default 4 MiB message limit, leaving room for the envelope.
DEFAULT_CHUNK_BYTES = 1 << 20
# How long open() waits for the master's Welcome, as a worker does.
WELCOME_SECONDS = 30.0

_COLLECTION_FIELDS = ("contents", "comments", "conversations", "messages", "notifications")


class SyncRefused(Exception):
    """The master answered a Nack; `status` says why and names the field."""

    def __init__(self, account_id: str, version: int, status: status_pb2.Status) -> None:
        super().__init__(f"version {version} of {account_id!r} refused: {status.message} (code {status.code})")
        self.account_id = account_id
        self.version = version
        self.status = status


def split_batch(batch: sync_pb2.EntityBatch, max_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[sync_pb2.EntityBatch]:
    """Splits a batch into batches of at most about `max_bytes` serialized bytes each."""
    chunk = sync_pb2.EntityBatch()
    size = 0
    for name in _COLLECTION_FIELDS:
        for entity in getattr(batch, name):
            # Field tag and length prefix: at most 6 bytes more than the entity itself.
            entity_size = entity.ByteSize() + 6
            if size and size + entity_size > max_bytes:
                yield chunk
                chunk, size = sync_pb2.EntityBatch(), 0
            getattr(chunk, name).append(entity)
            size += entity_size
    yield chunk


class SyncClient:
    """A SyncData stream driven step by step: Hello, then snapshots or deltas, each answered
    by an Ack or a Nack. Heartbeats and commands from the master are skipped; a worker that
    performs commands and resumes by itself is services.worker.sync_engine.SyncEngine."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        worker_id: str,
        *,
        token: str,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._stub = sync_pb2_grpc.SyncServiceStub(channel)
        self._worker_id = worker_id
        self._chunk_bytes = chunk_bytes
        self._metadata = (("authorization", f"Bearer {token}"), *metadata)
        self._call: Any = None
        self.refused: dict[str, sync_pb2.AccountRefusal] = {}
        # The accounts granted at open(), given back by close().
        self.granted: set[str] = set()

    async def open(self, accounts: Mapping[str, int], *, timeout: float = WELCOME_SECONDS) -> dict[str, int]:
        """Says hello with the versions the worker believes the master has; returns the master's
        version of each account granted to this worker (refused ones are in `self.refused`).

        TimeoutError, and the stream cancelled, when no Welcome came in `timeout` seconds: a
        master answers at once, or sends heartbeats while it looks at many accounts (over
        Redis); a call that never started (gRPC can take a connection the master closed as
        it was made for a ready one) would otherwise wait for ever."""
        # grpc.aio lets a stream call start without an iterator, to write() to it.
        stub: Any = self._stub
        self._call = call = stub.SyncData(metadata=self._metadata)
        hello = sync_pb2.Hello(
            worker_id=self._worker_id,
            accounts=[sync_pb2.AccountVersion(account_id=a, version=v) for a, v in accounts.items()],
        )
        try:
            async with asyncio.timeout(timeout):
                reply = await self._exchange([sync_pb2.SyncDataRequest(hello=hello)])
        except TimeoutError:
            self._call = None
            call.cancel()
            raise TimeoutError(f"no Welcome from the master in {timeout:g} s") from None
        if reply.WhichOneof("kind") == "nack":
            raise SyncRefused("", 0, reply.nack.status)
        self.refused = {refusal.account_id: refusal for refusal in reply.welcome.refused}
        versions = {account.account_id: account.version for account in reply.welcome.accounts}
        self.granted = set(versions)
        return versions

    async def push_snapshot(
        self,
        account_id: str,
        version: int,
        account: entities_pb2.Account,
        entities: sync_pb2.EntityBatch,
        collections: Iterable[sync_pb2.Collection.ValueType] = (),
    ) -> int:
        """Sends a complete snapshot in chunks; returns the acknowledged version or raises SyncRefused."""
        chunks = list(split_batch(entities, self._chunk_bytes))
        requests = [
            sync_pb2.SyncDataRequest(
                snapshot=sync_pb2.Snapshot(
                    account_id=account_id,
                    version=version,
                    collections=list(collections),
                    chunk_index=index,
                    last=index == len(chunks) - 1,
                    account=account if index == len(chunks) - 1 else None,
                    entities=chunk,
                )
            )
            for index, chunk in enumerate(chunks)
        ]
        return await self.send(requests)

    async def send(self, requests: Sequence[sync_pb2.SyncDataRequest]) -> int:
        """Sends raw sync messages of one version; returns the acknowledged version or raises SyncRefused."""
        reply = await self._exchange(requests)
        kind = reply.WhichOneof("kind")
        if kind == "ack":
            return reply.ack.version
        if kind == "nack":
            raise SyncRefused(reply.nack.account_id, reply.nack.version, reply.nack.status)
        raise RuntimeError(f"unexpected reply from the master: {kind}")

    async def write(self, request: sync_pb2.SyncDataRequest) -> None:
        """Sends one message without waiting for an answer (a chunk, a heartbeat)."""
        if self._call is None:
            raise RuntimeError("call open() first")
        await self._call.write(request)

    async def _exchange(self, requests: Sequence[sync_pb2.SyncDataRequest]) -> sync_pb2.SyncDataResponse:
        for request in requests:
            await self.write(request)
        return await self.receive()

    async def receive(self) -> sync_pb2.SyncDataResponse:
        """The master's next answer (Welcome, Ack, Nack or GoAway); heartbeats and commands are skipped."""
        return await self._next(lambda kind: kind not in ("heartbeat", "command"))

    async def next_command(self) -> sync_pb2.Command:
        """The next command (a reply to perform) the master hands this worker; for a stream
        on which no answer to an earlier message is awaited (receive() skips commands)."""
        return (await self._next(lambda kind: kind == "command")).command

    async def _next(self, wanted: Callable[[str | None], bool]) -> sync_pb2.SyncDataResponse:
        """The next message of a kind `wanted`, skipping the others."""
        if self._call is None:
            raise RuntimeError("call open() first")
        while True:
            reply = await self._call.read()
            if reply is grpc.aio.EOF:  # type: ignore[attr-defined]
                raise ConnectionError("the master closed the stream")
            if wanted(reply.WhichOneof("kind")):
                found: sync_pb2.SyncDataResponse = reply
                return found

    async def close(self, timeout: float = 10.0) -> None:
        """Gives the accounts back (Released: another worker may take them at once; a stream
        that just ends leaves them leased to this worker until the lease lapses) and ends
        the stream, once the master has read everything sent on it."""
        if self._call is None:
            return
        call, self._call = self._call, None
        try:
            for account_id in sorted(self.granted):
                await call.write(sync_pb2.SyncDataRequest(released=sync_pb2.Released(account_id=account_id)))
            await call.done_writing()
            async with asyncio.timeout(timeout):
                while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                    pass
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError, TimeoutError):
            pass  # the stream had ended (or the master does not end it): the call is cancelled
        finally:
            self.granted.clear()
            call.cancel()
