"""An account's state partly loaded from Redis, whose changes are recorded as Redis writes.

The memory store's own code (AccountState.apply_changes, mark_read, set_pinned, evict)
runs over these containers unchanged: a dict that records HSET/HDEL, a set that records
SADD/SREM, an order that records ZADD/ZREM. Only what a change touches is loaded; the
counters start at zero, so what they end at is the increment to apply.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf.message import Message

from services.master.model.account_base import Handling, Presence
from services.master.model.account_state import AccountState
from services.master.redis.layout import AccountKeys, Value, Writes, inbox_key, member_of
from services.master.redis.search import RecordingSearch


class RecordingDict(dict[str, Any]):
    def __init__(self, fields: dict[str, Value | None], loaded: dict[str, Any], encode: Callable[[Any], Value]) -> None:
        super().__init__(loaded)
        self._fields = fields
        self._encode = encode

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._fields[key] = self._encode(value)

    def pop(self, key: str, default: Any = None) -> Any:
        self._fields[key] = None
        return super().pop(key, default)


class RecordingSet(set[str]):
    def __init__(self, members: dict[str, bool], loaded: Iterable[str]) -> None:
        super().__init__(loaded)
        self._members = members

    def add(self, item: str) -> None:
        super().add(item)
        self._members[item] = True

    def discard(self, item: object) -> None:
        assert isinstance(item, str)
        super().discard(item)
        self._members[item] = False

    def difference_update(self, *others: Iterable[Any]) -> None:
        for other in others:
            for item in other:
                self.discard(item)


class RecordingOrder:
    """Stands for a SortedList of the memory store: records what is added and removed.
    `item`: the order is the inbox's of that kind ("message:", "comment:", "notification:"), whose
    members carry the kind before the id."""

    def __init__(self, members: dict[str, bool], item: str = "") -> None:
        self._members = members
        self._item = item

    def _member(self, key: tuple[int | str, ...] | bytes) -> str:
        return member_of(inbox_key(key, self._item) if self._item and isinstance(key, bytes) else key)

    def add(self, key: tuple[int | str, ...] | bytes) -> None:
        self._members[self._member(key)] = True

    def discard(self, key: tuple[int | str, ...] | bytes) -> None:
        self._members[self._member(key)] = False

    def __bool__(self) -> bool:
        return True  # Redis drops an empty sorted set by itself


class RecordingGroups(dict[str, RecordingOrder]):
    """Stands for a dict of SortedLists by group (a conversation's messages, ...)."""

    def __init__(self, writes: Writes, keys: AccountKeys, name: str) -> None:
        super().__init__()
        self._writes, self._keys, self._name = writes, keys, name

    def setdefault(self, group: str, default: Any = None) -> RecordingOrder:
        return RecordingOrder(self._writes.zset(self._keys.group(self._name, group)))

    def get(self, group: str, default: Any = None) -> RecordingOrder:
        return self.setdefault(group)

    def __delitem__(self, group: str) -> None:
        pass


def _serialize(entity: Message) -> bytes:
    return entity.SerializeToString()


def recording_state(
    keys: AccountKeys,
    writes: Writes,
    *,
    version: int,
    applied: Iterable[int],
    account: Any,
    presence: Presence,
    horizons: dict[str, int],
    entities: dict[str, dict[str, Any]],
    read_at: dict[str, int],
    sets: dict[str, set[str]],
    threads: dict[str, Any] | None = None,
) -> AccountState:
    """A state holding what was loaded, whose changes land in `writes`."""
    handling = Handling(
        read_at=RecordingDict(writes.hash(keys.read), read_at, str),
        pinned=RecordingSet(writes.set(keys.sets["pinned"]), sets.get("pinned", ())),
        muted=RecordingSet(writes.set(keys.sets["muted"]), sets.get("muted", ())),
        new_items=RecordingSet(writes.set(keys.sets["new"]), sets.get("new", ())),
        new_contents=RecordingSet(writes.set(keys.sets["newc"]), sets.get("newc", ())),
        horizons=dict(horizons),
        threads=RecordingDict(writes.hash(keys.threads), threads or {}, _serialize),
    )
    state = AccountState(keys.account_id, version, account, handling)
    state.search = RecordingSearch(writes, keys)  # type: ignore[assignment]  # kept with every change
    state.presence = presence
    state.applied_versions.extend(applied)
    for name in ("contents", "comments", "conversations", "messages", "notifications"):
        setattr(state, name, RecordingDict(writes.hash(keys.entities[name]), entities.get(name, {}), _serialize))
    state.conversation_order = RecordingOrder(writes.zset(keys.orders["conversations"]))
    state.message_order = RecordingOrder(writes.zset(keys.orders["messages"]))
    state.content_order = RecordingOrder(writes.zset(keys.orders["contents"]))
    state.comment_order = RecordingOrder(writes.zset(keys.orders["comments"]))
    state.inbox_messages = RecordingOrder(writes.zset(keys.orders["inbox"]), "message:")
    state.inbox_comments = RecordingOrder(writes.zset(keys.orders["inbox"]), "comment:")
    state.inbox_notifications = RecordingOrder(writes.zset(keys.orders["inbox"]), "notification:")
    state.messages_by_conversation = RecordingGroups(writes, keys, "mbc")
    state.comments_by_content = RecordingGroups(writes, keys, "cbc")
    state.replies_by_parent = RecordingGroups(writes, keys, "rbp")
    return state


def record_counters(state: AccountState, keys: AccountKeys, writes: Writes) -> None:
    """The counters of a recording state hold increments: adds them to `writes`."""
    for name, counter in (
        ("conversation_unread", state.unread_by_conversation),
        ("content_unread", state.unread_by_content),
        ("content_new", state.new_by_content),
    ):
        for group, by in counter.items():
            writes.increment(keys.counters[name], group, by)
    for name in ("unread_comments", "unread_discussions", "unread_direct_messages", "unread_notifications"):
        writes.increment(keys.meta, name, getattr(state, name))
    state.unread_by_conversation, state.unread_by_content, state.new_by_content = Counter(), Counter(), Counter()
    state.unread_comments = state.unread_discussions = state.unread_direct_messages = state.unread_notifications = 0
