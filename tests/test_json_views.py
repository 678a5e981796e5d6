"""The JSON the embedded gateway joins pages from (model/json_views.py) is the JSON the
gateway's encoder makes of the views, in both styles, over states changed at random:
read marks, pins, mutes, the team's handling (snoozes that passed included), entities a
delta replaced, and master-owned fields a worker sent."""

from __future__ import annotations

import random
import time

import orjson
import pytest

from imsync.v1 import entities_pb2 as e
from services.common.protojson import JsonStyle, to_json
from services.common.sample import SampleAccount
from services.master.memory.store import MemoryStore
from services.master.model import threads
from services.master.model.json_views import JsonViews
from services.master.model.keys import comment_key, message_key, notification_key
from services.master.model.store import SnapshotData

NOW = 1_790_000_000


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
    store = MemoryStore()
    await store.apply_snapshot(SnapshotData("acc", 1, frozenset(), sample.account, sample.batch))
    state = store._state("acc")
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
