"""The journal, in process: what a master acknowledged comes back, however it stopped.

A store is given a data directory, changed, and its journal closed without the clean
stop's checkpoint (as after a crash: only journal rows), or compacted, or damaged; a new
store over the same directory must show exactly what the first one showed.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc

from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import entities_pb2 as e
from imsync.v1 import replies_pb2 as rep
from imsync.v1 import sync_pb2
from imsync_client import ImClient
from services.common.sample import SampleAccount
from services.master.memory.durability import Recovery, checkpoint_all, compact, open_data_dir
from services.master.memory.records import FILE_NAME
from services.master.memory.store import MemoryStore
from services.master.model import threads
from services.master.model.commands import CommandBook, CommandState
from services.master.model.store import DeltaData, SnapshotData
from services.master.sync.hub import SyncConfig
from services.worker.sync_engine import SyncEngine

from . import waiting
from .conftest import NOW, WireReads
from .sync_harness import MasterHandle, crawl_of, engine_for, running
from .test_store_deltas import copy, diff, mutate, observable


def _open(data_dir: Path) -> tuple[MemoryStore, CommandBook, Recovery]:
    store, book = MemoryStore(), CommandBook()
    recovery = open_data_dir(data_dir, store, book)
    recovery.journal.start()
    return store, book, recovery


def _command(request_id: str, account_id: str, comment_id: str) -> sync_pb2.Command:
    return sync_pb2.Command(
        request_id=request_id,
        account_id=account_id,
        reply_to_comment=sync_pb2.ReplyToComment(content_id="c", comment_id=comment_id, text="thanks"),
    )


async def _busy_store(data_dir: Path, seed: int) -> tuple[dict[str, object], list[str]]:
    """Snapshots, deltas, read marks, pins, mutes and replies into a journaled store,
    closed with only its journal rows (no checkpoint); returns what it showed."""
    rng = random.Random(seed)
    store, book, recovery = _open(data_dir)
    account = SampleAccount("acc", seed=seed, now=NOW)
    account.fill(conversations=6, messages_per_conversation=4, contents=3, comments_per_content=4)
    await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), account.account, copy(account.batch)))
    previous = copy(account.batch)
    for step in range(6):
        mutate(account, rng, step)
        upserts, removals = diff(previous, account.batch)
        await store.apply_delta(DeltaData("acc", step + 1, step + 2, None, upserts, removals))
        previous = copy(account.batch)
        inbox = (await store.list_unified("acc", types=(), is_read=None, is_new=None, cursor="", count=100)).items
        if inbox:
            await store.mark_unified_read("acc", [rng.choice(inbox).id], NOW * 10**9 + step)
    conversations = list(
        (await store.list_conversations("acc", status=0, is_pinned=None, is_muted=None, cursor="", count=100)).items
    )
    await store.set_pinned("acc", conversations[-1].conversation_id, True)
    await store.set_muted("acc", conversations[0].conversation_id, True)
    await store.mark_conversation_read("acc", conversations[1].conversation_id, NOW * 10**9)
    # The team's handling: an owner, a note, a snooze far ahead; another marked unread.
    # (Snoozes are judged by the wall clock: this one ends in 300 days.)
    handled, now = conversations[2].conversation_id, time.time_ns()
    await store.handle_conversation("acc", handled, threads.claim("王芳"), now)
    note = e.Note(note_id="n-1", agent="王芳", text="老客户，优先处理")
    await store.handle_conversation("acc", handled, threads.add_note(note), now)
    later = now + 300 * 86400 * 10**9
    await store.handle_conversation("acc", handled, threads.set_state(threads.SNOOZED, later, "王芳"), now)
    await store.handle_conversation("acc", conversations[3].conversation_id, threads.mark_unread("李雷"), now)
    # And a comment thread: claimed, noted, done.
    first = (
        await store.list_discussions(
            "acc", content_id="", parent_comment_id="", is_read=None, is_new=None, cursor="", count=1
        )
    ).items[0]
    await store.handle_comment_thread("acc", first.comment_id, threads.claim("李雷"), now)
    await store.handle_comment_thread(
        "acc", first.comment_id, threads.add_note(e.Note(note_id="n-2", text="已回")), now
    )
    await store.handle_comment_thread("acc", first.comment_id, threads.set_state(threads.DONE, 0, "李雷"), now)
    contents = (await store.list_contents("acc", content_type=0, is_new=None, cursor="", count=100)).items
    await store.mark_content_read("acc", contents[0].content_id, NOW * 10**9)
    comment = (
        await store.list_discussions(
            "acc", content_id="", parent_comment_id="", is_read=None, is_new=None, cursor="", count=1
        )
    ).items[0]
    await book.submit(_command("r-1", "acc", comment.comment_id))
    await book.submit(_command("r-2", "acc", comment.comment_id))
    await book.complete(
        sync_pb2.CommandResult(request_id="r-2", account_id="acc", outcome=sync_pb2.COMMAND_OUTCOME_SENT)
    )
    persisted = store.persisted()
    assert persisted is not None, "changes wait for the disk"
    await persisted
    assert store.persisted() is None
    await recovery.journal.close()
    return await observable(store, "acc"), ["r-1", "r-2"]


async def test_journal_rows_alone_bring_back_everything(tmp_path: Path, wire_reads: WireReads) -> None:
    shown, replies = await _busy_store(tmp_path, seed=3)
    assert shown["comment_threads"], "a comment thread's handling is among what must come back"
    wire_reads.clear()  # what the restart reads, not what the first store did
    store, book, recovery = _open(tmp_path)
    try:
        assert recovery.problems == [] and recovery.records > 6
        assert wire_reads.all_compiled(), "the journaled snapshot's messages are read off its bytes"
        assert await observable(store, "acc") == shown
        states = [(await book.get("acc", request_id)).state for request_id in replies]  # type: ignore[union-attr]
        assert states == [CommandState.PENDING, CommandState.SENT]
        assert (await book.deliverable("acc", session_id=1))[0].request_id == "r-1", (
            "a pending reply is delivered again"
        )
    finally:
        await recovery.journal.close()


async def test_a_comment_thread_handled_through_a_reply_whose_comment_is_not_held(tmp_path: Path) -> None:
    """Replies can be crawled without their comment: the thread is handled through a reply
    (keyed by the comment's id), and comes back from the journal all the same."""
    store, _, recovery = _open(tmp_path)
    account = SampleAccount("acc", seed=8, now=NOW)
    account.fill(conversations=1, messages_per_conversation=1, contents=1, comments_per_content=1)
    orphan = account.batch.comments.add(
        comment_id="orphan",
        content_id=account.batch.contents[0].content_id,
        parent_comment_id="gone",
        content="还有吗",
        author=e.User(user_id="9001", user_name="张三"),
        created_at={"seconds": NOW - 60},
    )
    await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), account.account, copy(account.batch)))
    assert await store.handle_comment_thread("acc", orphan.comment_id, threads.claim("王芳"), time.time_ns()) == (
        "acc",
        "gone",
    )
    persisted = store.persisted()
    assert persisted is not None
    await persisted
    await recovery.journal.close()
    store, _, recovery = _open(tmp_path)
    try:
        assert recovery.problems == []
        handlings = await store.thread_handlings("acc", [threads.comment_thread("gone")])
        assert handlings[threads.comment_thread("gone")].assignee == "王芳"
    finally:
        await recovery.journal.close()


