"""The store's behaviour, called in-process: every test runs against each backend (the
memory store, and the Redis store on a real redis-server)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from imsync.v1 import unified_messages_pb2 as u
from services.common.sample import SampleAccount
from services.master.model import cursor as cursors
from services.master.model import filters
from services.master.model import store as model_store
from services.master.model.cursor import Newest
from services.master.model.errors import FailedPrecondition, InvalidArgument, NotFound
from services.master.model.store import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, DeltaData, Page, SnapshotData, Store

from .conftest import NOW, StoreFactory


def snapshot(account: SampleAccount, version: int, collections: tuple[int, ...] = ()) -> SnapshotData:
    batch = sync_pb2.EntityBatch()
    batch.CopyFrom(account.batch)
    profile = e.Account()
    profile.CopyFrom(account.account)
    return SnapshotData(account.account_id, version, frozenset(collections), profile, batch)  # type: ignore[arg-type]


@pytest.fixture
def account() -> SampleAccount:
    sample = SampleAccount("acc-1", seed=5, now=NOW)
    sample.fill(conversations=45, messages_per_conversation=4, contents=5, comments_per_content=6)
    return sample


@pytest.fixture
async def store(account: SampleAccount, new_store: StoreFactory) -> Store:
    store = new_store()
    assert await store.apply_snapshot(snapshot(account, 1))
    return store


async def every_item(list_page: Callable[..., Awaitable[Page[Any]]], **asked: Any) -> list[Any]:
    """Every item of a list, page after page by each page's cursor, as a client walks it."""
    items: list[Any] = []
    cursor = ""
    while True:
        page = await list_page(**asked, cursor=cursor)
        items += page.items
        if not page.has_more:
            return items
        cursor = page.cursor


async def walk_conversations(store: Store, account_id: str, count: int) -> list[str]:
    asked = {"status": 0, "is_pinned": None, "is_muted": None, "count": count}
    return [c.conversation_id for c in await every_item(store.list_conversations, account_id=account_id, **asked)]


def last_activity(conversation: e.Conversation) -> int:
    return conversation.last_message.create_time.ToNanoseconds()


async def test_conversations_come_newest_first_and_each_exactly_once(store: Store, account: SampleAccount) -> None:
    seen = await walk_conversations(store, "acc-1", 7)
    assert sorted(seen) == sorted(c.conversation_id for c in account.batch.conversations)
    assert len(seen) == len(set(seen))
    times = [last_activity(await store.get_conversation("acc-1", cid)) for cid in seen]
    assert times == sorted(times, reverse=True)


async def test_keyset_cursor_survives_items_arriving_between_pages(store: Store, account: SampleAccount) -> None:
    original = {c.conversation_id for c in account.batch.conversations}
    first = await store.list_conversations("acc-1", status=0, is_pinned=None, is_muted=None, cursor="", count=10)
    # New conversations, some newer and some older than the page boundary, arrive now.
    for offset in (10, -20 * 86_400, -5 * 86_400):
        account.add_conversation(NOW + offset, 2)
    assert await store.apply_snapshot(snapshot(account, 2))
    seen = [c.conversation_id for c in first.items]
    cursor = first.cursor
    while True:
        page = await store.list_conversations("acc-1", status=0, is_pinned=None, is_muted=None, cursor=cursor, count=10)
        seen += [c.conversation_id for c in page.items]
        if not page.has_more:
            break
        cursor = page.cursor
    assert len(seen) == len(set(seen)), "an item was repeated"
    assert original <= set(seen), "an item that was there all along was skipped"


async def test_snapshot_replaces_atomically_and_absent_items_are_gone(store: Store, account: SampleAccount) -> None:
    dropped = account.batch.conversations[0].conversation_id
    del account.batch.conversations[0]
    assert await store.apply_snapshot(snapshot(account, 2))
    with pytest.raises(NotFound):
        await store.get_conversation("acc-1", dropped)
    assert (await store.get_account("acc-1")).version == 2


