"""An in-process master and worker engines, for the sync tests."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.sample import SampleAccount
from services.master.memory.store import MemoryStore
from services.master.model.retention import KEEP_EVERYTHING
from services.master.model.store import Store
from services.master.server import Master as MasterProcess
from services.master.server import MasterConfig
from services.master.sync.hub import SyncConfig
from services.worker.account_state import AccountView
from services.worker.engine_config import EngineConfig
from services.worker.performer import CommandHandler
from services.worker.sync_engine import SyncEngine

from .conftest import token_for, write_tokens


class MasterHandle:
    """A master over a data directory that can be restarted on the same port: it comes
    back with what its journal holds, or (lose_state) with nothing."""

    def __init__(self, tmp: Path, sync: SyncConfig) -> None:
        self.tokens = write_tokens(tmp / "tokens.toml")
        self.data_dir = tmp / "data"
        self.sync = sync
        self.port = 0
        self.store = MemoryStore()
        self.process: MasterProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = MasterConfig(
            listen=f"127.0.0.1:{self.port}",
            worker_tokens=self.tokens,
            sync=self.sync,
            reconnect_after=0.1,
            data_dir=self.data_dir,
            retention=KEEP_EVERYTHING,
        )
        self.process = MasterProcess(config, self.store)
        self.port = await self.process.start()

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop(grace=None)
            self.process = None

    async def restart(self, *, lose_state: bool = False) -> None:
        await self.stop()
        if lose_state:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.store = MemoryStore()
        await self.start()


@asynccontextmanager
async def running(engine: SyncEngine) -> AsyncIterator[SyncEngine]:
    task = asyncio.create_task(engine.run())
    try:
        yield engine
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


def engine_for(
    master: MasterHandle,
    accounts: list[str],
    *,
    worker_id: str = "test-worker",
    on_command: CommandHandler | None = None,
    engine_class: type[SyncEngine] = SyncEngine,
    **options: object,
) -> SyncEngine:
    config = EngineConfig(
        master=master.address,
        worker_id=worker_id,
        token=token_for(worker_id),
        backoff_initial=0.05,
        backoff_max=0.3,
        # A master restarted as the engine connects can leave a call that never starts
        # (welcome.py): tried again sooner than a worker would, as the backoff is.
        **{"connect_timeout": 2.0, **options},  # type: ignore[arg-type]
    )
    return engine_class(config, accounts, on_command)


_MASTER_OWNED = {
    "contents": ("is_new",),
    "comments": ("is_read", "read_at", "is_new", "is_handled"),
    "conversations": (
        *("unread_count", "is_pinned", "is_muted", "assignee", "thread_state"),
        *("snoozed_until", "is_marked_unread", "note_count"),
    ),
    "messages": ("is_read", "read_at", "is_new"),
}


def crawled_bytes(name: str, entity: object, account_id: str) -> bytes:
    copy: Any = type(entity)()
    copy.CopyFrom(entity)
    for field in _MASTER_OWNED[name]:
        copy.ClearField(field)
    if name == "contents":
        copy.stats.ClearField("unread_comments")
        copy.stats.ClearField("new_comments")
    copy.account_id = account_id
    return bytes(copy.SerializeToString(deterministic=True))


async def master_copy(store: Store, account_id: str) -> dict[str, dict[str, bytes]]:
    """The crawled part of what the master serves for an account, walked through its lists."""

    async def walk(lister: object, key: str) -> dict[str, object]:
        out: dict[str, object] = {}
        cursor = ""
        while True:
            page = await lister(cursor)  # type: ignore[operator]
            out.update({getattr(item, key): item for item in page.items})
            if not page.has_more:
                return out
            cursor = page.cursor

    lists = {
        "conversations": await walk(
            lambda c: store.list_conversations(
                account_id, status=0, is_pinned=None, is_muted=None, cursor=c, count=100
            ),
            "conversation_id",
        ),
        "messages": await walk(
            lambda c: store.list_messages(
                account_id,
                conversation_id="",
                sender_id="",
                receiver_id="",
                status=0,
                message_type=0,
                since_ns=None,
                cursor=c,
                count=100,
            ),
            "message_id",
        ),
        "contents": await walk(
            lambda c: store.list_contents(account_id, content_type=0, is_new=None, cursor=c, count=100), "content_id"
        ),
        "comments": await walk(
            lambda c: store.list_discussions(
                account_id, content_id="", parent_comment_id="", is_read=None, is_new=None, cursor=c, count=100
            ),
            "comment_id",
        ),
    }
    return {name: {k: crawled_bytes(name, v, account_id) for k, v in items.items()} for name, items in lists.items()}


def view_copy(view: object, account_id: str) -> dict[str, dict[str, bytes]]:
    entities = getattr(view, "entities")  # noqa: B009 (either side's view)
    return {
        name: {k: crawled_bytes(name, v, account_id) for k, v in entities.get(name, {}).items()}
        for name in _MASTER_OWNED
    }


def crawl_of(account: SampleAccount) -> AccountView:
    """A crawl of the sample as it is now (copied: the sample changes its protos in place)."""
    batch, profile = sync_pb2.EntityBatch(), e.Account()
    batch.CopyFrom(account.batch)
    profile.CopyFrom(account.account)
    return AccountView.from_batch(profile, batch)