async def test_a_checkpoint_replaces_the_rows_and_brings_back_the_same(tmp_path: Path, wire_reads: WireReads) -> None:
    shown, _ = await _busy_store(tmp_path, seed=5)
    store, _, recovery = _open(tmp_path)
    journal = recovery.journal
    assert await compact(store, journal, minimum_bytes=0) == ["acc"]
    # A change after the checkpoint is a journal row on top of it.
    conversation = (
        await store.list_conversations("acc", status=0, is_pinned=None, is_muted=None, cursor="", count=1)
    ).items[0]
    await store.set_muted("acc", conversation.conversation_id, True)
    shown = await observable(store, "acc")
    await journal.close()
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        assert db.execute("SELECT count(*) FROM journal").fetchone() == (1,), "compaction deleted the rows it covers"
        assert db.execute("SELECT count(*) FROM checkpoints WHERE account_id = 'acc'").fetchone()[0] >= 2

    wire_reads.clear()
    store, _, recovery = _open(tmp_path)
    assert recovery.problems == [] and recovery.records == 1
    assert wire_reads.all_compiled(), "the checkpoint's messages are read off its bytes"
    assert await observable(store, "acc") == shown
    await checkpoint_all(store, recovery.journal)
    await recovery.journal.close()
    store, _, recovery = _open(tmp_path)
    assert recovery.records == 0 and await observable(store, "acc") == shown
    await recovery.journal.close()


