"""imsync's HTTP servers against slow and greedy clients, on raw sockets: headers that never
end, a body shorter than its Content-Length, too many connections, too many headers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from services.common.http_guard import HttpLimits
from services.common.http_server import HttpOptions, serve_asgi

LIMITS = HttpLimits(header_timeout=0.5, body_timeout=0.5, keep_alive_timeout=1, max_connections=40, max_per_address=10)


async def echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{len(await request.body())} bytes")


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[str, int]]:
    stop = asyncio.Event()
    bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def announce(address: str) -> str:
        bound.set_result(address)
        return f"test server on {address}"

    app = Starlette(routes=[Route("/", echo, methods=["GET", "POST"])])
    task = asyncio.create_task(
        serve_asgi(app, "127.0.0.1:0", announce, lifespan="off", options=HttpOptions(limits=LIMITS), stop=stop)
    )
    host, _, port = (await bound).rpartition(":")
    await asyncio.sleep(0.1)
    try:
        yield host, int(port)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def answer_of(reader: asyncio.StreamReader, timeout: float = 3.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.read(65536)


async def test_headers_that_never_end_get_408_and_the_connection_closes(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and then nothing: a slow-header client
    await writer.drain()
    started = asyncio.get_running_loop().time()
    answer = await answer_of(reader)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert await reader.read() == b"", "closed"
    assert asyncio.get_running_loop().time() - started < 2
    writer.close()


async def test_a_silent_connection_is_closed_too(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    answer = await answer_of(reader)
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_a_body_shorter_than_its_length_gets_408(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
    await writer.drain()
    answer = await answer_of(reader)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    writer.close()


async def test_a_whole_request_is_answered_and_kept_alive(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    for _ in range(2):
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        answer = await answer_of(reader)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"5 bytes")
    writer.close()


async def test_too_many_or_too_large_headers_get_431(server: tuple[str, int]) -> None:
    for headers in (b"X-Big: " + b"a" * 60_000 + b"\r\n", b"".join(b"X-N%d: v\r\n" % i for i in range(1000))):
        reader, writer = await asyncio.open_connection(*server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        await writer.drain()
        answer = await answer_of(reader)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
        writer.close()


async def test_connections_from_one_address_are_bounded(server: tuple[str, int]) -> None:
    held = [await asyncio.open_connection(*server) for _ in range(LIMITS.max_per_address)]
    reader, writer = await asyncio.open_connection(*server)
    answer = await answer_of(reader)
    assert answer.startswith(b"HTTP/1.1 429"), answer
    writer.close()
    for _, held_writer in held:
        held_writer.close()
    await asyncio.sleep(0.2)
    reader, writer = await asyncio.open_connection(*server)  # freed: taken again
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert (await answer_of(reader)).startswith(b"HTTP/1.1 200")
    writer.close()
