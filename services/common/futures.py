"""Futures nobody will await any more."""

from __future__ import annotations

import asyncio
from typing import Any


def abandon(future: asyncio.Future[Any]) -> None:
    """Cancels `future` if it still runs, and takes its outcome whenever it comes, so that
    an exception it ended with (a read of a call whose connection failed, say, at the
    moment its reader gave up) is not logged as "never retrieved" when it is collected."""
    if future.done():
        _retrieve(future)
    else:
        future.cancel()
        future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
