"""Retention: a time to live per collection and a bound on entities, with lists, cursors
and counters as right after an eviction as if the evicted items had never been sent.
The rules' tests run against both store backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from imsync.v1 import sync_pb2
from services.common.sample import SampleAccount
from services.master.memory.durability import open_data_dir
from services.master.memory.store import MemoryStore
from services.master.model.commands import CommandBook
from services.master.model.keys import ns_of
from services.master.model.retention import DAY, KEEP_EVERYTHING, Retention, parse_retention
from services.master.model.store import SnapshotData, Store

from .conftest import NOW, StoreFactory
from .test_store_deltas import copy, observable

READ_AT = NOW * 10**9


def _sample() -> SampleAccount:
    account = SampleAccount("acc", seed=8, now=NOW)
    account.fill(conversations=8, messages_per_conversation=5, contents=4, comments_per_content=6)
    return account


async def _held(store: Store) -> dict[str, set[str]]:
    """The ids of what the store holds of the account, and its inbox items marked read, as
    its lists show them."""

    async def ids(lister: Callable[[str], Awaitable[Any]], key: str) -> set[str]:
        found: set[str] = set()
        cursor = ""
        while True:
            page = await lister(cursor)
            found |= {getattr(item, key) for item in page.items}
            if not page.has_more:
                return found
            cursor = page.cursor

    inbox = await ids(
        lambda c: store.list_unified("acc", types=(), is_read=True, is_new=None, cursor=c, count=100), "id"
    )
    return {
        "messages": await ids(
            lambda c: store.list_messages(
                "acc",
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
        "comments": await ids(
            lambda c: store.list_discussions(
                "acc", content_id="", parent_comment_id="", is_read=None, is_new=None, cursor=c, count=100
            ),
            "comment_id",
        ),
        "contents": await ids(
            lambda c: store.list_contents("acc", content_type=0, is_new=None, cursor=c, count=100), "content_id"
        ),
        "conversations": await ids(
            lambda c: store.list_conversations("acc", status=0, is_pinned=None, is_muted=None, cursor=c, count=100),
            "conversation_id",
        ),
        # The customers' items still held that were marked read.
        "read": inbox,
    }


async def _remaining(store: Store, account: SampleAccount) -> MemoryStore:
    """A store that was only ever sent what `store` still holds, with the same read marks."""
    held = await _held(store)
    batch = sync_pb2.EntityBatch()
    batch.messages.extend(m for m in account.batch.messages if m.message_id in held["messages"])
    batch.comments.extend(c for c in account.batch.comments if c.comment_id in held["comments"])
    batch.contents.extend(c for c in account.batch.contents if c.content_id in held["contents"])
    batch.conversations.extend(c for c in account.batch.conversations if c.conversation_id in held["conversations"])
    reference = MemoryStore()
    version = (await store.get_account("acc")).version
    await reference.apply_snapshot(SnapshotData("acc", version, frozenset(), account.account, batch))
    await reference.mark_unified_read("acc", sorted(held["read"]), READ_AT)
    return reference


async def test_time_to_live_drops_old_items_and_keeps_them_out(new_store: StoreFactory) -> None:
    account = _sample()
    times = sorted(ns_of(m.create_time) for m in account.batch.messages)
    middle = times[len(times) // 2]
    clock = [0]  # nothing has expired while the first snapshot goes in
    messages_for_a_day = Retention(
        messages=DAY, comments=0, conversations=0, contents=0, notifications=0, max_entities=0
    )
    store = new_store(retention=messages_for_a_day, clock=lambda: clock[0])
    await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), account.account, copy(account.batch)))
    inbox = (await store.list_unified("acc", types=(), is_read=None, is_new=None, cursor="", count=100)).items
    await store.mark_unified_read("acc", [item.id for item in inbox[::3]], READ_AT)
    assert len((await _held(store))["messages"]) == len(times)

    # Then "now" is such that the older half of the messages is past a one-day TTL.
    clock[0] = middle + int(DAY * 1e9)
    evicted = await store.enforce_retention()
    kept = (await _held(store))["messages"]
    assert evicted == sum(1 for t in times if t <= middle) and kept
    assert all(ns_of(m.create_time) > middle for m in account.batch.messages if m.message_id in kept)
    assert await observable(store, "acc") == await observable(await _remaining(store, account), "acc"), (
        "counters and lists as if never sent"
    )

    # The worker's next crawl still lists the old messages: they stay out.
    await store.apply_snapshot(SnapshotData("acc", 2, frozenset(), account.account, copy(account.batch)))
    assert (await _held(store))["messages"] == kept


async def test_the_bound_evicts_the_oldest_read_items_never_unread_ones_and_cursors_hold(
    new_store: StoreFactory,
) -> None:
    account = _sample()
    store = new_store()
    await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), account.account, copy(account.batch)))
    total = await store.entity_count()
    inbox = (await store.list_unified("acc", types=(), is_read=None, is_new=None, cursor="", count=100)).items
    read = [item.id for item in inbox[5:]]  # the five newest stay unread
    await store.mark_unified_read("acc", read, READ_AT)
    unread_before = {item.id for item in inbox[:5]}
    first_page = await store.list_messages(
        "acc",
        conversation_id="",
        sender_id="",
        receiver_id="",
        status=0,
        message_type=0,
        since_ns=None,
        cursor="",
        count=5,
    )

    store.retention = Retention(0, 0, 0, 0, 0, max_entities=total - 20)
    evicted = await store.enforce_retention()
    assert evicted >= 20 and await store.entity_count() <= total - 20
    held = await _held(store)
    for item in unread_before:
        kind, entity_id = item.split(":", 1)
        assert entity_id in held[f"{kind}s"], "unread items are never evicted"
    # What went is older than everything of its kind that stayed and was read.
    assert await observable(store, "acc") == await observable(await _remaining(store, account), "acc")

    rest = await store.list_messages(
        "acc",
        conversation_id="",
        sender_id="",
        receiver_id="",
        status=0,
        message_type=0,
        since_ns=None,
        cursor=first_page.cursor,
        count=100,
    )
    everything = await store.list_messages(
        "acc",
        conversation_id="",
        sender_id="",
        receiver_id="",
        status=0,
        message_type=0,
        since_ns=None,
        cursor="",
        count=100,
    )
    assert [m.message_id for m in first_page.items + rest.items] == [m.message_id for m in everything.items]

    # Crawled again, the evicted items stay out; a genuinely new message gets in.
    account.grow(NOW + 10**6)
    await store.apply_snapshot(SnapshotData("acc", 2, frozenset(), account.account, copy(account.batch)))
    assert await store.entity_count() <= total - 20 + 3


async def test_evictions_are_journaled(tmp_path: Path) -> None:
    account = _sample()
    store = MemoryStore()
    recovery = open_data_dir(tmp_path, store, CommandBook())
    recovery.journal.start()
    await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), account.account, copy(account.batch)))
    inbox = (await store.list_unified("acc", types=(), is_read=None, is_new=None, cursor="", count=100)).items
    await store.mark_unified_read("acc", [item.id for item in inbox], READ_AT)
    store.retention = Retention(0, 0, 0, 0, 0, max_entities=store.count_entities() - 30)
    assert await store.enforce_retention() > 0
    shown = await observable(store, "acc")
    await recovery.journal.close()

    again = MemoryStore()
    recovery = open_data_dir(tmp_path, again, CommandBook())
    assert recovery.problems == []
    assert await observable(again, "acc") == shown
    assert again.handling("acc").horizons == store.handling("acc").horizons


def test_retention_rules_from_the_command_line() -> None:
    assert parse_retention("") == Retention()
    assert parse_retention("none") == KEEP_EVERYTHING
    rules = parse_retention("messages=90d,comments=12h,max_entities=500")
    assert (rules.messages, rules.comments, rules.contents, rules.max_entities) == (90 * DAY, 12 * 3600, 365 * DAY, 500)
    with pytest.raises(ValueError, match="messagez"):
        parse_retention("messagez=1d")
    with pytest.raises(ValueError, match="duration"):
        parse_retention("messages=soon")


async def test_old_conversations_and_notifications_go_and_a_pinned_conversation_stays(new_store: StoreFactory) -> None:
    account = _sample()
    batch = copy(account.batch)
    for n in range(6):
        batch.notifications.add(notification_id=f"n{n}", text="liked your work").create_time.seconds = (
            NOW - n * 3 * 86_400
        )
    activity = {c.conversation_id: ns_of(c.last_message.create_time) for c in batch.conversations}
    middle = sorted(activity.values())[len(activity) // 2]
    oldest = min(activity, key=lambda cid: activity[cid])
    clock = [0]
    a_day = Retention(messages=0, comments=0, conversations=DAY, contents=0, notifications=DAY, max_entities=0)
    store = new_store(retention=a_day, clock=lambda: clock[0])
    await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), account.account, batch))
    await store.set_pinned("acc", oldest, True)
    before = await store.entity_count()

    # "Now" puts the older half of the conversations, and the older notifications, past a
    # one-day TTL.
    clock[0] = middle + int(DAY * 1e9)
    dropped_notifications = sum(1 for n in batch.notifications if ns_of(n.create_time) <= middle)
    assert 0 < dropped_notifications < len(batch.notifications)
    evicted = await store.enforce_retention()
    kept = (await _held(store))["conversations"]
    assert kept == {cid for cid, at in activity.items() if at > middle} | {oldest}, "a pinned conversation stays"
    assert evicted == len(activity) - len(kept) + dropped_notifications
    assert await store.entity_count() == before - evicted
    assert await store.enforce_retention() == 0

    # A year on, every conversation is past it: the pinned one still stays.
    clock[0] += int(365 * DAY * 1e9)
    await store.enforce_retention()
    assert (await _held(store))["conversations"] == {oldest}