@asynccontextmanager
async def synced_master(tmp_path: Path, account: SampleAccount) -> AsyncIterator[tuple[MasterHandle, SyncEngine]]:
    """A master over a data directory, and a running worker engine that synced `account`."""
    master = MasterHandle(tmp_path, SyncConfig(heartbeat_interval=0.3, lease_duration=1.0))
    await master.start()
    engine = engine_for(master, [account.account_id])
    engine.publish(account.account_id, crawl_of(account))
    try:
        async with running(engine):
            await engine.wait_synced(timeout=10)
            yield master, engine
    finally:
        await master.stop()


async def test_an_ack_leaves_only_once_its_version_is_on_disk(tmp_path: Path) -> None:
    account = SampleAccount("acc", seed=1, now=NOW)
    account.fill(conversations=2, messages_per_conversation=2, contents=1, comments_per_content=1)
    async with synced_master(tmp_path, account) as (master, engine):
        journal = master.process.recovery.journal  # type: ignore[union-attr]
        # Hold the journal's thread: nothing commits until the gate opens.
        gate, held = threading.Event(), threading.Event()

        def hold(_: sqlite3.Connection) -> None:
            held.set()
            gate.wait(10)

        journal.enqueue(hold)
        await asyncio.to_thread(held.wait, 5)
        account.grow(NOW + 60)
        engine.publish("acc", crawl_of(account))
        await asyncio.sleep(0.5)
        assert (await master.store.get_account("acc")).version == 2, "applied in memory at once"
        assert not engine.accounts["acc"].synced, "but not acknowledged before it is on disk"
        gate.set()
        await engine.wait_synced(timeout=10)


async def test_a_restarted_master_keeps_marks_pins_and_replies_over_grpc(tmp_path: Path) -> None:
    account = SampleAccount("acc", seed=2, now=NOW)
    account.fill(conversations=3, messages_per_conversation=3, contents=1, comments_per_content=2)
    async with synced_master(tmp_path, account) as (master, engine):
        async with grpc.aio.insecure_channel(master.address) as channel:
            im = ImClient(channel)
            conversation = (
                await master.store.list_conversations(
                    "acc", status=0, is_pinned=None, is_muted=None, cursor="", count=1
                )
            ).items[0]
            await im.mark_conversation_read(
                conv.MarkConversationReadRequest(conversation_id=conversation.conversation_id)
            )
            await im.pin_conversation(conv.PinConversationRequest(conversation_id=conversation.conversation_id))
            await im.send_reply(
                rep.SendReplyRequest(
                    request_id="keep-me",
                    send_message=sync_pb2.SendMessage(conversation_id=conversation.conversation_id, text="hi"),
                )
            )

            async def answered() -> rep.Reply | None:
                reply = (await im.get_reply(rep.GetReplyRequest(request_id="keep-me"))).reply
                return reply if reply.state != rep.REPLY_STATE_PENDING else None

            # This worker cannot perform replies: it answers FAILED, with a reason.
            sent = await waiting.eventually(answered, timeout=10)
        shown = await observable(master.store, "acc")
        await master.restart()
        assert await observable(master.store, "acc") == shown
        async with grpc.aio.insecure_channel(master.address) as channel:
            again = await ImClient(channel).get_reply(rep.GetReplyRequest(request_id="keep-me"))
        assert again.reply == sent
        await engine.wait_synced(timeout=10)
