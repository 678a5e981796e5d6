"""The store's hot scripts on a connection of their own: every change's load and commit,
and every page read, are one EVALSHA each, and redis-py spends about 85 us of the
master's CPU on each (its connection pool, health checks, retry and timeout wrappers,
and a read through a StreamReader), where packing the command and parsing its reply in C
take about 13 (docs/performance.md, "the lane").

A `Lane` is a connection made by redis-py (so the URL's address, TLS, user, password and
database apply, and its handshake is redis-py's), whose socket is then read by a protocol
of the lane's: commands are written as they come (pipelined, one after the other on the
one connection), and hiredis parses the replies as they arrive, each resolving the call
that waits for it, in order. It runs the scripts redis-py registered (`run`), by their SHA
and loading one Redis does not know, as redis-py does. Failures are redis-py's exceptions,
so the store's mapping of them (errors.py) is unchanged:

- Redis closes the connection, or the network does: every call in flight fails with
  ConnectionError, and the next call connects again. A call that failed so is tried again
  on a fresh connection, as redis-py's own retries do (connect.py: a commit sent twice
  finds the account's rev moved and computes itself again, to a no-op). Connecting is
  redis-py's, with its retries: a Redis that cannot be reached fails the call then, not
  after the lane's retries of redis-py's retries.
- No reply within the client's socket timeout: the connection is closed (a reply that
  came later could not be told from the next one's) and every call on it fails with
  TimeoutError.
- An error reply raises what redis-py raises for it (NoScriptError, ResponseError, ...).

The event feed follows the stream on a lane of its own (events.py): a read that blocks
for new entries would hold up every call behind it.

One node only: a Redis Cluster's client routes each script by its keys' slot, and keeps
its own connections.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.master.redis.connect import BACKOFF_BASE, BACKOFF_CAP, RETRIES


class _Replies(asyncio.Protocol):
    """The lane's side of one connection: writes commands, hands each reply to the call
    waiting for it (replies come in the order the commands went)."""

    def __init__(self, connection: Any, transport: asyncio.Transport, timeout: float | None) -> None:
        # redis-py's connection: it packs the commands (connect.py's _Packer), and closes.
        self.connection = connection
        self.transport = transport
        self.lost = False
        # The calls waiting, oldest first, each with when its command went.
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._reader = hiredis.Reader()
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        # One timer for the oldest call, not one per call.
        self._watch: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                waiter, _ = self._waiting.popleft()
                if waiter.done():  # its caller was cancelled
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    waiter.set_exception(BaseParser.parse_error(str(reply)))  # type: ignore[no-untyped-call]
                else:
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as error:
            # Bytes that are no reply, or a reply nobody asked for: nothing after them can
            # be trusted to be whose it seems.
            self._end(RedisConnectionError(f"Redis's reply could not be read: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(RedisConnectionError(f"Redis closed the connection: {exc}" if exc else "Redis closed the connection"))

    def _end(self, error: Exception) -> None:
        self.lost = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        while self._waiting:
            waiter, _ = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        self.transport.abort()

    def _check(self) -> None:
        """The oldest call has waited its timeout: the connection is given up (a reply that
        came later could not be told from the next call's); else the timer is set for it."""
        self._watch = None
        if not self._waiting or self._timeout is None:
            return
        due = self._waiting[0][1] + self._timeout
        if due <= self._loop.time():
            self._end(RedisTimeoutError(f"Redis did not answer in {self._timeout} s"))
        else:
            self._watch = self._loop.call_at(due, self._check)

    def call(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Sends `command`; its reply, when it comes."""
        packed = self.connection.pack_command(*command)  # first: an argument it refuses raises here
        waiter = self._loop.create_future()
        self._waiting.append((waiter, self._loop.time()))
        self.transport.writelines(packed)
        if self._watch is None and self._timeout is not None:
            self._watch = self._loop.call_later(self._timeout, self._check)
        return waiter


class Lane:
    """Commands on one pipelined connection of their own (above)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._pool = client.connection_pool
        self._timeout: float | None = self._pool.connection_kwargs.get("socket_timeout")
        self._replies: _Replies | None = None
        self._connecting = asyncio.Lock()
        self._closed = False

    async def _connected(self) -> _Replies:
        async with self._connecting:
            if self._closed:  # the store is closing: no new connection to leave open
                raise RedisConnectionError("the lane is closed")
            replies = self._replies
            if replies is None or replies.lost:
                if replies is not None:
                    await replies.connection.disconnect(nowait=True)
                connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
                await connection.connect()
                # redis-py connected and shook hands (AUTH, SELECT, HELLO); the socket is the
                # lane's from here.
                transport: Any = connection._writer.transport
                replies = _Replies(connection, transport, self._timeout)
                transport.set_protocol(replies)
                self._replies = replies
            return replies

    async def call(self, *command: Any) -> Any:
        """One command's reply (hiredis's: bytes, ints, lists, None)."""
        for attempt in range(RETRIES + 1):
            replies = self._replies
            if replies is None or replies.lost:
                # redis-py tried the connection again itself: a failure here is the answer.
                replies = await self._connected()
            try:
                return await replies.call(command)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                if attempt == RETRIES or self._closed:
                    raise
            await asyncio.sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
        raise AssertionError("unreachable")

    async def run(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """`script` as `script(keys=keys, args=args)` runs it: by its SHA, loaded first when
        Redis does not know it (a restart, SCRIPT FLUSH)."""
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.call("SCRIPT", "LOAD", script.script)
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)

    async def close(self) -> None:
        """Ends the connection; calls still waiting fail, and none connects again."""
        self._closed = True
        replies, self._replies = self._replies, None
        if replies is not None:
            await replies.connection.disconnect(nowait=True)
