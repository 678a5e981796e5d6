"""Acknowledgements that wait for Redis's replicas (`--redis-wait-replicas N`).

Redis answers a write once its primary has it (and, with `appendfsync always`, has it on
its disk); its replicas get it a moment later. A primary that dies in that moment and is
replaced by a replica (Sentinel, a cluster's failover, an operator) takes the write with
it: acknowledged, then lost. With N > 0, nothing this master was told it wrote is
acknowledged (an Ack, a mark's answer, a reply's acceptance: whatever waits for
`Store.persisted()`) before N replicas have it.

Redis's WAIT counts the writes of the connection it is sent on, and a master writes on
many. So a round writes a fence (an INCR of `<prefix>:wait`) and sends WAIT behind it on
the same connection: the replication stream is ordered, so a replica that has the fence
has every write the primary took before it, from any connection. The callers that wait
share one round (a group commit); a round that gets fewer than N replicas within the
timeout fails each of them with NotPersisted (UNAVAILABLE: the worker sends again, the
client asks again), and the next caller tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from redis.exceptions import RedisError

from services.master.model.errors import NotPersisted


class Replication:
    def __init__(self, client: Any, fence_key: str, replicas: int, timeout: float = 1.0) -> None:
        self.replicas = replicas
        self.timeout_ms = max(1, round(timeout * 1000))
        self._redis = client
        self._fence = fence_key
        self._written = 0  # writes of this master (counted once Redis answered each)
        self._covered = 0  # of them, how many a round saw on N replicas
        self._next: asyncio.Future[None] | None = None  # the round the next callers wait for
        self._rounds: asyncio.Task[None] | None = None

    def wrote(self) -> None:
        """A write of this master was answered by Redis."""
        self._written += 1

    def barrier(self) -> Awaitable[None] | None:
        """What to await before acknowledging what this master wrote so far: None when a
        round saw all of it on the replicas already."""
        if self._covered >= self._written:
            return None
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        if self._rounds is None or self._rounds.done():
            self._rounds = asyncio.ensure_future(self._run())
        return self._next

    async def _run(self) -> None:
        while self._next is not None:
            waiting, self._next = self._next, None
            upto = self._written
            try:
                pipe = self._redis.pipeline(transaction=False)
                pipe.incr(self._fence)
                pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
                _, acked = await pipe.execute()
            except (RedisError, OSError) as error:
                waiting.set_exception(
                    NotPersisted(f"Redis did not answer WAIT ({type(error).__name__}); not acknowledged")
                )
                continue
            if int(acked) < self.replicas:
                waiting.set_exception(
                    NotPersisted(
                        f"{acked} of the {self.replicas} Redis replicas asked for (--redis-wait-replicas) took the "
                        f"change within {self.timeout_ms} ms; it is not acknowledged"
                    )
                )
            else:
                self._covered = max(self._covered, upto)
                waiting.set_result(None)

    async def describe(self) -> str:
        """What an acknowledgement waits for, and how many replicas Redis has now."""
        try:
            info = await self._redis.info("replication")
        except RedisError:
            return f"an acknowledgement waits for {self.replicas} Redis replica(s) (INFO is not allowed)"
        connected = int(info.get("connected_slaves", 0))
        said = f"an acknowledgement waits for {self.replicas} Redis replica(s); {connected} connected"
        return said if connected >= self.replicas else said + " (acknowledgements fail until enough are)"
