"""Waiting in tests for what happens in other tasks and processes."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def eventually(
    check: Callable[[], Any],
    *,
    timeout: float = 30.0,
    every: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """Calls `check` (plain or async) until it returns something true, and returns that.

    Exceptions of the `ignoring` types count as "not yet"; any other propagates at once.
    """
    async with asyncio.timeout(timeout):
        while True:
            try:
                result = check()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return result
            except ignoring:
                pass
            await asyncio.sleep(every)
