"""The team's handling of conversations, on both store backends: owners and claims, open,
done and snoozed, marked unread, notes, the filters that find them, and the events that
announce them. A sync never changes any of it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import sync_pb2
from services.common.sample import SampleAccount
from services.master.memory.store import MemoryStore
from services.master.model import filters, threads
from services.master.model.errors import FailedPrecondition, InvalidArgument, NotFound, StoreError
from services.master.model.store import DeltaData, SnapshotData, Store
from services.master.redis.store import RedisStore

from .conftest import NOW, StoreFactory
from .test_store import every_item
from .test_store_deltas import copy

# The views judge snoozes by the wall clock: the changes here happen now.
T0 = time.time_ns()
SECOND = 10**9


@pytest.fixture
def account() -> SampleAccount:
    sample = SampleAccount("shop", seed=11, now=NOW)
    sample.fill(conversations=6, messages_per_conversation=3, contents=1, comments_per_content=1)
    return sample


@pytest.fixture
async def store(account: SampleAccount, new_store: StoreFactory) -> Store:
    store = new_store()
    assert await store.apply_snapshot(SnapshotData("shop", 1, frozenset(), account.account, copy(account.batch)))
    return store


async def _ids(store: Store, **filters: object) -> list[str]:
    page = await store.list_conversations(
        "shop",
        status=0,
        is_pinned=None,
        is_muted=None,
        cursor="",
        count=100,
        **filters,  # type: ignore[arg-type]
    )
    return [c.conversation_id for c in page.items]


async def test_a_conversation_nobody_touched_is_open_and_unassigned(store: Store) -> None:
    conversations = await _ids(store)
    first = await store.get_conversation("shop", conversations[0])
    assert first.thread_state == e.THREAD_STATE_OPEN and first.assignee == "" and first.note_count == 0
    assert await _ids(store, assignee="") == conversations, "all of them are unassigned"
    assert await _ids(store, thread_state=e.THREAD_STATE_OPEN) == conversations


async def test_assign_claim_and_the_filters_that_find_them(store: Store) -> None:
    a, b, c, *_ = await _ids(store)
    assigned = await store.handle_conversation("shop", a, threads.assign("王芳", "李雷"), T0)
    assert assigned.assignee == "王芳"
    assert (await store.handle_conversation("shop", b, threads.claim("李雷"), T0)).assignee == "李雷"
    # Claiming one's own again is fine; another's is refused, naming the owner.
    assert (await store.handle_conversation("shop", b, threads.claim("李雷"), T0 + 1)).assignee == "李雷"
    with pytest.raises(FailedPrecondition) as refused:
        await store.handle_conversation("shop", a, threads.claim("李雷"), T0 + 2)
    assert refused.value.reason == "CLAIMED" and refused.value.metadata == {"assignee": "王芳"}
    assert await _ids(store, assignee="王芳") == [a]
    assert await _ids(store, assignee="李雷") == [b]
    assert c in await _ids(store, assignee="") and a not in await _ids(store, assignee="")
    # Unassigned, it can be claimed by anyone.
    await store.handle_conversation("shop", a, threads.assign("", "王芳"), T0 + 3)
    assert (await store.handle_conversation("shop", a, threads.claim("李雷"), T0 + 4)).assignee == "李雷"


async def test_two_agents_claiming_at_once_end_with_one_owner_and_the_other_told_who(store: Store) -> None:
    for conversation_id in (await _ids(store))[:4]:
        agents = ["王芳", "李雷", "张伟", "Ana"]
        outcomes = await asyncio.gather(
            *(store.handle_conversation("shop", conversation_id, threads.claim(a), T0) for a in agents),
            return_exceptions=True,
        )
        won = [o for o in outcomes if isinstance(o, e.Conversation)]
        lost = [o for o in outcomes if isinstance(o, StoreError)]
        assert len(won) == 1 and len(lost) == 3, outcomes
        owner = won[0].assignee
        assert all(isinstance(o, FailedPrecondition) and o.metadata == {"assignee": owner} for o in lost)
        assert (await store.get_conversation("shop", conversation_id)).assignee == owner


async def test_done_and_snoozed_come_back_when_the_customer_writes(store: Store, account: SampleAccount) -> None:
    done, snoozed, *_ = await _ids(store)
    for conversation_id in (done, snoozed):
        await store.mark_conversation_read("shop", conversation_id, T0)
    far = T0 + 30 * 86400 * SECOND
    await store.handle_conversation("shop", done, threads.set_state(threads.DONE, 0, "王芳"), T0)
    shown = await store.handle_conversation("shop", snoozed, threads.set_state(threads.SNOOZED, far, "王芳"), T0)
    assert shown.thread_state == e.THREAD_STATE_SNOOZED and shown.snoozed_until.ToNanoseconds() == far
    assert await _ids(store, thread_state=e.THREAD_STATE_DONE) == [done]
    assert await _ids(store, thread_state=e.THREAD_STATE_SNOOZED) == [snoozed]

    # The customer writes in both, later than they were set.
    previous = copy(account.batch)
    for conversation in account.batch.conversations:
        if conversation.conversation_id in (done, snoozed):
            account.add_message(conversation, T0 // SECOND + 60, inbound=True)
    upserts = sync_pb2.EntityBatch()
    known = {m.message_id for m in previous.messages}
    upserts.messages.extend(m for m in account.batch.messages if m.message_id not in known)
    upserts.conversations.extend(c for c in account.batch.conversations if c.conversation_id in (done, snoozed))
    assert await store.apply_delta(DeltaData("shop", 1, 2, None, upserts, sync_pb2.Removals()))
    for conversation_id in (done, snoozed):
        again = await store.get_conversation("shop", conversation_id)
        assert again.thread_state == e.THREAD_STATE_OPEN and again.unread_count == 1
        # Open for good: reading it (another agent had it open) does not put it back.
        _, read = await store.mark_conversation_read("shop", conversation_id, T0 + 120 * SECOND)
        assert read.thread_state == e.THREAD_STATE_OPEN and read.unread_count == 0
        assert not read.HasField("snoozed_until")
    assert await _ids(store, thread_state=e.THREAD_STATE_DONE) == []
    assert await _ids(store, thread_state=e.THREAD_STATE_SNOOZED) == []


async def test_a_snooze_that_runs_out_comes_back_unread_and_reading_ends_that(store: Store) -> None:
    conversation_id = (await _ids(store))[0]
    await store.mark_conversation_read("shop", conversation_id, T0)
    soon = T0 + 60 * SECOND
    await store.handle_conversation("shop", conversation_id, threads.set_state(threads.SNOOZED, soon, "王芳"), T0)
    woken = await store.handle_conversation("shop", conversation_id, threads.wake, soon)
    assert woken.thread_state == e.THREAD_STATE_OPEN and woken.is_marked_unread
    assert not woken.HasField("snoozed_until")
    _, read = await store.mark_conversation_read("shop", conversation_id, soon + 1)
    assert not read.is_marked_unread
    assert not (await store.get_conversation("shop", conversation_id)).is_marked_unread


async def test_mark_unread_until_read_again(store: Store) -> None:
    conversation_id = (await _ids(store))[1]
    await store.mark_conversation_read("shop", conversation_id, T0)
    marked = await store.handle_conversation("shop", conversation_id, threads.mark_unread("王芳"), T0)
    assert marked.is_marked_unread and marked.unread_count == 0
    _, read = await store.mark_conversation_read("shop", conversation_id, T0 + 1)
    assert not read.is_marked_unread


async def test_notes_are_kept_in_order_and_bounded(store: Store) -> None:
    conversation_id = (await _ids(store))[2]
    for index in range(threads.MAX_NOTES + 5):
        note = e.Note(note_id=f"n{index}", agent="王芳", text=f"第{index}条备注")
        shown = await store.handle_conversation("shop", conversation_id, threads.add_note(note), T0 + index)
    assert shown.note_count == threads.MAX_NOTES
    notes = await store.conversation_notes("shop", conversation_id)
    assert [n.note_id for n in notes] == [f"n{i}" for i in range(5, threads.MAX_NOTES + 5)]
    assert await store.conversation_notes("shop", (await _ids(store))[3]) == []
    with pytest.raises(NotFound):
        await store.conversation_notes("shop", "no-such-conversation")


async def test_a_snapshot_changes_nothing_of_the_handling(store: Store, account: SampleAccount) -> None:
    conversation_id = (await _ids(store))[0]
    await store.handle_conversation("shop", conversation_id, threads.claim("王芳"), T0)
    note = e.Note(note_id="n", agent="王芳", text="记得退款")
    await store.handle_conversation("shop", conversation_id, threads.add_note(note), T0)
    assert await store.apply_snapshot(SnapshotData("shop", 5, frozenset(), account.account, copy(account.batch)))
    after = await store.get_conversation("shop", conversation_id)
    assert after.assignee == "王芳" and after.note_count == 1


async def test_changes_are_announced_and_a_change_of_nothing_is_not(store: Store) -> None:
    events: list[ev.Event] = []
    if isinstance(store, MemoryStore):
        store.on_event = events.append
    conversation_id = (await _ids(store))[0]
    await store.handle_conversation("shop", conversation_id, threads.claim("王芳"), T0)
    await store.handle_conversation("shop", conversation_id, threads.claim("王芳"), T0 + 1)
    if isinstance(store, RedisStore):  # through the account's outbox to the shared stream
        entries: Any = await store.redis.xrange(store.events_key)
        events = [ev.Event.FromString(fields[b"e"]) for _, fields in entries]
    handled = [event for event in events if event.type == ev.EVENT_TYPE_CONVERSATION_HANDLED]
    assert len(handled) == 1
    assert handled[0].conversation.assignee == "王芳" and handled[0].conversation.conversation_id == conversation_id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (threads.set_state(threads.SNOOZED, T0 - SECOND, "x"), "snoozed_until"),
        (threads.set_state(threads.SNOOZED, T0 + 400 * 86400 * SECOND, "x"), "snoozed_until"),
    ],
)
async def test_a_bad_snooze_is_refused_naming_the_field(store: Store, change: threads.Change, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await store.handle_conversation("shop", (await _ids(store))[0], change, T0)
    assert refused.value.field == field


def test_a_note_must_have_words_and_not_too_many() -> None:
    assert threads.check_note("好的\n\t谢谢\r\n") == "好的\n\t谢谢\r\n"
    for text in ("", "   ", "字" * (threads.MAX_NOTE + 1), "a\x00b", "\x07", "a\x1b[2J", "\x7f", "\x85"):
        with pytest.raises(InvalidArgument) as refused:
            threads.check_note(text)
        assert refused.value.field == "text"


async def test_every_filter_finds_what_the_views_show_on_every_page(new_store: StoreFactory) -> None:
    """A filtered page refuses most conversations before their views are built
    (filters.conversations_before_view); walked page by page, every filter still finds
    exactly the conversations whose views pass it, in order."""
    sample = SampleAccount("shop", seed=12, now=NOW)
    sample.fill(conversations=24, messages_per_conversation=1, contents=1, comments_per_content=1)
    for conversation in sample.batch.conversations[::3]:
        conversation.status = e.CONVERSATION_STATUS_ARCHIVED
    store = new_store()
    assert await store.apply_snapshot(SnapshotData("shop", 1, frozenset(), sample.account, copy(sample.batch)))
    ids = await _ids(store)
    for conversation_id in ids[::4]:
        await store.set_pinned("shop", conversation_id, True)
    for conversation_id in ids[1::5]:
        await store.set_muted("shop", conversation_id, True)
    await store.handle_conversation("shop", ids[2], threads.assign("王芳", "李雷"), T0)
    await store.handle_conversation("shop", ids[3], threads.claim("李雷"), T0)
    await store.handle_conversation("shop", ids[5], threads.set_state(threads.DONE, 0, "王芳"), T0)
    # Handled, then nobody's again and open: handled still, as the unhandled are shown.
    await store.handle_conversation("shop", ids[6], threads.assign("王芳", "王芳"), T0)
    await store.handle_conversation("shop", ids[6], threads.assign("", "王芳"), T0 + 1)
    # Snoozed until later, and a snooze that ran out (open again, by the clock).
    await store.handle_conversation("shop", ids[7], threads.set_state(threads.SNOOZED, T0 + 86400 * SECOND, "李雷"), T0)
    await store.handle_conversation("shop", ids[8], threads.set_state(threads.SNOOZED, T0 + SECOND, "李雷"), T0)
    await asyncio.sleep(1.1)
    shown = {c: await store.get_conversation("shop", c) for c in ids}
    assert shown[ids[8]].thread_state == e.THREAD_STATE_OPEN
    assert shown[ids[7]].thread_state == e.THREAD_STATE_SNOOZED
    views = [shown[c] for c in await _ids(store)]  # in the list's order (pinned first)
    checked = 0
    for status in (0, e.CONVERSATION_STATUS_ACTIVE, e.CONVERSATION_STATUS_ARCHIVED):
        for flags in ((None, None), (True, None), (False, None), (None, True), (None, False), (True, False)):
            for assignee in (None, "", "王芳", "李雷", "nobody"):
                for state in (0, e.THREAD_STATE_OPEN, e.THREAD_STATE_DONE, e.THREAD_STATE_SNOOZED):
                    asked = (status, *flags, assignee, state)
                    wanted = filters.conversations(*asked)
                    expected = [view.conversation_id for view in views if wanted(view)]
                    found = await every_item(
                        store.list_conversations,
                        account_id="shop",
                        status=status,
                        is_pinned=flags[0],
                        is_muted=flags[1],
                        assignee=assignee,
                        thread_state=state,
                        count=3,
                    )
                    assert [c.conversation_id for c in found] == expected, asked
                    checked += bool(expected)
    assert checked > 100, "most filters find some"