async def test_partial_snapshot_keeps_other_collections(store: Store, account: SampleAccount) -> None:
    contents_before = len(account.batch.contents)
    del account.batch.contents[:]
    del account.batch.conversations[:]
    assert await store.apply_snapshot(snapshot(account, 2, (sync_pb2.COLLECTION_CONVERSATIONS,)))
    page = await store.list_contents("acc-1", content_type=0, is_new=None, cursor="", count=100)
    assert len(page.items) == contents_before
    assert await walk_conversations(store, "acc-1", 50) == []


async def test_read_marks_survive_every_later_snapshot(store: Store, account: SampleAccount) -> None:
    conversation_id = account.batch.conversations[3].conversation_id
    before = (await store.get_conversation("acc-1", conversation_id)).unread_count
    assert before > 0
    marked, conversation = await store.mark_conversation_read("acc-1", conversation_id, 123)
    assert (marked, conversation.unread_count) == (before, 0)
    stats_after_mark = await store.unified_stats("acc-1")
    # The worker knows nothing of read marks and sends the same state again, then more.
    assert await store.apply_snapshot(snapshot(account, 2))
    assert (await store.get_conversation("acc-1", conversation_id)).unread_count == 0
    assert await store.unified_stats("acc-1") == stats_after_mark
    messages = await store.list_messages(
        "acc-1",
        conversation_id=conversation_id,
        sender_id="",
        receiver_id="",
        status=0,
        message_type=0,
        since_ns=None,
        cursor="",
        count=100,
    )
    inbound = [m for m in messages.items if m.direction == e.DIRECTION_INBOUND]
    assert inbound and all(m.is_read and m.read_at.ToNanoseconds() == 123 for m in inbound)


async def test_unread_counts_agree_everywhere(store: Store, account: SampleAccount) -> None:
    stats = await store.unified_stats("acc-1")
    conversations = [await store.get_conversation("acc-1", c.conversation_id) for c in account.batch.conversations]
    assert stats.unread_direct_messages == sum(c.unread_count for c in conversations)
    contents = (await store.list_contents("acc-1", content_type=0, is_new=None, cursor="", count=100)).items
    assert stats.unread_comments + stats.unread_discussions == sum(c.stats.unread_comments for c in contents)
    inbox_unread = 0
    cursor = ""
    while True:
        page = await store.list_unified("acc-1", types=(), is_read=False, is_new=None, cursor=cursor, count=100)
        inbox_unread += len(page.items)
        if not page.has_more:
            break
        cursor = page.cursor
    assert inbox_unread == stats.total_unread


async def test_mark_unified_read_many_and_types_filter(store: Store) -> None:
    page = await store.list_unified(
        "acc-1", types=(u.UNIFIED_MESSAGE_TYPE_DIRECT_MESSAGE,), is_read=None, is_new=None, cursor="", count=5
    )
    assert {item.type for item in page.items} == {u.UNIFIED_MESSAGE_TYPE_DIRECT_MESSAGE}
    before = await store.unified_stats("acc-1")
    assert await store.mark_unified_read("acc-1", [item.id for item in page.items], 1) == 5
    assert (await store.unified_stats("acc-1")).unread_direct_messages == before.unread_direct_messages - 5
    # Marking again changes nothing.
    assert await store.mark_unified_read("acc-1", [item.id for item in page.items], 2) == 0


async def test_a_bad_id_in_read_many_marks_nothing(store: Store) -> None:
    page = await store.list_unified("acc-1", types=(), is_read=None, is_new=None, cursor="", count=3)
    before = await store.unified_stats("acc-1")
    with pytest.raises(NotFound):
        await store.mark_unified_read("acc-1", [page.items[0].id, "message:does-not-exist"], 1)
    with pytest.raises(InvalidArgument) as refused:
        await store.mark_unified_read("acc-1", [page.items[0].id, "nonsense"], 1)
    assert refused.value.field == "ids[1]"
    assert await store.unified_stats("acc-1") == before


async def test_items_arriving_after_the_first_sync_are_new_until_read(store: Store, account: SampleAccount) -> None:
    assert not (await store.list_unified("acc-1", types=(), is_read=None, is_new=True, cursor="", count=10)).items
    conversation = account.batch.conversations[0]
    message = account.add_message(conversation, NOW + 60, inbound=True)
    assert await store.apply_snapshot(snapshot(account, 2))
    fresh = (await store.list_unified("acc-1", types=(), is_read=None, is_new=True, cursor="", count=10)).items
    assert [item.id for item in fresh] == [f"message:{message.message_id}"]
    await store.mark_message_read("acc-1", message.message_id, 5)
    assert not (await store.list_unified("acc-1", types=(), is_read=None, is_new=True, cursor="", count=10)).items


