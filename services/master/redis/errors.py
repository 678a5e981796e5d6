"""Redis's failures as the store's own errors: the servicers know no Redis."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import (
    ClusterDownError,
    RedisClusterException,
    RedisClusterUnreachableError,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.master.model.errors import Unavailable

P = ParamSpec("P")
T = TypeVar("T")


def unavailable_on(
    *errors: type[BaseException],
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """A decorator turning `errors` into Unavailable (retry after a second)."""

    def decorate(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(method)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await method(*args, **kwargs)
            except errors as error:
                # The caller is told no more than that: Redis's address is not theirs to know
                # (the master's log says what failed).
                raise Unavailable("the store (Redis) cannot be reached; try again", retry_after=1.0) from error

        return guarded

    return decorate


# Redis out of reach: the client or worker tries again later. On a Redis Cluster that is
# also a slot without a primary for a moment (a failover: CLUSTERDOWN, TRYAGAIN, no node
# reachable, a slot not covered yet). Any other error of Redis is a defect, answered
# INTERNAL.
UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    OSError,
)
# Any failure of Redis or of the cluster's client (which raises some outside RedisError).
FAILURES: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)
out_of_reach = unavailable_on(*UNREACHABLE)
# Any failure of Redis: for what a stream's end frees as far as Redis lets it.
any_failure = unavailable_on(*FAILURES)


def reraise_cancellation() -> None:
    """Raises CancelledError when the current task was cancelled: redis-py, cancelled in a
    read, may answer with a connection error instead, and a loop that tries again on such
    errors would never stop (a master's stop() waited on it forever)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
