"""Operators' repairs of what the master holds, run from the command line
(`imsync account reset-version ACCOUNT_ID`).

Resetting an account's version makes the master forget which versions of the account it
applied, keeping everything else (the crawled entities, read marks, pins, mutes, replies):
the owning worker's next Hello is told version 0, and it sends a whole snapshot, which is
applied as the new version 1. It mends an account a worker pushed to a version so high
that nothing later can follow.

With a data directory, the master must be stopped (the journal has one writer); over Redis
it may run: the change moves the account's revision, so a change computed meanwhile by a
master is computed again.
"""

from __future__ import annotations

from pathlib import Path

from services.master.memory.durability import open_data_dir
from services.master.memory.store import MemoryStore
from services.master.model.commands import CommandBook
from services.master.model.errors import NotFound
from services.master.model.retention import KEEP_EVERYTHING
from services.master.redis.store import RedisStore


async def reset_version_in_journal(data_dir: Path, account_id: str) -> int:
    """Resets the account's version in the journal of `data_dir`; returns the version it had."""
    store = MemoryStore(retention=KEEP_EVERYTHING)
    recovery = open_data_dir(data_dir, store, CommandBook())
    journal = recovery.journal
    journal.start()
    try:
        before = store.reset_version(account_id)
        await journal.checkpoint(account_id, store.capture(account_id))
    finally:
        await journal.close()
    return before


async def reset_version_in_redis(url: str, prefix: str, account_id: str) -> int:
    """Resets the account's version in the Redis the masters share; returns the version it had."""
    store = RedisStore.from_url(url, prefix=prefix)
    try:
        return await store.reset_version(account_id)
    finally:
        await store.close()


__all__ = ["NotFound", "reset_version_in_journal", "reset_version_in_redis"]