async def test_versions(store: Store, account: SampleAccount) -> None:
    assert await store.account_versions(["acc-1", "other"]) == {"acc-1": 1, "other": 0}
    assert not await store.apply_snapshot(snapshot(account, 1)), "the same version again is a no-op"
    assert await store.apply_snapshot(snapshot(account, 5))
    del account.batch.conversations[:]
    assert not await store.apply_snapshot(snapshot(account, 1)), "an applied version delivered late changes nothing"
    with pytest.raises(FailedPrecondition) as refused:
        await store.apply_snapshot(snapshot(account, 4))  # never applied, and older: refused
    assert refused.value.reason == "STALE_VERSION" and refused.value.metadata == {"applied_version": "5"}
    assert (await store.get_account("acc-1")).version == 5
    assert await walk_conversations(store, "acc-1", 100)


async def test_page_size_default_and_clamp(store: Store) -> None:
    async def size(count: int) -> int:
        page = await store.list_messages(
            "acc-1",
            conversation_id="",
            sender_id="",
            receiver_id="",
            status=0,
            message_type=0,
            since_ns=None,
            cursor="",
            count=count,
        )
        return len(page.items)

    assert await size(0) == DEFAULT_PAGE_SIZE
    assert await size(MAX_PAGE_SIZE + 500) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument) as refused:
        await size(-1)
    assert refused.value.field == "count"


async def test_since_time_stops_at_older_messages(store: Store, account: SampleAccount) -> None:
    since = NOW - 10 * 86_400
    page = await store.list_messages(
        "acc-1",
        conversation_id="",
        sender_id="",
        receiver_id="",
        status=0,
        message_type=0,
        since_ns=since * 10**9,
        cursor="",
        count=100,
    )
    expected = {m.message_id for m in account.batch.messages if m.create_time.seconds >= since}
    assert 0 < len(expected) < 100
    assert {m.message_id for m in page.items} == expected
    assert not page.has_more


