"""Notifications in the unified inbox, on both store backends: ordered with the messages and
comments of the same instant as the cursors say, counted apart in the statistics, marked
read like any item, new ones announced, and updated, removed and evicted by deltas and
retention as the other collections are."""

from __future__ import annotations

from typing import Any

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import sync_pb2
from imsync.v1 import unified_messages_pb2 as u
from services.common.sample import SampleAccount
from services.master.model.cursor import Newest
from services.master.model.retention import KEEP_EVERYTHING, parse_retention
from services.master.model.store import DeltaData, SnapshotData, Store
from services.master.redis.store import RedisStore

from .conftest import NOW, StoreFactory


def notification(nid: str, at: int, kind: e.NotificationType.ValueType = e.NOTIFICATION_TYPE_LIKE) -> e.Notification:
    found = e.Notification(
        notification_id=nid, notification_type=kind, text="赞了你的作品", actor=e.User(user_id="u9", user_name="小王")
    )
    found.create_time.FromSeconds(at)
    return found


async def walk(store: Store, account_id: str, size: int, types: tuple[int, ...] = ()) -> list[str]:
    seen: list[str] = []
    cursor = ""
    while True:
        page = await store.list_unified(account_id, types=types, is_read=None, is_new=None, cursor=cursor, count=size)
        seen += [item.id for item in page.items]
        if not page.has_more:
            return seen
        cursor = page.cursor


async def test_notifications_interleave_with_messages_and_comments_as_the_cursors_order_them(
    new_store: StoreFactory,
) -> None:
    sample = SampleAccount("ties", seed=3, now=NOW)
    sample.fill(conversations=1, messages_per_conversation=0, contents=1, comments_per_content=0)
    content_id = sample.batch.contents[0].content_id
    for index, at in enumerate((NOW + 60, NOW + 60, NOW + 61, NOW + 59)):
        sample.add_message(sample.batch.conversations[0], at, inbound=True)
        sample.add_comment(content_id, at)
        sample.batch.notifications.append(notification(f"n{index}", at))
        sample.batch.notifications.append(notification(f"n{index}b", at, e.NOTIFICATION_TYPE_FOLLOW))
    for comment in [c for c in sample.batch.comments if c.parent_comment_id]:
        sample.batch.comments.remove(comment)
    store = new_store()
    assert await store.apply_snapshot(SnapshotData("ties", 1, frozenset(), sample.account, sample.batch))
    expected = sorted(
        [(-m.create_time.seconds, Newest(f"message:{m.message_id}")) for m in sample.batch.messages]
        + [(-c.created_at.seconds, Newest(f"comment:{c.comment_id}")) for c in sample.batch.comments]
        + [(-n.create_time.seconds, Newest(f"notification:{n.notification_id}")) for n in sample.batch.notifications]
    )
    for size in (1, 2, 3, 5, 100):
        assert await walk(store, "ties", size) == [str(item) for _, item in expected], size
    only = await walk(store, "ties", 3, (u.UNIFIED_MESSAGE_TYPE_NOTIFICATION,))
    assert only == [str(item) for _, item in expected if str(item).startswith("notification:")]
    item = await store.get_unified("ties", "notification:n0b")
    assert (
        item.type == u.UNIFIED_MESSAGE_TYPE_NOTIFICATION
        and item.notification.notification_type == e.NOTIFICATION_TYPE_FOLLOW
    )
    assert item.notification.account_id == "ties" and not item.is_read


async def test_notifications_are_counted_apart_marked_read_and_announced(new_store: StoreFactory) -> None:
    sample = SampleAccount("shop", seed=4, now=NOW)
    sample.fill(conversations=2, messages_per_conversation=2, contents=1, comments_per_content=2)
    sample.batch.notifications.extend(notification(f"n{i}", NOW - i) for i in range(3))
    store = new_store()
    events: list[ev.Event] = []
    store.on_event = events.append
    assert await store.apply_snapshot(SnapshotData("shop", 1, frozenset(), sample.account, sample.batch))
    before = await store.unified_stats("shop")
    assert before.unread_notifications == 3
    assert before.total_unread == before.unread_comments + before.unread_discussions + before.unread_direct_messages
    assert await store.mark_unified_read("shop", ["notification:n1"], NOW * 10**9) == 1
    assert await store.mark_unified_read("shop", ["notification:n1"], NOW * 10**9) == 0
    after = await store.unified_stats("shop")
    assert after.unread_notifications == 2 and after.total_unread == before.total_unread
    read = await store.get_unified("shop", "notification:n1")
    assert read.is_read and read.notification.is_read and read.notification.read_at.seconds == NOW

    # A new notification in a delta is new and announced; a changed one keeps its read mark.
    changed = notification("n1", NOW - 1)
    changed.text = "赞了你的评论"
    assert await store.apply_delta(
        DeltaData(
            "shop",
            1,
            2,
            None,
            sync_pb2.EntityBatch(notifications=[notification("n9", NOW + 5), changed]),
            sync_pb2.Removals(),
        )
    )
    if isinstance(store, RedisStore):  # its events go to the shared stream
        stream: Any = await store.redis.xrange(store.events_key)
        events = [ev.Event.FromString(fields[b"e"]) for _, fields in stream]
    announced = [event.notification.notification_id for event in events if event.type == ev.EVENT_TYPE_NEW_NOTIFICATION]
    assert announced == ["n9"]
    fresh = await store.get_unified("shop", "notification:n9")
    assert fresh.is_new and not fresh.is_read
    kept = await store.get_unified("shop", "notification:n1")
    assert kept.is_read and kept.notification.text == "赞了你的评论"
    assert (await store.unified_stats("shop")).unread_notifications == 3
    # A removed one leaves the inbox and its count.
    assert await store.apply_delta(
        DeltaData("shop", 2, 3, None, sync_pb2.EntityBatch(), sync_pb2.Removals(notification_ids=["n9", "n0"]))
    )
    assert (await store.unified_stats("shop")).unread_notifications == 1
    assert not [i for i in await walk(store, "shop", 10) if i in ("notification:n9", "notification:n0")]
    # A snapshot that no longer lists them: gone, and what is left is counted right.
    sample.batch.ClearField("notifications")
    sample.batch.notifications.append(notification("n2", NOW - 2))
    assert await store.apply_snapshot(SnapshotData("shop", 4, frozenset(), sample.account, sample.batch))
    assert (await store.unified_stats("shop")).unread_notifications == 1
    assert [i for i in await walk(store, "shop", 100) if i.startswith("notification:")] == ["notification:n2"]


async def test_notifications_past_their_time_to_live_are_evicted(new_store: StoreFactory) -> None:
    now = [(NOW - 20 * 86_400) * 10**9]  # when both were young enough to be taken in
    store = new_store(retention=parse_retention("notifications=30d", KEEP_EVERYTHING), clock=lambda: now[0])
    sample = SampleAccount("shop", seed=4, now=NOW)
    sample.fill(conversations=1, messages_per_conversation=1, contents=1, comments_per_content=1)
    sample.batch.notifications.extend([notification("old", NOW - 40 * 86_400), notification("young", NOW - 86_400)])
    assert await store.apply_snapshot(SnapshotData("shop", 1, frozenset(), sample.account, sample.batch))
    await store.mark_unified_read("shop", ["notification:old"], NOW * 10**9)
    now[0] = NOW * 10**9
    assert await store.enforce_retention() >= 1
    ids = await walk(store, "shop", 100)
    assert "notification:young" in ids and "notification:old" not in ids
    assert (await store.unified_stats("shop")).unread_notifications == 1
