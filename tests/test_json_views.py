"""The JSON the embedded gateway joins pages from (model/json_views.py) is the JSON the
gateway's encoder makes of the views, in both styles, over states changed at random:
read marks, pins, mutes, the team's handling (snoozes that passed included), entities a
delta replaced, and master-owned fields a worker sent."""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from functools import partial
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.protojson import JsonStyle, to_json
from services.common.sample import SampleAccount
from services.master.memory.store import MemoryStore
from services.master.model import compiled, json_views, threads, time_keys
from services.master.model.errors import NotFound
from services.master.model.json_views import JsonViews
from services.master.model.keys import comment_key, message_key, notification_key
from services.master.model.store import DeltaData, SnapshotData

from .conftest import StoreFactory

NOW = 1_790_000_000


@pytest.fixture(params=["c", "python"])
def loops(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The one-loop pages' loops in C (_pages.c) and in Python: a test taking this runs
    with each."""
    if request.param == "c" and compiled.PAGES is None:
        pytest.skip("the compiled page loops are off or not built")
    if request.param == "python":
        monkeypatch.setattr(json_views, "PAGES", None)
    return str(request.param)


async def _store(seed: int) -> tuple[MemoryStore, SampleAccount]:
    sample = SampleAccount("acc", seed=seed, now=NOW)
    sample.fill(conversations=12, messages_per_conversation=6, contents=4, comments_per_content=6)
    rng = random.Random(seed)
    # Master-owned fields a worker sent anyway: never shown.
    for conversation in sample.batch.conversations[:3]:
        conversation.assignee, conversation.note_count, conversation.is_pinned = "worker-said", 7, True
        conversation.snoozed_until.FromSeconds(NOW)
    for message in sample.batch.messages[:5]:
        message.is_read, message.is_new = True, True
        message.read_at.FromSeconds(NOW)
    # Messages without a direction: is_inbound compares the sender with the account's user
    # (the compiled loops read the direction themselves, and ask only for these).
    for message in sample.batch.messages[5:17]:
        message.direction = e.DIRECTION_UNSPECIFIED
    # One instant shared by a customer's message, a comment and notifications: the inbox
    # orders them by kind (notifications, messages, comments), each kind by id.
    at = sample.batch.messages[1].create_time
    for comment in sample.batch.comments[:2]:
        comment.created_at.CopyFrom(at)
    for nid in ("n-1", "n-2"):
        notification = sample.batch.notifications.add(notification_id=nid, notification_type=1, text="赞了你的作品")
        notification.create_time.CopyFrom(at)
    store = MemoryStore()
    await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), sample.account, sample.batch))
    # A second crawl brings customers' messages and comments, each a second after one the
    # first had: new items among old ones, in one page (the compiled loops keep a page's
    # tails of unmarked items by shown and new).
    for message in rng.sample(list(sample.batch.messages), 8):
        conversation = next(c for c in sample.batch.conversations if c.conversation_id == message.conversation_id)
        sample.add_message(conversation, message.create_time.seconds + 1, inbound=True)
    for comment in rng.sample(list(sample.batch.comments), 5):
        sample.add_comment(comment.content_id, comment.created_at.seconds + 1)
    await store.apply_snapshot(SnapshotData("acc", 2, frozenset(), sample.account, sample.batch))
    state = store._state("acc")
    assert len(state.notifications) == 2
    assert sum(item.startswith(("message:", "comment:")) for item in state.handling.new_items) == 13
    conversations = list(state.conversations)
    now_ns = time.time_ns()
    for conversation_id in rng.sample(conversations, 4):
        await store.set_pinned("acc", conversation_id, True)
    for conversation_id in rng.sample(conversations, 3):
        await store.set_muted("acc", conversation_id, True)
    for conversation_id in rng.sample(conversations, 2):
        await store.mark_conversation_read("acc", conversation_id, now_ns)
    changes = [
        threads.assign("alice", "alice"),
        threads.set_state(e.THREAD_STATE_DONE, 0, "bob"),
        threads.set_state(e.THREAD_STATE_SNOOZED, now_ns + 3_600_000_000_000, "bob"),
        threads.set_state(e.THREAD_STATE_SNOOZED, now_ns - 1, "bob"),  # passed: shown open, unread
        threads.mark_unread("carol"),
        threads.add_note(e.Note(note_id="n1", agent="alice", text="call back")),
    ]
    for change in changes:
        await store.handle_conversation("acc", rng.choice(conversations), change, now_ns - 10)
    items = [message_key(m) for m in rng.sample(list(state.messages), 8)]
    items += [comment_key(c) for c in rng.sample(list(state.comments), 5)]
    items += [notification_key(n) for n in list(state.notifications)[:2]]
    await store.mark_unified_read("acc", items, now_ns)
    return store, sample


def _items(store: MemoryStore) -> list[str]:
    state = store._state("acc")
    return (
        [message_key(m) for m in state.messages]
        + [comment_key(c) for c in state.comments]
        + [notification_key(n) for n in state.notifications]
    )


@pytest.mark.parametrize("style", list(JsonStyle))
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_entity_json_is_its_view_encoded(style: JsonStyle, seed: int) -> None:
    store, _ = await _store(seed)
    state = store._state("acc")
    views = JsonViews(style)
    for _ in range(2):  # the second time from the kept encodings
        for conversation_id in state.conversations:
            fast = orjson.loads(views.conversation(state, conversation_id))
            assert fast == to_json(state.conversation_view(conversation_id), style), conversation_id
        for message in state.messages.values():
            assert orjson.loads(views.message(state, message)) == to_json(state.message_view(message), style)
        for comment in state.comments.values():
            assert orjson.loads(views.comment(state, comment)) == to_json(state.comment_view(comment), style)
        for notification in state.notifications.values():
            assert orjson.loads(views.notification(state, notification)) == to_json(
                state.notification_view(notification), style
            )
        for item in _items(store):
            assert orjson.loads(views.unified(state, item)) == to_json(state.unified_view(item), style), item
    assert views.kept.hits > 0
    # Operators see them (imsync_encoded_items_total, imsync_encoded_bytes).
    assert (REGISTRY.get_sample_value("imsync_encoded_items_total", {"result": "hit"}) or 0) >= views.kept.hits
    assert (REGISTRY.get_sample_value("imsync_encoded_bytes") or 0) >= views.kept.bytes > 0


async def test_a_replaced_entity_is_encoded_anew_and_the_kept_bytes_stay_bounded() -> None:
    store, _ = await _store(4)
    state = store._state("acc")
    views = JsonViews(JsonStyle.IM, max_bytes=20_000)
    conversation_id = next(iter(state.conversations))
    before = orjson.loads(views.conversation(state, conversation_id))
    changed = e.Conversation()
    changed.CopyFrom(state.conversations[conversation_id])
    changed.last_message.content = "renamed"
    state.conversations[conversation_id] = changed  # as a delta stores it: a new object
    after = orjson.loads(views.conversation(state, conversation_id))
    assert after["last_message"]["content"] == "renamed" != before["last_message"]["content"]
    assert after == to_json(state.conversation_view(conversation_id), JsonStyle.IM)
    for message in state.messages.values():
        views.message(state, message)
    assert 0 < views.kept.bytes <= 20_000
    assert len(views.kept) < len(state.messages)


@pytest.mark.parametrize("style", list(JsonStyle))
async def test_pages_as_json_equal_pages_of_views_on_every_store(new_store: StoreFactory, style: JsonStyle) -> None:
    """A store asked for its items as JSON (memory: from kept encodings; Redis: read in one
    round trip, kept by their bytes) gives the views' JSON, page after page, filtered too."""
    store = new_store()
    sample = SampleAccount("acc", seed=9, now=NOW)
    sample.fill(conversations=9, messages_per_conversation=5, contents=1, comments_per_content=1)
    await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), sample.account, sample.batch))
    conversations = [c.conversation_id for c in sample.batch.conversations]
    await store.set_pinned("acc", conversations[3], True)
    await store.handle_conversation("acc", conversations[4], threads.assign("alice", "alice"), NOW)
    await store.mark_conversation_read("acc", conversations[5], time.time_ns())
    views = JsonViews(style)
    for _ in range(2):  # the second time from what is kept
        for pinned in (None, True):
            cursor, pages = "", 0
            while True:
                asked = dict(status=0, is_pinned=pinned, is_muted=None, cursor=cursor, count=4)
                page = await store.list_conversations("acc", **asked)  # type: ignore[arg-type]
                encoded = await store.list_conversations("acc", **asked, as_json=views)  # type: ignore[arg-type]
                assert encoded.encoded is not None and not encoded.items
                assert [orjson.loads(item) for item in encoded.encoded] == [to_json(c, style) for c in page.items]
                assert (encoded.cursor, encoded.has_more) == (page.cursor, page.has_more)
                cursor, pages = page.cursor, pages + 1
                if not page.has_more:
                    break
            assert pages == (3 if pinned is None else 1)
        for conversation_id in ("", conversations[5]):
            asked_messages = dict(
                conversation_id=conversation_id,
                sender_id="",
                receiver_id="",
                status=0,
                message_type=0,
                since_ns=None,
                cursor="",
                count=7,
            )
            messages = await store.list_messages("acc", **asked_messages)  # type: ignore[arg-type]
            joined = await store.list_messages("acc", **asked_messages, as_json=views)  # type: ignore[arg-type]
            assert joined.encoded is not None
            assert [orjson.loads(item) for item in joined.encoded] == [to_json(m, style) for m in messages.items]
            assert (joined.cursor, joined.has_more) == (messages.cursor, messages.has_more)
        unified = await store.list_unified("acc", types=(), is_read=None, is_new=None, cursor="", count=6)
        as_json = await store.list_unified(
            "acc", types=(), is_read=None, is_new=None, cursor="", count=6, as_json=views
        )
        assert as_json.encoded is not None
        assert [orjson.loads(item) for item in as_json.encoded] == [to_json(m, style) for m in unified.items]
        assert (as_json.cursor, as_json.has_more) == (unified.cursor, unified.has_more)
        read = await store.list_unified("acc", types=(), is_read=True, is_new=None, cursor="", count=6, as_json=views)
        assert read.encoded is not None and len(read.encoded) >= 1  # the conversation marked read above
        for item in read.encoded:
            assert orjson.loads(item)["is_read" if style is JsonStyle.IM else "isRead"] is True
    assert views.kept.hits > 0


