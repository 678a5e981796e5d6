"""The wait for the master's Welcome at the start of a stream.

A master answers a Hello with Welcome once it has looked at every account the Hello names
(over Redis, round trips of its own); while it works it sends heartbeats, as it does on
any idle stream. The wait is the stream's liveness rule: heartbeats keep it alive, and a
master silent for the liveness timeout (a stream that reached nothing: a connection to a
master that was stopping, a dropped one) ends it, so that the worker connects again at
once rather than after the whole `WELCOME_SECONDS`."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from imsync.v1 import sync_pb2
from services.common.awake import AwakeClock, before

# However the master keeps the stream alive, a Welcome not sent in this long ends it.
WELCOME_SECONDS = 30.0


async def welcome_of(call: Any, clock: AwakeClock, silence: float) -> sync_pb2.SyncDataResponse:
    """The stream's Welcome, read off `call` past any heartbeats before it; TimeoutError
    after `silence` seconds (on `clock`) without a message, ConnectionError when the
    stream ends or begins otherwise."""
    async with asyncio.timeout(WELCOME_SECONDS):
        heard = clock()
        while True:
            response = await before(call.read(), clock, heard + silence)
            if response is grpc.aio.EOF:  # type: ignore[attr-defined]
                raise ConnectionError("the master closed the stream before its Welcome")
            kind = response.WhichOneof("kind")
            if kind == "welcome":
                return response  # type: ignore[no-any-return]
            if kind != "heartbeat":
                raise ConnectionError(f"expected Welcome, got {kind}")
            heard = clock()
