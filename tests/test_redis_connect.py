"""The client a `--store` URL makes: on one node its commands are packed by hiredis in one
C call, to the bytes redis-py's own packer makes, and what hiredis cannot pack goes to that
packer."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import DataError

from services.common.local_redis import RedisServer
from services.master.redis.connect import client_for


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


def _packers(url: str) -> tuple[Any, Any]:
    client: Any = client_for(url)
    packer = client.connection_pool.make_connection()._command_packer
    return packer, packer._fallback


ARGUMENTS = [
    ("SET", "k", "v"),
    ("EVALSHA", "0" * 40, 2, "{a}:meta", "{a}:lease", b"\x00\xff\r\n", "中文", 12345678901234567890, -5),
    ("HSET", b"k", "f", b""),
    ("ZADD", "k", 1.5, "m", 0.1, "n", 1e20, "o"),
    ("CONFIG GET", "append*"),  # two words: redis-py splits them
    ("SET", "k", memoryview(b"value")),
]


@pytest.mark.parametrize("args", ARGUMENTS, ids=lambda args: str(args[0]))
def test_commands_are_packed_as_redis_py_packs_them(redis_url: str, args: tuple[object, ...]) -> None:
    packer, fallback = _packers(redis_url)
    assert b"".join(packer.pack(*args)) == b"".join(fallback.pack(*args))


def test_what_redis_py_refuses_is_refused_the_same_way(redis_url: str) -> None:
    packer, _ = _packers(redis_url)
    for wrong in (True, None, object()):
        with pytest.raises(DataError):
            packer.pack("SET", "k", wrong)


async def test_a_store_round_trip_through_the_packer(redis_url: str) -> None:
    client = client_for(redis_url)
    try:
        await client.hset("packer:test", mapping={"text": "中文", "bytes": b"\x00\xff", "number": 7})
        assert await client.hgetall("packer:test") == {b"text": "中文".encode(), b"bytes": b"\x00\xff", b"number": b"7"}
        assert await client.config_get("appendonly")  # a command of two words
    finally:
        await client.delete("packer:test")
        await client.aclose()