async def test_messages_of_a_conversation_that_is_not_there_are_not_found_on_every_store(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    sample = SampleAccount("acc", seed=9, now=NOW)
    sample.fill(conversations=2, messages_per_conversation=3, contents=1, comments_per_content=1)
    empty = sample.batch.conversations.add()
    empty.CopyFrom(sample.batch.conversations[0])
    empty.conversation_id = "no-messages-yet"
    await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), sample.account, sample.batch))
    asked = dict(sender_id="", receiver_id="", status=0, message_type=0, since_ns=None, cursor="", count=5)
    with pytest.raises(NotFound):
        await store.list_messages("acc", conversation_id="nope", **asked)  # type: ignore[arg-type]
    assert not (await store.list_messages("acc", conversation_id="no-messages-yet", **asked)).items  # type: ignore[arg-type]
    held = sample.batch.conversations[1].conversation_id
    first = await store.list_messages("acc", conversation_id=held, **{**asked, "count": 3})  # type: ignore[arg-type]
    assert len(first.items) == 3 and not first.has_more
    past = await store.list_messages("acc", conversation_id=held, **{**asked, "cursor": first.cursor})  # type: ignore[arg-type]
    assert not past.items
    with pytest.raises(NotFound):
        await store.list_messages("nobody", conversation_id="", **asked)  # type: ignore[arg-type]


