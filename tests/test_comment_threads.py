"""The inbox by thread and the team's handling of comment threads, on both store backends:
every thread once, in the order of its newest item, across pages of any size; a comment
thread handled as a conversation is (claims, states, notes, snoozes, reopened when the
customer writes again), through a reply's id as well as its top-level comment's."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import sync_pb2
from services.common.sample import SampleAccount
from services.master.api import thread_list
from services.master.memory.store import MemoryStore
from services.master.model import threads
from services.master.model.cursor import Newest
from services.master.model.errors import FailedPrecondition, InvalidArgument
from services.master.model.keys import _last_activity_ns, ns_of
from services.master.model.store import DeltaData, SnapshotData, Store
from services.master.redis.store import RedisStore

from .conftest import NOW, StoreFactory
from .test_store_deltas import copy

T0 = time.time_ns()
SECOND = 10**9
CUSTOMER = e.User(user_id="9001", user_name="张三")


def _customer_reply(account: SampleAccount, parent: e.Comment, comment_id: str, at: int, text: str) -> e.Comment:
    return account.batch.comments.add(
        comment_id=comment_id,
        content_id=parent.content_id,
        parent_comment_id=parent.comment_id,
        content=text,
        author=CUSTOMER,
        created_at={"seconds": at},
    )


@pytest.fixture
def account() -> SampleAccount:
    sample = SampleAccount("shop", seed=5, now=NOW)
    sample.fill(conversations=5, messages_per_conversation=2, contents=3, comments_per_content=5)
    tops = [c for c in sample.batch.comments if not c.parent_comment_id]
    # Customers answer under some comments, some of them long after the comment.
    for index, top in enumerate(tops[::3]):
        _customer_reply(sample, top, f"r{index}", top.created_at.seconds + 86_400 * (index + 1), "还有货吗")
    return sample


@pytest.fixture
async def store(account: SampleAccount, new_store: StoreFactory) -> Store:
    store = new_store()
    assert await store.apply_snapshot(SnapshotData("shop", 1, frozenset(), account.account, copy(account.batch)))
    return store


async def _threads(store: Store, count: int = 100, **filters: Any) -> list[e.Thread]:
    """Every page of the list, walked with pages of `count`."""
    found: list[e.Thread] = []
    cursor = ""
    options: dict[str, Any] = {"kinds": set(thread_list.KINDS), "assignee": None, "thread_state": 0} | filters
    for _ in range(200):
        page, cursor, more = await thread_list.list_threads(
            store, "shop", cursor=cursor, count=count, now_ns=time.time_ns(), **options
        )
        found += page
        if not more:
            return found
    raise AssertionError("the list does not end")


def _expected(account: SampleAccount, pinned: frozenset[str] = frozenset()) -> list[tuple[int, str]]:
    """(kind, thread id) of every thread, worked out plainly from what the account holds."""
    keyed: list[tuple[tuple[Any, ...], tuple[int, str]]] = []
    for conversation in account.batch.conversations:
        cid = conversation.conversation_id
        order = (0 if cid in pinned else 1, -_last_activity_ns(conversation), 0, cid)
        keyed.append((order, (thread_list.CONVERSATION, cid)))
    newest: dict[str, e.Comment] = {}
    for comment in account.batch.comments:
        root = comment.parent_comment_id or comment.comment_id
        key = (-ns_of(comment.created_at), Newest(comment.comment_id))
        held = newest.get(root)
        if held is None or key < (-ns_of(held.created_at), Newest(held.comment_id)):
            newest[root] = comment
    for root, comment in newest.items():
        order = (1, -ns_of(comment.created_at), 1, Newest(comment.comment_id))
        keyed.append((order, (thread_list.COMMENT, root)))
    return [thread for _, thread in sorted(keyed, key=lambda pair: pair[0])]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 100])
async def test_every_thread_once_in_the_order_of_its_newest_item(
    store: Store, account: SampleAccount, count: int
) -> None:
    pinned = account.batch.conversations[-1].conversation_id
    await store.set_pinned("shop", pinned, True)
    listed = await _threads(store, count)
    assert [(t.kind, t.thread_id) for t in listed] == _expected(account, frozenset({pinned}))
    assert listed[0].thread_id == pinned and listed[0].is_pinned
    by_id = {t.thread_id: t for t in listed}
    # A comment thread shows its newest comment, and its top-level comment's author.
    top = next(c for c in account.batch.comments if c.comment_id == "r0").parent_comment_id
    thread = by_id[top]
    assert thread.latest_item_id == "comment:r0" and thread.latest_text == "还有货吗"
    assert thread.latest_author.user_id == CUSTOMER.user_id and thread.customer.user_id != CUSTOMER.user_id
    assert thread.unread_count == 2 and thread.thread_state == e.THREAD_STATE_OPEN


async def test_only_the_kinds_asked_for(store: Store, account: SampleAccount) -> None:
    comments = await _threads(store, 4, kinds={thread_list.COMMENT})
    assert [(t.kind, t.thread_id) for t in comments] == [t for t in _expected(account) if t[0] == thread_list.COMMENT]
    conversations = await _threads(store, 4, kinds={thread_list.CONVERSATION})
    assert {t.thread_id for t in conversations} == {c.conversation_id for c in account.batch.conversations}


async def test_a_customer_reply_moves_its_thread_to_the_top_unread(store: Store, account: SampleAccount) -> None:
    oldest = [t for t in await _threads(store) if t.kind == thread_list.COMMENT][-1]
    parent = next(c for c in account.batch.comments if c.comment_id == oldest.thread_id)
    reply = _customer_reply(account, parent, "fresh", NOW + 60, "请回复我")
    upserts = sync_pb2.EntityBatch()
    upserts.comments.append(reply)
    assert await store.apply_delta(DeltaData("shop", 1, 2, None, upserts, sync_pb2.Removals()))
    first = (await _threads(store))[0]
    assert (first.kind, first.thread_id, first.latest_item_id) == (
        thread_list.COMMENT,
        parent.comment_id,
        "comment:fresh",
    )
    assert first.unread_count == oldest.unread_count + 1
    assert [(t.kind, t.thread_id) for t in await _threads(store, 3)] == _expected(account)


async def test_a_comment_thread_is_handled_through_any_of_its_comments(store: Store, account: SampleAccount) -> None:
    reply = next(c for c in account.batch.comments if c.comment_id == "r1")
    root = reply.parent_comment_id
    assert await store.handle_comment_thread("shop", "r1", threads.claim("王芳"), T0) == ("shop", root)
    with pytest.raises(FailedPrecondition) as refused:
        await store.handle_comment_thread("shop", root, threads.claim("李雷"), T0 + 1)
    assert refused.value.reason == "CLAIMED" and refused.value.metadata == {"assignee": "王芳"}
    note = e.Note(note_id="n1", agent="王芳", text="已私信处理")
    await store.handle_comment_thread("shop", root, threads.add_note(note), T0 + 2)
    handling = (await store.thread_handlings("shop", [threads.comment_thread(root)]))[threads.comment_thread(root)]
    assert handling.assignee == "王芳" and [n.text for n in handling.notes] == ["已私信处理"]

    mine = await _threads(store, 3, assignee="王芳")
    assert [(t.kind, t.thread_id, t.note_count) for t in mine] == [(thread_list.COMMENT, root, 1)]
    unassigned = await _threads(store, 3, assignee="")
    assert root not in {t.thread_id for t in unassigned} and len(unassigned) == len(_expected(account)) - 1
    # A conversation of the same id space is a thread of its own: nothing of it changed.
    conversation = account.batch.conversations[0].conversation_id
    assert (await store.get_conversation("shop", conversation)).assignee == ""


async def test_done_comes_back_when_the_customer_replies_again(store: Store, account: SampleAccount) -> None:
    events: list[ev.Event] = []
    if isinstance(store, MemoryStore):
        store.on_event = events.append
    top = next(c for c in account.batch.comments if c.comment_id == "r0").parent_comment_id
    await store.handle_comment_thread("shop", top, threads.set_state(threads.DONE, 0, "王芳"), T0)
    assert [t.thread_id for t in await _threads(store, 5, thread_state=e.THREAD_STATE_DONE)] == [top]

    parent = next(c for c in account.batch.comments if c.comment_id == top)
    reply = _customer_reply(account, parent, "again", T0 // SECOND + 60, "怎么还没发货")
    upserts = sync_pb2.EntityBatch()
    upserts.comments.append(reply)
    assert await store.apply_delta(DeltaData("shop", 1, 2, None, upserts, sync_pb2.Removals()))
    assert await _threads(store, 5, thread_state=e.THREAD_STATE_DONE) == []
    first = (await _threads(store))[0]
    assert (first.thread_id, first.thread_state) == (top, e.THREAD_STATE_OPEN)

    if isinstance(store, RedisStore):
        entries: Any = await store.redis.xrange(store.events_key)
        events = [ev.Event.FromString(fields[b"e"]) for _, fields in entries]
    handled = [(x.thread.thread_id, x.thread.thread_state) for x in events if x.type == ev.EVENT_TYPE_THREAD_HANDLED]
    assert handled == [(top, e.THREAD_STATE_DONE), (top, e.THREAD_STATE_OPEN)]


async def test_a_snoozed_comment_thread_wakes_and_is_listed_among_the_snoozes(store: Store) -> None:
    root = next(t for t in await _threads(store) if t.kind == thread_list.COMMENT).thread_id
    soon = T0 + 60 * SECOND
    await store.handle_comment_thread("shop", root, threads.set_state(threads.SNOOZED, soon, "王芳"), T0)
    assert (soon, "shop", threads.comment_thread(root)) in await store.snoozed()
    await store.handle_comment_thread("shop", root, threads.wake, soon + 1)
    handling = (await store.thread_handlings("shop", [threads.comment_thread(root)]))[threads.comment_thread(root)]
    assert handling.state == threads.OPEN and handling.marked_unread
    assert await store.snoozed() == []


async def test_two_agents_claiming_a_comment_thread_at_once_end_with_one_owner(store: Store) -> None:
    root = next(t for t in await _threads(store) if t.kind == thread_list.COMMENT).thread_id
    results = await asyncio.gather(
        *(store.handle_comment_thread("shop", root, threads.claim(agent), T0) for agent in ("王芳", "李雷")),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, FailedPrecondition)]
    assert len(refused) == 1
    owner = (await store.thread_handlings("shop", [threads.comment_thread(root)]))[threads.comment_thread(root)]
    assert refused[0].metadata == {"assignee": owner.assignee} and owner.assignee in ("王芳", "李雷")


async def test_a_cursor_of_another_list_is_refused(store: Store) -> None:
    page = await store.list_conversations("shop", status=0, is_pinned=None, is_muted=None, cursor="", count=1)
    with pytest.raises(InvalidArgument) as refused:
        await thread_list.list_threads(
            store,
            "shop",
            kinds=set(thread_list.KINDS),
            assignee=None,
            thread_state=0,
            cursor=page.cursor,
            count=5,
            now_ns=T0,
        )
    assert refused.value.field == "cursor"


@pytest.mark.parametrize("owned", [False, True])
async def test_a_page_that_stops_at_its_scan_bound_goes_on_where_it_stopped(
    store: Store, account: SampleAccount, monkeypatch: pytest.MonkeyPatch, owned: bool
) -> None:
    # A bound of a few comments a page: pages come short (or empty) with has_more, and the
    # whole walk is still every thread once, in order; with a filter that few threads pass.
    monkeypatch.setattr(thread_list, "SCAN_LIMIT", 3)
    expected = [t for t in _expected(account) if t[0] == thread_list.COMMENT]
    if owned:
        for _, root in expected[1::4]:
            await store.handle_comment_thread("shop", root, threads.claim("王芳"), T0)
        expected = expected[1::4]
    filters: dict[str, Any] = {"kinds": {thread_list.COMMENT}, "assignee": "王芳" if owned else None}
    assert [(t.kind, t.thread_id) for t in await _threads(store, 2, **filters)] == expected
