"""The lane (services/master/redis/lane.py): the store's hot scripts on a pipelined
connection of their own, against a real redis-server. Each call gets its own reply, however
many are in flight and whichever of them were given up; Redis's errors are redis-py's; a
script Redis forgot is loaded again; a Redis that restarts or stops answering fails the
calls in flight the way redis-py would, and the lane connects again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.local_redis import RedisServer
from services.master.redis.connect import client_for
from services.master.redis.events import _streams
from services.master.redis.lane import Lane

ECHO = "return ARGV[1]"
INCR = "return redis.call('INCR', KEYS[1])"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        yield redis
    finally:
        redis.resume()
        redis.stop()


@pytest_asyncio.fixture(params=[3, 2], ids=["RESP3", "RESP2"])
async def client(server: RedisServer, request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    """redis-py's client as the store makes it (RESP3, redis-py's default) and in RESP2 (a
    URL may ask for it): the lane reads whichever its connection speaks."""
    redis = aioredis.Redis.from_url(server.url, socket_timeout=5, protocol=request.param)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_every_call_in_flight_gets_its_own_reply(client: aioredis.Redis) -> None:
    lane, echo = Lane(client), client.register_script(ECHO)
    try:
        replies = await asyncio.gather(*(lane.run(echo, [], [f"call {i}"]) for i in range(500)))
        assert replies == [f"call {i}".encode() for i in range(500)]
    finally:
        await lane.close()


async def test_redis_s_errors_are_redis_py_s_and_the_lane_goes_on(client: aioredis.Redis) -> None:
    lane, incr, echo = Lane(client), client.register_script(INCR), client.register_script(ECHO)
    try:
        await client.set("lane:text", "not a number")
        with pytest.raises(ResponseError, match="not an integer"):
            await lane.run(incr, ["lane:text"], [])
        with pytest.raises(DataError):  # refused before it is sent, as redis-py refuses it
            await lane.run(echo, [], [None])
        assert await lane.run(incr, ["lane:count"], []) == 1
        assert await lane.run(echo, [], ["after"]) == b"after"
    finally:
        await lane.close()


async def test_a_script_redis_forgot_is_loaded_again(client: aioredis.Redis) -> None:
    lane, incr = Lane(client), client.register_script(INCR)
    try:
        assert await lane.run(incr, ["lane:n"], []) == 1
        await client.script_flush()
        assert await lane.run(incr, ["lane:n"], []) == 2
    finally:
        await lane.close()


async def test_a_restarted_redis_is_connected_to_again(server: RedisServer, client: aioredis.Redis) -> None:
    lane, incr = Lane(client), client.register_script(INCR)
    try:
        assert await lane.run(incr, ["lane:n"], []) == 1
        server.kill()
        server.start()  # the same port and data, and no scripts
        assert await lane.run(incr, ["lane:n"], []) == 2
    finally:
        await lane.close()


async def test_a_call_given_up_leaves_its_reply_to_nobody(server: RedisServer, client: aioredis.Redis) -> None:
    """A caller cancelled while Redis has not answered: the next call, on the same
    connection, gets its own reply, not the one the cancelled call was waiting for."""
    lane, echo = Lane(client), client.register_script(ECHO)
    try:
        await lane.run(echo, [], ["warm"])
        connections = (await client.info("stats"))["total_connections_received"]
        server.pause()
        first = asyncio.ensure_future(lane.run(echo, [], ["first"]))
        await asyncio.sleep(0.1)
        first.cancel()
        second = asyncio.ensure_future(lane.run(echo, [], ["second"]))
        await asyncio.sleep(0.1)
        server.resume()
        assert await second == b"second"
        assert first.cancelled()
        # On the same connection: the cancelled call's reply was not taken for a failure.
        assert (await client.info("stats"))["total_connections_received"] == connections
    finally:
        await lane.close()


async def test_a_redis_that_stops_answering_times_out_and_is_connected_to_again(server: RedisServer) -> None:
    """No answer within the client's socket timeout: the calls fail as redis-py's would
    (TimeoutError, which the store answers UNAVAILABLE), and once Redis answers again the
    lane works on a new connection."""
    client = aioredis.Redis.from_url(server.url, socket_timeout=0.3)
    lane, echo = Lane(client), client.register_script(ECHO)
    try:
        assert await lane.run(echo, [], ["before"]) == b"before"
        server.pause()
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(lane.run(echo, [], ["unanswered"]), 30)
        server.resume()
        assert await lane.run(echo, [], ["after"]) == b"after"
    finally:
        server.resume()
        await lane.close()
        await client.aclose()


async def test_a_stream_read_on_the_lane_reads_as_redis_py_reads_it(
    server: RedisServer, client: aioredis.Redis
) -> None:
    """The event feed follows the stream on a lane (redis/events.py): what it is handed is
    what redis-py's XREAD makes of the same entries, and a read that found nothing is empty."""
    lane = Lane(client)
    try:
        assert _streams(await lane.call("XREAD", "COUNT", 10, "BLOCK", 50, "STREAMS", "lane:s", "0-0")) == []
        for i in range(3):
            await client.xadd("lane:s", {"e": f"event {i}".encode(), "n": str(i)})
        raw = await lane.call("XREAD", "COUNT", 10, "STREAMS", "lane:s", "0-0")
        # As the store's own client (client_for: redis-py's defaults) reads it.
        store_client = client_for(server.url)
        try:
            theirs = await store_client.xread({"lane:s": "0-0"}, count=10)
        finally:
            await store_client.aclose()
        assert _streams(raw) == [tuple(stream) for stream in theirs]
    finally:
        await lane.close()


async def test_a_closed_lane_fails_its_calls_and_connects_no_more(server: RedisServer, client: aioredis.Redis) -> None:
    """The store closing (a master stopping): a call waiting fails, as one after it does,
    and neither leaves a new connection open behind the store."""
    lane, echo = Lane(client), client.register_script(ECHO)
    assert await lane.run(echo, [], ["open"]) == b"open"
    connections = (await client.info("stats"))["total_connections_received"]
    server.pause()
    waiting = asyncio.ensure_future(lane.run(echo, [], ["waiting"]))
    await asyncio.sleep(0.1)
    await lane.close()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(waiting, 5)
    with pytest.raises(RedisConnectionError):
        await lane.run(echo, [], ["closed"])
    server.resume()
    assert (await client.info("stats"))["total_connections_received"] == connections


async def test_a_redis_out_of_reach_is_tried_as_redis_py_tries_it_not_more(server: RedisServer) -> None:
    """Connecting is redis-py's, with its own retries: a Redis that cannot be reached fails
    a call after one connection of the lane's (a caller was answered after the lane's four
    attempts of redis-py's four, 3.9 s instead of 1.4 with Redis down)."""
    client = aioredis.Redis.from_url(server.url, socket_timeout=5)
    lane, echo = Lane(client), client.register_script(ECHO)
    made = []
    make: Any = client.connection_pool.make_connection

    def counted() -> Any:
        made.append(1)
        return make()

    client.connection_pool.make_connection = counted  # type: ignore[method-assign]
    try:
        assert await lane.run(echo, [], ["up"]) == b"up"
        server.stop()
        with pytest.raises(RedisConnectionError):
            await lane.run(echo, [], ["down"])
        assert len(made) == 2  # the first connection, and one more that could not connect
    finally:
        await lane.close()
        await client.aclose()