async def _walk(list_page: Any, views: JsonViews | None) -> list[Any]:
    """Every page of a list, by its cursors: (items, cursor, has_more) of each."""
    pages, cursor = [], ""
    while True:
        page = await list_page(cursor=cursor, as_json=views)
        items = page.items if views is None else [orjson.loads(item) for item in page.encoded]
        pages.append((items, page.cursor, page.has_more))
        if not page.has_more:
            return pages
        cursor = page.cursor


@pytest.mark.parametrize("style", list(JsonStyle))
@pytest.mark.parametrize("seed", [5, 6])
async def test_every_page_joined_in_one_loop_is_the_views_page(style: JsonStyle, seed: int, loops: str) -> None:
    """The memory store's unfiltered pages are joined in one loop each (json_views.py's
    conversations_of, messages_of, inbox_of; in C or Python, `loops`): every page, after
    every cursor and since a time, is the views' page; read again from what is kept, after
    changes that move read states or bring new messages, and with kept encodings evicted."""
    store, sample = await _store(seed)
    state = store._state("acc")
    conversation_id = next(iter(state.messages_by_conversation))
    # Half the messages are older: those pages end before them.
    since = sorted(m.create_time.ToNanoseconds() for m in state.messages.values())[len(state.messages) // 2]
    messages = partial(store.list_messages, "acc", sender_id="", receiver_id="", status=0, message_type=0)
    inbox = partial(store.list_unified, "acc", types=(), is_read=None, is_new=None, count=5)
    lists = {
        "conversations": partial(store.list_conversations, "acc", status=0, is_pinned=None, is_muted=None, count=3),
        "messages": partial(messages, conversation_id="", since_ns=None, count=4),
        "a conversation's messages": partial(messages, conversation_id=conversation_id, since_ns=None, count=2),
        "messages since": partial(messages, conversation_id="", since_ns=since, count=4),
        "the inbox": partial(inbox, since_ns=None),
        "the inbox since": partial(inbox, since_ns=since),
    }
    rng = random.Random(seed)
    walked: dict[str, tuple[int, int]] = {}
    kept_all, kept_some = JsonViews(style), JsonViews(style, max_bytes=4_000)
    for views in (kept_all, kept_some):
        for round_ in range(3):
            # A customer writes: a message kept as it came, beside the snapshot's.
            conversation = rng.choice(list(sample.batch.conversations))
            upserts = sync_pb2.EntityBatch()
            upserts.messages.append(sample.add_message(conversation, NOW + 100 + state.version, inbound=True))
            upserts.conversations.append(conversation)
            delta = DeltaData("acc", state.version, state.version + 1, None, upserts, sync_pb2.Removals())
            assert await store.apply_delta(delta)
            for name, list_page in lists.items():
                expected = [
                    ([to_json(item, style) for item in items], cursor, more)
                    for items, cursor, more in await _walk(list_page, None)
                ]
                assert await _walk(list_page, views) == expected, (name, round_)
                walked[name] = sum(len(items) for items, _, _ in expected), len(expected)
            # Read states move between rounds: what is kept must not show the old ones.
            items = rng.sample(_items(store), 6)
            await store.mark_unified_read("acc", items, time.time_ns())
            await store.set_pinned("acc", rng.choice(list(state.conversations)), True)
    # An inbox page read again: each of its messages' and comments' items found among the
    # kept wrappers, and counted there (imsync_encoded_items_total), none among the heads.
    read_inbox = partial(inbox, since_ns=None, cursor="", as_json=kept_all)
    await read_inbox()
    hits = kept_all.wrappers.hits, kept_all.kept.hits
    page = await read_inbox()
    assert page.encoded is not None
    joined = sum(1 for item in page.encoded if not orjson.loads(item)["id"].startswith("notification:"))
    assert kept_all.wrappers.hits - hits[0] >= joined > 0 and kept_all.kept.hits == hits[1]
    # Items in pages: every message, half of them since the time, more than one page each.
    assert walked["messages"][0] == len(state.messages) and walked["messages since"][0] < len(state.messages)
    assert all(pages > 1 for _, pages in walked.values()), walked


def test_the_compiled_loops_refuse_what_is_not_theirs_and_pass_errors_on() -> None:
    """_pages.c's loops, given what their callers never give (a key of another shape, an
    entity's place past its table, orders that are not three), raise; an error raised by
    what they call (`stop`, `is_inbound`) comes out of them; what is not kept is left to
    the caller, named, and what is, is joined."""
    if compiled.PAGES is None:
        pytest.skip("the compiled page loops are off or not built")
    pages = compiled.PAGES
    kept: OrderedDict[int, tuple[Any, bytes]] = OrderedDict()
    key = time_keys.of_time(NOW, 0, "m1")
    with pytest.raises(TypeError):
        pages.conversations([b"not a tuple"], 5, {}, {}, kept, {}, set(), set(), {})
    with pytest.raises(ValueError, match="time key"):
        pages.messages([b"short"], 5, None, {}, None, kept, {}, set(), bool, {})
    with pytest.raises(IndexError):
        pages.messages([key], 5, None, {"m1": 1 << 32}, [[]], kept, {}, set(), bool, {})
    for orders, kinds, error in (
        (([], []), ("a", "b"), ValueError),
        (([], [b"short"], []), ("a", "b", "c"), ValueError),
        (([], (key,), []), ("a", "b", "c"), TypeError),
    ):
        with pytest.raises(error):
            pages.inbox(orders, 5, None, kinds, {}, None, {}, None, kept, {}, set(), bool, bool, {})

    def refuse(_: object) -> bool:
        raise RuntimeError("said no")

    with pytest.raises(RuntimeError, match="said no"):
        pages.messages([key], 5, refuse, {}, None, kept, {}, set(), bool, {})
    message = e.Message(message_id="m1")
    kept[id(message)] = (message, b'{"message_id":"m1"')
    with pytest.raises(RuntimeError, match="said no"):
        pages.messages([key], 5, None, {"m1": message}, None, kept, {}, set(), refuse, {})
    # Not there, or no tail kept for its read state: left to the caller.
    assert pages.messages([key], 5, None, {}, None, kept, {}, set(), bool, {}) == ([None], key, False, [(0, "m1")], 0)
    tails = {("message", None, True, False): b',"is_read":true}'}
    inbound = pages.messages([key], 5, None, {"m1": message}, None, kept, {}, set(), lambda _: True, tails)
    assert inbound == ([None], key, False, [(0, "m1")], 1)
    outbound = pages.messages([key, key], 1, None, {"m1": message}, None, kept, {}, set(), lambda _: False, tails)
    assert outbound == ([b'{"message_id":"m1","is_read":true}'], key, True, [], 1)
