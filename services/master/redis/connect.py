"""The Redis client a `--store` URL names: one node, or a Redis Cluster.

- `redis://host:port/db`, `rediss://…` (TLS), `unix:///path`: one Redis node (redis-py's
  `Redis`).
- `redis+cluster://host:port[,host:port…]`, `rediss+cluster://…` (TLS): a Redis Cluster
  (redis-py's `RedisCluster`). The nodes listed are where the client starts; it learns the
  rest of the cluster, and follows its slots as they move (a failover, a resharding). A
  password goes before the first node (`redis+cluster://:secret@host:port,host:port`).

Either way a connection Redis closed (a restart, a failover) is tried again on a fresh one.
That is safe: a commit sent twice finds the account's rev moved and computes itself again,
to a no-op.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Either client: the store's parts use only what both have.
Client = aioredis.Redis | AsyncRedisCluster

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)

# How often a call that lost its connection is tried again, and the pause before each:
# BACKOFF_BASE doubling up to BACKOFF_CAP (redis-py's Retry here, lane.py's own loop).
RETRIES = 3
BACKOFF_BASE = 0.05
BACKOFF_CAP = 0.5

_COMMON: dict[str, Any] = {
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "health_check_interval": 30,
}


def is_redis_url(url: str) -> bool:
    return url.partition("://")[0] in SCHEMES and "://" in url


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0] in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """The starting nodes, user name and password of a cluster URL; ValueError naming what
    is wrong with it."""
    scheme, _, rest = url.partition("://")
    if scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL ({' or '.join(s + '://' for s in CLUSTER_SCHEMES)}): {url!r}")
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    user: str | None = None
    password: str | None = None
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        name, _, secret = credentials.partition(":")
        user, password = (unquote(name) or None), (unquote(secret) or None)
    nodes: list[tuple[str, int]] = []
    for part in rest.split(","):
        if not part:
            continue
        parsed = urlsplit(f"//{part}")
        try:
            port = parsed.port or 6379
        except ValueError as error:
            raise ValueError(f"Redis Cluster node {part!r}: the port is not a number in 1-65535") from error
        if not parsed.hostname:
            raise ValueError(f"Redis Cluster node {part!r}: no host")
        nodes.append((parsed.hostname, port))
    if not nodes:
        raise ValueError(f"a Redis Cluster URL names at least one node (host:port): {url!r}")
    return nodes, user, password


class _Packer:
    """A command's arguments packed by hiredis in one C call: redis-py encodes each argument
    in Python first (a commit's EVALSHA has a hundred). What hiredis refuses (a memoryview,
    a bool, None) and a command name of two words go to redis-py's own packer, which packs
    the same bytes or raises its DataError."""

    def __init__(self, fallback: Any) -> None:
        self._fallback = fallback

    def pack(self, *args: Any) -> list[bytes]:
        first = args[0]
        if (" " in first) if isinstance(first, str) else (b" " in first):
            return self._fallback.pack(*args)  # type: ignore[no-any-return]
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return self._fallback.pack(*args)  # type: ignore[no-any-return]


def _packing_in_c(base: Any) -> Any:
    """`base` (the connection class the URL chose: TCP, TLS or a Unix socket) packing with
    _Packer."""

    class Packing(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            packer: Any = getattr(self, "_command_packer", None)
            if packer is not None:  # None: no hiredis, redis-py packs in Python
                self._command_packer = _Packer(packer)

    Packing.__name__ = f"Packing{base.__name__}"
    return Packing


def client_for(url: str) -> Client:
    """A redis-py asyncio client for `url`: `Redis` or `RedisCluster`."""
    retry = Retry(ExponentialBackoff(cap=BACKOFF_CAP, base=BACKOFF_BASE), RETRIES)
    errors: list[type[Exception]] = [RedisConnectionError, RedisTimeoutError]
    if is_cluster_url(url):
        nodes, user, password = cluster_nodes(url)
        return AsyncRedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            username=user,
            password=password,
            ssl=url.startswith("rediss+"),
            retry=retry,
            retry_on_error=errors,
            **_COMMON,
        )
    client = aioredis.Redis.from_url(url, retry=retry, retry_on_error=errors, **_COMMON)
    # (A cluster's connections are made by its nodes from its own settings: packed by redis-py.)
    pool = client.connection_pool
    pool.connection_class = _packing_in_c(pool.connection_class)
    return client
