"""CacheService: the gateways that keep answers watch this master's changes (the memory
backend's Coherence, model/coherence.py) and are told its cache settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import duration_pb2

from imsync.v1 import cache_pb2, cache_pb2_grpc
from services.master.auth.api_keys import ApiKeys
from services.master.model.coherence import Coherence


class CacheServicer(cache_pb2_grpc.CacheServiceServicer):
    def __init__(self, coherence: Coherence | None, keys: ApiKeys) -> None:
        # None: the store is shared with other masters; no gateway may keep answers.
        self._coherence = coherence
        self._keys = keys

    async def WatchChanges(
        self,
        request_iterator: AsyncIterator[cache_pb2.WatchChangesRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[cache_pb2.WatchChangesResponse]:
        coherence = self._coherence
        if coherence is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this master's store is shared with other masters: their changes cannot be announced in time",
            )
            return
        watcher = coherence.join()

        async def read() -> None:
            async for request in request_iterator:
                coherence.handle(watcher, request)
            watcher.outbound.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            yield self._settings(coherence)
            while (response := await watcher.outbound.get()) is not None:
                yield response
        finally:
            coherence.leave(watcher)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def _settings(self, coherence: Coherence) -> cache_pb2.WatchChangesResponse:
        keys = self._keys
        lease = duration_pb2.Duration()
        lease.FromNanoseconds(int(coherence.lease * 1e9))
        limiter = keys.limiter
        return cache_pb2.WatchChangesResponse(
            settings=cache_pb2.CacheSettings(
                lease=lease,
                keys_enforced=keys.path is not None,
                rate_limit=limiter.rate,
                rate_burst=limiter.burst,
            )
        )
