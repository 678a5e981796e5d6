"""The wait for the master's Welcome at the start of a stream.

A master answers a Hello with Welcome once it has looked at every account the Hello names
(over Redis, round trips of its own); while it works it sends heartbeats, as it does on
any idle stream. The wait is the stream's liveness rule: heartbeats keep it alive, and a
master silent for the liveness timeout (a stream that reached nothing: a connection to a
master that was stopping, a dropped one) ends it, so that the worker connects again at
once rather than after the whole `WELCOME_SECONDS`.

Before any of that, the stream's headers must have gone out within the connect timeout. A
master stopping just as the worker's connection to it is made can leave gRPC's channel
taking the closed connection for ready (seen with grpcio 1.85: the GOAWAY arrived before
the channel watched the connection), and the call waits to start, sending nothing; left
to the liveness rule, before a Welcome told the worker the master's heartbeat, that took
15 s. A call that fails to connect fails at once and is not waited for."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from imsync.v1 import sync_pb2
from services.common.awake import AwakeClock, before
from services.common.futures import abandon

# However the master keeps the stream alive, a Welcome not sent in this long ends it.
WELCOME_SECONDS = 30.0


async def welcome_of(call: Any, clock: AwakeClock, silence: float, connect: float) -> sync_pb2.SyncDataResponse:
    """The stream's Welcome, read off `call` past any heartbeats before it; TimeoutError
    when its headers did not go out in `connect` seconds or after `silence` seconds (on
    `clock`) without a message, ConnectionError when the stream ends or begins otherwise."""
    async with asyncio.timeout(WELCOME_SECONDS):
        await _started(call, clock, connect)
        heard = clock()
        while True:
            try:
                response = await before(call.read(), clock, heard + silence)
            except TimeoutError as silent:
                raise TimeoutError(f"the master was silent for {silence:.1f} s before its Welcome") from silent
            if response is grpc.aio.EOF:  # type: ignore[attr-defined]
                raise ConnectionError("the master closed the stream before its Welcome")
            kind = response.WhichOneof("kind")
            if kind == "welcome":
                return response  # type: ignore[no-any-return]
            if kind != "heartbeat":
                raise ConnectionError(f"expected Welcome, got {kind}")
            heard = clock()


async def _started(call: Any, clock: AwakeClock, seconds: float) -> None:
    """Returns once the call's headers went out or the call ended (its read says how);
    TimeoutError when neither happened in `seconds` (on `clock`)."""
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def end(_: Any) -> None:
        if not ended.done():
            ended.set_result(None)

    call.add_done_callback(end)
    sent = asyncio.ensure_future(call.wait_for_connection())
    try:
        await before(asyncio.wait({sent, ended}, return_when=asyncio.FIRST_COMPLETED), clock, clock() + seconds)
    except TimeoutError as late:
        raise TimeoutError(f"the stream's headers did not go out in {seconds:.1f} s") from late
    finally:
        # Whatever it ended with (the call's failure) is the read's to report.
        abandon(sent)
        abandon(ended)