@pytest.mark.parametrize(
    "bad", ["!!!", "WzFd", cursors.encode("contents", (1, "x")), cursors.encode("conversations", ("a", 1, "x"))]
)
async def test_malformed_or_foreign_cursors_are_refused(store: Store, bad: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await store.list_conversations("acc-1", status=0, is_pinned=None, is_muted=None, cursor=bad, count=5)
    assert refused.value.field == "cursor"


async def test_unknown_and_missing_accounts(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.list_conversations("nobody", status=0, is_pinned=None, is_muted=None, cursor="", count=5)
    with pytest.raises(InvalidArgument) as refused:
        await store.unified_stats("")
    assert refused.value.field == "account_id"


async def test_accounts_and_filters(store: Store, account: SampleAccount) -> None:
    other = SampleAccount("acc-0", seed=6, now=NOW)
    other.account.status = e.ACCOUNT_STATUS_BANNED
    await store.apply_snapshot(snapshot(other, 1))
    listed = (await store.list_accounts(status=0, platform=0, cursor="", count=10)).items
    assert [a.account_id for a in listed] == ["acc-0", "acc-1"]
    banned = (await store.list_accounts(status=e.ACCOUNT_STATUS_BANNED, platform=0, cursor="", count=10)).items
    assert [a.account_id for a in banned] == ["acc-0"]


async def test_discussions_of_a_work_and_replies(store: Store, account: SampleAccount) -> None:
    reply = next(c for c in account.batch.comments if c.parent_comment_id)
    replies = (
        await store.list_discussions(
            "acc-1",
            content_id="",
            parent_comment_id=reply.parent_comment_id,
            is_read=None,
            is_new=None,
            cursor="",
            count=10,
        )
    ).items
    assert [c.comment_id for c in replies] == [reply.comment_id]
    # The account's own reply is not unread: it is the team's own words.
    assert replies[0].is_read
    of_work = (
        await store.list_discussions(
            "acc-1", content_id=reply.content_id, parent_comment_id="", is_read=None, is_new=None, cursor="", count=100
        )
    ).items
    expected = {c.comment_id for c in account.batch.comments if c.content_id == reply.content_id}
    assert {c.comment_id for c in of_work} == expected
    created = [c.created_at.ToNanoseconds() for c in of_work]
    assert created == sorted(created, reverse=True)


async def test_mark_content_read(store: Store, account: SampleAccount) -> None:
    content_id = account.batch.contents[0].content_id
    before = (await store.get_content("acc-1", content_id)).stats.unread_comments
    assert before > 0
    marked, content = await store.mark_content_read("acc-1", content_id, 9)
    assert marked == before and content.stats.unread_comments == 0


async def test_views_carry_timestamps_not_numbers(store: Store, account: SampleAccount) -> None:
    message = await store.get_message("acc-1", account.batch.messages[0].message_id)
    assert isinstance(message.create_time, Timestamp)
    assert message.create_time == account.batch.messages[0].create_time


async def test_items_are_found_by_id_alone_when_unambiguous(store: Store, account: SampleAccount) -> None:
    conversation_id = account.batch.conversations[0].conversation_id
    assert (await store.get_conversation("", conversation_id)).account_id == "acc-1"
    message_id = account.batch.messages[0].message_id
    assert (await store.get_unified("", f"message:{message_id}")).account_id == "acc-1"
    # The same platform id under a second account asks for account_id.
    twin = SampleAccount("acc-2", seed=77, now=NOW)
    twin.fill(conversations=1, messages_per_conversation=1, contents=0, comments_per_content=0)
    twin.batch.conversations[0].conversation_id = conversation_id
    twin.batch.messages[0].conversation_id = conversation_id
    await store.apply_snapshot(snapshot(twin, 1))
    with pytest.raises(InvalidArgument) as refused:
        await store.get_conversation("", conversation_id)
    assert refused.value.field == "account_id"
    assert (await store.get_conversation("acc-2", conversation_id)).account_id == "acc-2"
    with pytest.raises(NotFound):
        await store.get_message("acc-2", message_id)


async def test_pinned_conversations_come_first_and_pins_survive_snapshots(store: Store, account: SampleAccount) -> None:
    oldest = (await walk_conversations(store, "acc-1", 100))[-1]
    pinned = await store.set_pinned("acc-1", oldest, True)
    assert pinned.is_pinned
    assert (await walk_conversations(store, "acc-1", 100))[0] == oldest
    assert await store.apply_snapshot(snapshot(account, 2))
    assert (await walk_conversations(store, "acc-1", 100))[0] == oldest
    only_pinned = await store.list_conversations("acc-1", status=0, is_pinned=True, is_muted=None, cursor="", count=10)
    assert [c.conversation_id for c in only_pinned.items] == [oldest]
    await store.set_pinned("acc-1", oldest, False)
    assert (await walk_conversations(store, "acc-1", 100))[-1] == oldest
    assert (await store.set_muted("acc-1", oldest, True)).is_muted
    assert (await store.get_conversation("acc-1", oldest)).is_muted


async def test_items_of_the_same_second_come_newest_first_by_id_and_cursors_hold(new_store: StoreFactory) -> None:
    """A platform's times are whole seconds: a burst of messages shares one, and the larger
    (later) id comes first, as newer items do; paging through the tie skips nothing."""
    sample = SampleAccount("burst", seed=9, now=NOW)
    sample.fill(conversations=1, messages_per_conversation=0, contents=0, comments_per_content=0)
    conversation = sample.batch.conversations[0]
    burst = [sample.add_message(conversation, NOW + 60, inbound=True).message_id for _ in range(7)]
    store = new_store()
    assert await store.apply_snapshot(SnapshotData("burst", 1, frozenset(), sample.account, sample.batch))
    seen: list[str] = []
    cursor = ""
    while True:
        page = await store.list_messages(
            "burst",
            conversation_id=conversation.conversation_id,
            sender_id="",
            receiver_id="",
            status=0,
            message_type=0,
            since_ns=None,
            cursor=cursor,
            count=3,
        )
        seen += [m.message_id for m in page.items]
        if not page.has_more:
            break
        cursor = page.cursor
    assert seen == sorted(burst, reverse=True)
    inbox = await store.list_unified("burst", types=(), is_read=None, is_new=None, cursor="", count=100)
    assert [item.message.message_id for item in inbox.items] == sorted(burst, reverse=True)


async def test_the_inbox_orders_messages_and_comments_of_one_instant_as_its_cursors_do(new_store: StoreFactory) -> None:
    """Customers' messages and comments, many at one instant: the inbox is newest first,
    and at one instant in the order of (-ns, Newest("message:<id>" / "comment:<id>")), in
    both backends, through pages that end inside the tie."""
    sample = SampleAccount("ties", seed=11, now=NOW)
    sample.fill(conversations=2, messages_per_conversation=0, contents=1, comments_per_content=0)
    content_id = sample.batch.contents[0].content_id
    for at in (NOW + 60, NOW + 60, NOW + 61, NOW + 60, NOW + 59):
        sample.add_message(sample.batch.conversations[0], at, inbound=True)
        sample.add_comment(content_id, at)
    # Only customers' comments are in the inbox: the sample's own answers go.
    own = [c for c in sample.batch.comments if c.parent_comment_id]
    for comment in own:
        sample.batch.comments.remove(comment)
    store = new_store()
    assert await store.apply_snapshot(SnapshotData("ties", 1, frozenset(), sample.account, sample.batch))
    expected = sorted(
        [(-m.create_time.seconds, Newest(f"message:{m.message_id}")) for m in sample.batch.messages]
        + [
            (-c.created_at.seconds, Newest(f"comment:{c.comment_id}"))
            for c in sample.batch.comments
            if not c.parent_comment_id
        ],
    )
    for size in (1, 2, 3, 100):
        seen: list[str] = []
        cursor = ""
        while True:
            page = await store.list_unified("ties", types=(), is_read=None, is_new=None, cursor=cursor, count=size)
            seen += [item.id for item in page.items]
            if not page.has_more:
                break
            cursor = page.cursor
        assert seen == [str(item) for _, item in expected], size


async def test_master_owned_fields_a_worker_sets_never_show(new_store: StoreFactory, account: SampleAccount) -> None:
    """The worker's values of the master's own fields are not checked, cleared or kept in
    mind: every read sets them from the master's state (even a read_at out of range)."""
    batch = sync_pb2.EntityBatch()
    batch.CopyFrom(account.batch)
    for m in batch.messages:
        m.is_read, m.is_new = True, True
        m.read_at.seconds = 10**12  # out of any printable range: ignored, not refused
    for c in batch.comments:
        c.is_read, c.is_new, c.is_handled = True, True, True
        c.read_at.seconds = 5
    for conversation in batch.conversations:
        conversation.unread_count, conversation.is_pinned, conversation.is_muted = 77, True, True
    for content in batch.contents:
        content.is_new = True
        content.stats.unread_comments, content.stats.new_comments = 55, 44
    store = new_store()
    assert await store.apply_snapshot(SnapshotData("acc-1", 1, frozenset(), account.account, batch))
    upserts = sync_pb2.EntityBatch()
    upserts.messages.add().CopyFrom(batch.messages[0])
    upserts.comments.add().CopyFrom(batch.comments[0])
    assert await store.apply_delta(DeltaData("acc-1", 1, 2, None, upserts, sync_pb2.Removals()))

    inbound = {m.conversation_id: 0 for m in batch.conversations}
    for m in account.batch.messages:
        if m.direction == e.DIRECTION_INBOUND:
            inbound[m.conversation_id] += 1
        shown = await store.get_message("acc-1", m.message_id)
        assert (shown.is_read, shown.is_new, shown.HasField("read_at")) == (
            m.direction != e.DIRECTION_INBOUND,
            False,
            False,
        )
        assert shown.account_id == "acc-1"
    for c in account.batch.comments:
        shown_comment = await store.get_discussion("acc-1", c.comment_id)
        assert (shown_comment.is_new, shown_comment.is_handled, shown_comment.HasField("read_at")) == (
            False,
            False,
            False,
        )
        assert shown_comment.is_read == (c.author.user_id == account.account.user_id)
    for conversation in account.batch.conversations:
        shown_conversation = await store.get_conversation("acc-1", conversation.conversation_id)
        assert shown_conversation.unread_count == inbound[conversation.conversation_id]
        assert not shown_conversation.is_pinned and not shown_conversation.is_muted
    for content in account.batch.contents:
        shown_content = await store.get_content("acc-1", content.content_id)
        customers = [
            c
            for c in account.batch.comments
            if c.content_id == content.content_id and c.author.user_id != account.account.user_id
        ]
        assert (shown_content.is_new, shown_content.stats.new_comments) == (False, 0)
        assert shown_content.stats.unread_comments == len(customers)


async def test_a_message_without_a_direction_is_the_customers_unless_the_account_sent_it(
    new_store: StoreFactory, account: SampleAccount
) -> None:
    batch = sync_pb2.EntityBatch()
    batch.CopyFrom(account.batch)
    ours, theirs = batch.messages[0], batch.messages[1]
    ours.direction = theirs.direction = e.DIRECTION_UNSPECIFIED
    ours.sender.user_id = account.account.user_id
    theirs.sender.user_id = "a-customer"
    inbound_before = sum(1 for m in account.batch.messages if m.direction == e.DIRECTION_INBOUND)
    was_inbound = sum(1 for m in account.batch.messages[:2] if m.direction == e.DIRECTION_INBOUND)
    store = new_store()
    assert await store.apply_snapshot(SnapshotData("acc-1", 1, frozenset(), account.account, batch))
    stats = await store.unified_stats("acc-1")
    assert stats.unread_direct_messages == inbound_before - was_inbound + 1
    assert (await store.get_message("acc-1", ours.message_id)).is_read
    assert not (await store.get_message("acc-1", theirs.message_id)).is_read
    page = await store.list_unified("acc-1", types=(), is_read=None, is_new=None, cursor="", count=MAX_PAGE_SIZE)
    listed = set()
    while True:
        listed |= {item.id for item in page.items}
        if not page.has_more:
            break
        page = await store.list_unified(
            "acc-1", types=(), is_read=None, is_new=None, cursor=page.cursor, count=MAX_PAGE_SIZE
        )
    assert f"message:{theirs.message_id}" in listed and f"message:{ours.message_id}" not in listed


@pytest.mark.parametrize("scan", [model_store.SCAN, 5])
async def test_every_inbox_filter_finds_what_the_views_show_on_every_page(
    new_store: StoreFactory, account: SampleAccount, scan: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filtered inbox page reads only the orders of the kinds its types ask for and
    refuses most items before their views are built (filters.unified_kinds,
    unified_before_view); walked page by page, every filter still finds exactly the items
    whose views pass it, in order: read or not, the account's own, new, each type. So too
    when each page looks at 5 keys at most (store.SCAN): short pages, the walk the same."""
    monkeypatch.setattr(model_store, "SCAN", scan)
    store = new_store()
    assert await store.apply_snapshot(snapshot(account, 1))
    # After the first sync, what arrives is new: messages and notifications.
    for conversation in account.batch.conversations[:4]:
        account.add_message(conversation, NOW + 60, inbound=True)
    for nid in ("n-1", "n-2", "n-3"):
        notification = account.batch.notifications.add(notification_id=nid, notification_type=1, text="赞了你的作品")
        notification.create_time.FromSeconds(NOW + 30)
    # And customers answering customers' comments (discussions).
    for parent in [c for c in account.batch.comments if not c.parent_comment_id][:3]:
        reply = account.batch.comments.add()
        reply.CopyFrom(parent)
        reply.comment_id, reply.parent_comment_id = parent.comment_id + "1", parent.comment_id
        reply.created_at.FromSeconds(NOW + 45)
    assert await store.apply_snapshot(snapshot(account, 2))
    ids = [item.id for item in await _inbox(store, (), None, None, 100)]
    assert any(i.startswith("notification:") for i in ids)
    await store.mark_unified_read("acc-1", ids[::3] + ids[1:7], NOW)
    views = await _inbox(store, (), None, None, 100)
    kinds_of = {item.type for item in views}
    assert len(kinds_of) == 4, "messages, comments, discussions and notifications"
    both = (u.UNIFIED_MESSAGE_TYPE_COMMENT, u.UNIFIED_MESSAGE_TYPE_NOTIFICATION)
    for types in [(), *((kind,) for kind in sorted(kinds_of)), both]:
        for is_read in (None, True, False):
            for is_new in (None, True, False):
                wanted = filters.unified(types, is_read, is_new)
                expected = [item.id for item in views if wanted(item)]
                found = [item.id for item in await _inbox(store, types, is_read, is_new, 4)]
                assert found == expected, (types, is_read, is_new)
    # Read, unread and new, unread and not new: each filter found some (reading ends new).
    assert all(
        any(filters.unified((), r, n)(item) for item in views)
        for r, n in ((True, False), (False, True), (False, False))
    )


async def _inbox(
    store: Store, types: tuple[int, ...], is_read: bool | None, is_new: bool | None, count: int
) -> list[u.UnifiedMessage]:
    """Every item of acc-1's inbox with these filters, page by page."""
    asked = {"types": types, "is_read": is_read, "is_new": is_new, "count": count}
    return await every_item(store.list_unified, account_id="acc-1", **asked)


async def test_a_filter_nothing_passes_answers_short_pages_not_a_walk_of_the_account(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page looks at `store.SCAN` keys at most after its cursor: a filter no item passes
    (nothing read yet, no conversation pinned, no comment new) answers an empty page with
    has_more and a cursor past the keys it looked at, until the end, rather than walking
    the account while the master does nothing else."""
    monkeypatch.setattr(model_store, "SCAN", 50)
    lists: list[tuple[Callable[..., Awaitable[Page[Any]]], dict[str, Any]]] = [
        (store.list_unified, {"types": (), "is_read": True, "is_new": None}),
        (store.list_conversations, {"status": 0, "is_pinned": True, "is_muted": None}),
        (store.list_discussions, {"content_id": "", "parent_comment_id": "", "is_read": None, "is_new": True}),
    ]
    for list_page, asked in lists:
        pages = 0
        cursor = ""
        while True:
            page = await list_page(account_id="acc-1", **asked, cursor=cursor, count=20)
            pages += 1
            assert page.items == [], list_page
            if not page.has_more:
                break
            assert page.cursor and page.cursor != cursor
            cursor = page.cursor
        unfiltered = {k: None if isinstance(v, bool) else v for k, v in asked.items()}
        every = await every_item(list_page, account_id="acc-1", **unfiltered, count=100)
        assert pages == max(1, -(-len(every) // 50)), (list_page, len(every))


async def test_a_delta_touching_thousands_of_entities_finds_each_of_them(new_store: StoreFactory) -> None:
    """A delta carrying 2,500 messages the account holds, 1,200 of them read: each is found
    as it is (Redis reads what a change touches in one script, a thousand fields a call), so
    the read marks stay and nothing counts as arrived again."""
    sample = SampleAccount("acc-1", seed=9, now=NOW)
    conversation = sample.add_conversation(NOW - 100_000, 0)
    for index in range(2_500):
        sample.add_message(conversation, NOW - 90_000 + index, inbound=True)
    store = new_store()
    assert await store.apply_snapshot(snapshot(sample, 1))
    read = [f"message:{m.message_id}" for m in sample.batch.messages[:1_200]]
    for at in range(0, len(read), 1_000):
        assert await store.mark_unified_read("acc-1", read[at : at + 1_000], NOW * 10**9) == len(read[at : at + 1_000])
    assert (await store.unified_stats("acc-1")).unread_direct_messages == 1_300

    upserts = sync_pb2.EntityBatch()
    upserts.CopyFrom(sample.batch)
    for message in upserts.messages:
        message.content += " (edited)"
    assert await store.apply_delta(DeltaData("acc-1", 1, 2, None, upserts, sync_pb2.Removals()))
    assert (await store.unified_stats("acc-1")).unread_direct_messages == 1_300
    assert (await store.get_conversation("acc-1", conversation.conversation_id)).unread_count == 1_300
    first, last = sample.batch.messages[0], sample.batch.messages[-1]
    assert (await store.get_message("acc-1", first.message_id)).is_read
    assert not (await store.get_message("acc-1", last.message_id)).is_read
    assert (await store.get_message("acc-1", last.message_id)).content.endswith(" (edited)")
