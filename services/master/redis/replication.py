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

On a Redis Cluster each primary replicates its own slots, so a round writes a fence on
every primary (`<prefix>:wait{n}`, with n chosen so that the key is in one of that
primary's slots) and sends WAIT behind each, at once; the round holds when every primary
had N replicas take its fence. A primary without N replicas in reach therefore stops every
acknowledgement, not only those of its own accounts: simpler to promise, and what an
operator sees at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import RedisError

from services.master.model.errors import NotPersisted
from services.master.redis.errors import FAILURES

# Tags tried for a fence key in a primary's slots: enough to reach every one of 16,384.
_FENCE_TRIES = 200_000


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
        # On a cluster: a client of each primary (WAIT goes to one node, on the fence's
        # connection), and the fence key in its slots.
        self._cluster = client if isinstance(client, AsyncRedisCluster) else None
        self._nodes: dict[str, tuple[aioredis.Redis, str]] = {}

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
                acked = await self._wait()
            except FAILURES as error:
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

    async def _wait(self) -> int:
        """A fence and WAIT: how many replicas took the fence (the fewest of any primary)."""
        if self._cluster is None:
            return await _fence_and_wait(self._redis, self._fence, self.replicas, self.timeout_ms)
        await self._cluster.initialize()
        primaries = self._cluster.get_primaries()
        if not primaries:
            raise OSError("the Redis Cluster has no primary in reach")
        counts = await asyncio.gather(
            *(_fence_and_wait(*self._node(node), self.replicas, self.timeout_ms) for node in primaries)
        )
        return min(counts)

    def _node(self, node: ClusterNode) -> tuple[aioredis.Redis, str]:
        """A client of one primary, and a fence key in its slots (found again if the
        slots moved)."""
        assert self._cluster is not None
        client, fence = self._nodes.get(node.name, (None, ""))
        if client is None:
            # from_pool: the client owns its pool, so that closing it closes the connections.
            client = aioredis.Redis.from_pool(
                ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            )
        if not fence or _name(self._cluster.get_node_from_key(fence)) != node.name:
            # A node that holds no slot (one failed over, not yet dropped from the map)
            # has none: the round fails (NotPersisted) rather than search for ever.
            fence = next(
                (
                    key
                    for n in range(_FENCE_TRIES)
                    if _name(self._cluster.get_node_from_key(key := f"{self._fence}{{{n}}}")) == node.name
                ),
                "",
            )
            if not fence:
                raise OSError(f"the Redis Cluster node {node.name} holds no slot")
        self._nodes[node.name] = (client, fence)
        return client, fence

    async def close(self) -> None:
        for client, _ in self._nodes.values():
            await client.aclose()
        self._nodes.clear()

    async def describe(self) -> str:
        """What an acknowledgement waits for, and how many replicas Redis has now."""
        if self._cluster is not None:
            await self._cluster.initialize()
            primaries = self._cluster.get_primaries()
            fewest = min([await self._replicas_of(node) for node in primaries], default=0)
            said = (
                f"an acknowledgement waits for {self.replicas} Redis replica(s) of each of the cluster's "
                f"{len(primaries)} primaries; the fewest any has connected is {fewest}"
            )
            return said if fewest >= self.replicas else said + " (acknowledgements fail until enough are)"
        try:
            info = await self._redis.info("replication")
        except RedisError:
            return f"an acknowledgement waits for {self.replicas} Redis replica(s) (INFO is not allowed)"
        connected = int(info.get("connected_slaves", 0))
        said = f"an acknowledgement waits for {self.replicas} Redis replica(s); {connected} connected"
        return said if connected >= self.replicas else said + " (acknowledgements fail until enough are)"

    async def _replicas_of(self, node: ClusterNode) -> int:
        try:
            info = await self._node(node)[0].info("replication")
        except FAILURES:
            return 0
        return int(info.get("connected_slaves", 0))


def _name(node: ClusterNode | None) -> str:
    return node.name if node is not None else ""


async def _fence_and_wait(client: Any, fence: str, replicas: int, timeout_ms: int) -> int:
    pipe = client.pipeline(transaction=False)
    pipe.incr(fence)
    pipe.execute_command("WAIT", replicas, timeout_ms)
    _, acked = await pipe.execute()
    return int(acked)
