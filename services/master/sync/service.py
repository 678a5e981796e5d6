"""SyncService: the master's end of the SyncData stream.

Each stream is a `SyncSession`: it authenticates (bearer token), claims its accounts in
Hello (one live owner per account: leases.py), then takes snapshots (in chunks, applied
when the last arrives) and deltas, each answered by an Ack or a Nack naming the bad field.
A refused message never ends the stream and never reaches the store. Everything the
master sends (acks, heartbeats, commands) goes through the session's one outbound queue;
an Ack leaves it only once its version is on disk (the store's journal), and the
messages behind it wait their turn, so acknowledgements stay in order. A master that
stops drains each stream: it answers what it took, sends GoAway, and ends the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from imsync.v1 import sync_pb2, sync_pb2_grpc
from services.master.model.errors import (
    StoreError,
)
from services.master.model.metrics import (
    SYNC_ACK_SECONDS,
)
from services.master.sync.hub import (
    Received,
    SyncHub,
    _End,
    _WhenPersisted,
    log,
)
from services.master.sync.session import SyncSession


def _received(data: bytes) -> Received:
    """A sync message and the bytes it was parsed from: the bound is on their size
    (ByteSize would walk the whole message again to count it), and a snapshot's messages
    are read off them (intake.py)."""
    return sync_pb2.SyncDataRequest.FromString(data), data


def add_sync_service(servicer: SyncServicer, server: grpc.aio.Server) -> None:
    """Serves SyncData as the generated add_SyncServiceServicer_to_server does, except that
    each request reaches the servicer with the bytes it was parsed from."""
    name = sync_pb2.DESCRIPTOR.services_by_name["SyncService"].full_name
    handlers = {
        "SyncData": grpc.stream_stream_rpc_method_handler(
            servicer.SyncData,
            request_deserializer=_received,
            response_serializer=sync_pb2.SyncDataResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)  # type: ignore[attr-defined]  # missing from grpc's stubs


class SyncServicer(sync_pb2_grpc.SyncServiceServicer):
    def __init__(self, hub: SyncHub) -> None:
        self._hub = hub

    async def SyncData(  # type: ignore[override]  # requests come with their bytes (add_sync_service)
        self,
        request_iterator: AsyncIterator[Received],
        context: grpc.aio.ServicerContext[Received, sync_pb2.SyncDataResponse],
    ) -> AsyncIterator[sync_pb2.SyncDataResponse]:
        hub = self._hub
        if hub.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the master is stopping; connect again later")
        worker_id, hashed = hub.tokens.authenticate(list(context.invocation_metadata() or ()))
        session = SyncSession(hub, worker_id, context.peer(), hashed)
        hub.sessions[session.id] = session
        reader = asyncio.create_task(self._read(request_iterator, session))
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancellation.
                    async with asyncio.timeout(hub.config.heartbeat_interval):
                        item = await session.outbound.get()
                except TimeoutError:
                    heartbeat = sync_pb2.Heartbeat()
                    heartbeat.sent_at.GetCurrentTime()
                    item = sync_pb2.SyncDataResponse(heartbeat=heartbeat)
                if isinstance(item, _End):
                    return
                if isinstance(item, StoreError):
                    raise item  # the stream ends with its status (api/boundary.py)
                if isinstance(item, _WhenPersisted):
                    await item.persisted  # NotPersisted ends the stream UNAVAILABLE, unacknowledged
                    SYNC_ACK_SECONDS.observe(time.perf_counter() - item.taken_at)
                    item = item.response
                yield item
        finally:
            reader.cancel()
            # Shielded: a stream the client cancelled still frees its accounts in the
            # store (over Redis that takes awaits the cancellation would cut short).
            await asyncio.shield(hub.end_soon(session))

    async def _read(self, requests: AsyncIterator[Received], session: SyncSession) -> None:
        try:
            async for request, data in requests:
                await session.handle(request, data)
        except StoreError as error:  # what ends the stream: a wrong identity
            session.outbound.put_nowait(error)
            return
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        except Exception:  # a bug must not leave the worker waiting forever
            log.exception("sync stream of %s failed", session.worker_id)
        session.outbound.put_nowait(_End())
