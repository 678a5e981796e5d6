"""Deltas applied in place give exactly the state a snapshot of the same data gives."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import sync_pb2
from services.common.sample import SampleAccount
from services.master.api import thread_list
from services.master.model import threads
from services.master.model.errors import FailedPrecondition
from services.master.model.store import DeltaData, Page, SnapshotData, Store
from services.master.redis.store import RedisStore

from .conftest import NOW, StoreFactory

_KEYS = {
    "contents": "content_id",
    "comments": "comment_id",
    "conversations": "conversation_id",
    "messages": "message_id",
    "notifications": "notification_id",
}
_REMOVALS = {
    "contents": "content_ids",
    "comments": "comment_ids",
    "conversations": "conversation_ids",
    "messages": "message_ids",
    "notifications": "notification_ids",
}


def as_maps(batch: sync_pb2.EntityBatch) -> dict[str, dict[str, object]]:
    return {name: {getattr(x, key): x for x in getattr(batch, name)} for name, key in _KEYS.items()}


def diff(old: sync_pb2.EntityBatch, new: sync_pb2.EntityBatch) -> tuple[sync_pb2.EntityBatch, sync_pb2.Removals]:
    upserts, removals = sync_pb2.EntityBatch(), sync_pb2.Removals()
    before, after = as_maps(old), as_maps(new)
    for name in _KEYS:
        for key, entity in after[name].items():
            if before[name].get(key) != entity:
                getattr(upserts, name).append(entity)
        getattr(removals, _REMOVALS[name]).extend(k for k in before[name] if k not in after[name])
    return upserts, removals


def copy(batch: sync_pb2.EntityBatch) -> sync_pb2.EntityBatch:
    result = sync_pb2.EntityBatch()
    result.CopyFrom(batch)
    return result


def mutate(account: SampleAccount, rng: random.Random, step: int) -> None:
    """What a platform does between two crawls: new, edited and deleted items."""
    batch = account.batch
    for _ in range(rng.randint(0, 3)):
        account.grow(NOW + step * 100 + rng.randint(0, 99))
    if batch.messages and rng.random() < 0.5:
        del batch.messages[rng.randrange(len(batch.messages))]
    if batch.comments and rng.random() < 0.4:
        del batch.comments[rng.randrange(len(batch.comments))]
    if batch.comments and rng.random() < 0.5:
        comment = batch.comments[rng.randrange(len(batch.comments))]
        comment.like_count += 1
        comment.created_at.seconds += rng.choice([-5, 0, 5])
    if batch.messages and rng.random() < 0.6:
        # Mostly a change in place (a status); sometimes one that moves it in the indexes.
        message = batch.messages[rng.randrange(len(batch.messages))]
        message.status = e.MessageStatus.ValueType(message.status % 5 + 1)
        change = rng.random()
        if change < 0.25:
            message.create_time.seconds += rng.choice([-5, 5])
        elif change < 0.4:
            inbound = message.direction == e.DIRECTION_INBOUND
            message.direction = e.DIRECTION_OUTBOUND if inbound else e.DIRECTION_INBOUND
    if batch.conversations and rng.random() < 0.3:
        account.add_conversation(NOW - rng.randint(0, 10**6), rng.randint(0, 3))
    if batch.conversations and rng.random() < 0.2:
        del batch.conversations[rng.randrange(len(batch.conversations))]
    if batch.contents and rng.random() < 0.2:
        batch.contents[rng.randrange(len(batch.contents))].stats.likes += 7


async def observable(store: Store, account_id: str) -> dict[str, object]:
    """Everything a client can see of an account: every list in order, every counter."""

    async def walk(lister: object) -> list[bytes]:
        out: list[bytes] = []
        cursor = ""
        while True:
            page = await lister(cursor)  # type: ignore[operator]
            out += [item.SerializeToString(deterministic=True) for item in page.items]
            if not page.has_more:
                return out
            cursor = page.cursor

    conversations = await walk(
        lambda c: store.list_conversations(account_id, status=0, is_pinned=None, is_muted=None, cursor=c, count=50)
    )
    notes = {}
    for raw in conversations:
        conversation = e.Conversation.FromString(raw)
        if conversation.note_count:
            found = await store.conversation_notes(account_id, conversation.conversation_id)
            notes[conversation.conversation_id] = [note.SerializeToString(deterministic=True) for note in found]
    discussions = await walk(
        lambda c: store.list_discussions(
            account_id, content_id="", parent_comment_id="", is_read=None, is_new=None, cursor=c, count=50
        )
    )
    comment_threads = {threads.thread_of(e.Comment.FromString(raw)) for raw in discussions}
    return {
        "conversations": conversations,
        "notes": notes,
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
                count=50,
            )
        ),
        "contents": await walk(
            lambda c: store.list_contents(account_id, content_type=0, is_new=None, cursor=c, count=50)
        ),
        "discussions": discussions,
        "inbox": await walk(
            lambda c: store.list_unified(account_id, types=(), is_read=None, is_new=None, cursor=c, count=50)
        ),
        "stats": await store.unified_stats(account_id),
        "threads": await walk(lambda c: _thread_page(store, account_id, c)),
        "comment_threads": {
            key: handling.SerializeToString(deterministic=True)
            for key, handling in (await store.thread_handlings(account_id, comment_threads)).items()
        },
    }


async def _thread_page(store: Store, account_id: str, cursor: str) -> Page[e.Thread]:
    """A page of the inbox by thread (7 a page: the two lists merge across pages)."""
    kinds = set(thread_list.KINDS)
    listed = await thread_list.list_threads(
        store, account_id, kinds=kinds, assignee=None, thread_state=0, cursor=cursor, count=7, now_ns=NOW * 10**9
    )
    return Page(*listed)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 8), reads=st.lists(st.integers(0, 10**6), max_size=6))
async def test_deltas_equal_snapshots(new_store: StoreFactory, seed: int, steps: int, reads: list[int]) -> None:
    rng = random.Random(seed)
    account = SampleAccount("acc", seed=seed, now=NOW)
    account.fill(conversations=6, messages_per_conversation=4, contents=3, comments_per_content=4)
    by_delta, by_snapshot = new_store(), new_store()
    first = SnapshotData("acc", 1, frozenset(), account.account, copy(account.batch))
    await by_delta.apply_snapshot(first)
    await by_snapshot.apply_snapshot(SnapshotData("acc", 1, frozenset(), account.account, copy(account.batch)))
    previous = copy(account.batch)
    for step in range(steps):
        mutate(account, rng, step)
        # The team reads a few items on both masters alike.
        inbox = (await by_snapshot.list_unified("acc", types=(), is_read=None, is_new=None, cursor="", count=100)).items
        for pick in reads[: rng.randint(0, len(reads))]:
            if inbox:
                item_id = inbox[pick % len(inbox)].id
                await by_snapshot.mark_unified_read("acc", [item_id], 1)
                await by_delta.mark_unified_read("acc", [item_id], 1)
        upserts, removals = diff(previous, account.batch)
        assert await by_delta.apply_delta(DeltaData("acc", step + 1, step + 2, None, upserts, removals))
        assert await by_snapshot.apply_snapshot(
            SnapshotData("acc", step + 2, frozenset(), account.account, copy(account.batch))
        )
        previous = copy(account.batch)
        assert await observable(by_delta, "acc") == await observable(by_snapshot, "acc")


async def test_delta_against_the_wrong_base_is_refused_and_changes_nothing(new_store: StoreFactory) -> None:
    account = SampleAccount("acc", seed=1, now=NOW)
    account.fill(conversations=3, messages_per_conversation=2, contents=1, comments_per_content=2)
    store = new_store()
    await store.apply_snapshot(SnapshotData("acc", 3, frozenset(), account.account, copy(account.batch)))
    before = await observable(store, "acc")
    removals = sync_pb2.Removals(message_ids=[account.batch.messages[0].message_id])
    with pytest.raises(FailedPrecondition) as refused:
        await store.apply_delta(DeltaData("acc", 2, 4, None, sync_pb2.EntityBatch(), removals))
    assert refused.value.reason == "BASE_VERSION_MISMATCH"
    assert refused.value.metadata == {"applied_version": "3"}
    assert await observable(store, "acc") == before
    # Delivered again after it was applied: a no-op.
    assert await store.apply_delta(DeltaData("acc", 3, 4, None, sync_pb2.EntityBatch(), removals))
    assert not await store.apply_delta(DeltaData("acc", 3, 4, None, sync_pb2.EntityBatch(), removals))
    with pytest.raises(FailedPrecondition):
        await store.apply_delta(DeltaData("unknown", 0, 1, None, sync_pb2.EntityBatch(), removals))


async def test_status_reports_show_in_the_account_view_even_before_any_crawl(new_store: StoreFactory) -> None:
    store = new_store()
    report = sync_pb2.AccountStatusReport(
        account_id="fresh", login_state=e.LOGIN_STATE_LOGGED_OUT, last_error="login page shown"
    )
    await store.report_status(report)
    await store.set_presence("fresh", "worker-7", True)
    view = await store.get_account("fresh")
    assert (view.login_state, view.last_error, view.worker_id, view.online) == (
        e.LOGIN_STATE_LOGGED_OUT,
        "login page shown",
        "worker-7",
        True,
    )
    account = SampleAccount("fresh", seed=2, now=NOW)
    await store.apply_snapshot(SnapshotData("fresh", 1, frozenset(), account.account, copy(account.batch)))
    view = await store.get_account("fresh")
    assert view.worker_id == "worker-7" and view.login_state == e.LOGIN_STATE_LOGGED_OUT
    assert not view.HasField("last_crawl_at")


async def test_the_account_s_own_new_messages_and_comments_are_announced_apart(new_store: StoreFactory) -> None:
    """What the account itself wrote (a reply sent through imsync or from the platform's
    app) is announced as OWN_MESSAGE / OWN_COMMENT, once, by a delta or a snapshot alike;
    what customers wrote stays NEW_MESSAGE / NEW_COMMENT; none of it on the first snapshot."""
    store = new_store()
    events: list[ev.Event] = []
    store.on_event = events.append
    sample = SampleAccount("shop", seed=5, now=NOW)
    sample.fill(conversations=2, messages_per_conversation=2, contents=1, comments_per_content=1)
    assert await store.apply_snapshot(SnapshotData("shop", 1, frozenset(), sample.account, copy(sample.batch)))

    conversation = sample.batch.conversations[0]
    top = next(c for c in sample.batch.comments if not c.parent_comment_id)
    before = len(sample.batch.messages), len(sample.batch.comments)
    customer = sample.add_message(conversation, NOW + 10, inbound=True)
    answer = sample.add_message(conversation, NOW + 20, inbound=False)
    own_reply = sample.add_reply(top.content_id, top.comment_id, "谢谢支持", NOW + 30)
    delta = sync_pb2.EntityBatch(
        messages=sample.batch.messages[before[0] :],
        comments=sample.batch.comments[before[1] :],
        conversations=[conversation],
    )
    assert await store.apply_delta(DeltaData("shop", 1, 2, None, delta, sync_pb2.Removals()))
    assert not await store.apply_delta(DeltaData("shop", 1, 2, None, delta, sync_pb2.Removals()))  # again
    later = sample.add_message(conversation, NOW + 40, inbound=False)
    assert await store.apply_snapshot(SnapshotData("shop", 3, frozenset(), sample.account, copy(sample.batch)))

    if isinstance(store, RedisStore):  # its events go to the shared stream
        stream: Any = await store.redis.xrange(store.events_key)
        events = [ev.Event.FromString(fields[b"e"]) for _, fields in stream]
    announced = [
        (ev.EventType.Name(x.type), x.message.message_id or x.comment.comment_id)
        for x in events
        if x.type in (ev.EVENT_TYPE_NEW_MESSAGE, ev.EVENT_TYPE_OWN_MESSAGE, ev.EVENT_TYPE_OWN_COMMENT)
    ]
    assert announced == [
        ("EVENT_TYPE_NEW_MESSAGE", customer.message_id),
        ("EVENT_TYPE_OWN_MESSAGE", answer.message_id),
        ("EVENT_TYPE_OWN_COMMENT", own_reply.comment_id),
        ("EVENT_TYPE_OWN_MESSAGE", later.message_id),
    ]
    own = next(x for x in events if x.type == ev.EVENT_TYPE_OWN_MESSAGE)
    assert own.message.direction == e.DIRECTION_OUTBOUND and own.message.conversation_id == conversation.conversation_id
    stats = await store.unified_stats("shop")
    unread_customer_items = await store.list_unified("shop", types=(), is_read=False, is_new=None, cursor="", count=100)
    assert answer.message_id not in {i.message.message_id for i in unread_customer_items.items}
    assert stats.unread_direct_messages == sum(1 for i in unread_customer_items.items if i.message.message_id)
