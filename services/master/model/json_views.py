"""The IM API's JSON of an account's entities, from encodings kept beside them.

A page read through the embedded gateway is joined from each entity's JSON bytes, with
no protobuf view built per item. An entity's JSON is made of two parts:

- what the worker sent, with the account's id: encoded once, the first time it is read,
  and kept (`Encodings`, encodings.py). The key is the stored entity object itself. Stored entities are
  never changed in place (a change stores a new object), and a kept encoding holds its
  entity, so an encoding found for the object stored now is that object's: it can never
  be stale, and nothing has to invalidate it.
- the fields the master owns (read marks, pins, unread counts, the team's handling),
  written at every read from the state as it is then, as account_views.py sets them on
  a view.

The result parses to exactly what the gateway's encoder makes of the view (protojson.py,
in either style); tests/test_json_views.py compares the two over random states.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import orjson
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from imsync.v1 import entities_pb2 as e
from imsync.v1 import unified_messages_pb2 as u
from services.common.protojson import JsonStyle, field_json_name, short_enum_names
from services.master.model import threads
from services.master.model.account_views import AccountViews
from services.master.model.compiled import PAGES
from services.master.model.encodings import Encodings
from services.master.model.entity_table import places_of
from services.master.model.keys import notification_key, split_item_key
from services.master.model.time_keys import item_of

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


# Ends of objects kept for reuse, a JsonViews' at most (each some 100 bytes).
_TAILS_KEPT = 4096


@lru_cache(maxsize=65536)
def _timestamp(ns: int) -> str:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp.ToJsonString()


def _stamp_json(message: Message, field: str) -> str | None:
    """A Timestamp field as protojson writes it: null when unset."""
    return _timestamp(getattr(message, field).ToNanoseconds()) if message.HasField(field) else None


class _Names:
    """A message type's master-owned fields in one style: each one's JSON name, and how its
    value is written (64-bit integers as strings and enums by full name for grpc-gateway,
    numbers and short names for IM clients)."""

    def __init__(self, descriptor: Descriptor, style: JsonStyle) -> None:
        self.name: dict[str, str] = {}
        self.enum: dict[str, dict[int, str]] = {}
        for field in descriptor.fields:
            self.name[field.name] = field_json_name(field, style)
            if field.enum_type is not None:
                if style is JsonStyle.IM:
                    self.enum[field.name] = short_enum_names(field.enum_type)
                else:
                    self.enum[field.name] = {v.number: v.name for v in field.enum_type.values}
        self.int64 = style is not JsonStyle.IM and any(f.type in _INT64 for f in descriptor.fields)
        self._int64_fields = {f.name for f in descriptor.fields if f.type in _INT64}

    def integer(self, field: str, value: int) -> int | str:
        return str(value) if self.int64 and field in self._int64_fields else value

    def enum_value(self, field: str, value: int) -> int | str:
        return self.enum[field].get(value, value)


class JsonViews:
    """Entities of an account as JSON bytes, in one style: account_views.py's views,
    encoded as protojson.py encodes them, without building them."""

    def __init__(self, style: JsonStyle, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.style = style
        self.kept = Encodings(style, max_bytes)
        # The inbox items up to their read state (their own fields: id, type, account, time;
        # then their entity's), kept by their entities.
        self.wrappers = Encodings(style, max_bytes // 4)
        _LIVE.add(self)
        self._conversation = _Names(e.Conversation.DESCRIPTOR, style)
        self._message = _Names(e.Message.DESCRIPTOR, style)
        self._comment = _Names(e.Comment.DESCRIPTOR, style)
        self._notification = _Names(e.Notification.DESCRIPTOR, style)
        self._unified = _Names(u.UnifiedMessage.DESCRIPTOR, style)
        # The handling fields of a conversation nobody handled, as threads.view sets them.
        unhandled = e.Conversation()
        threads.view(unhandled, None, 0)
        self._unhandled = self._handling(unhandled)
        # The master's fields as bytes, by what they were made from (_tail).
        self._tails: dict[tuple[Any, ...], bytes] = {}

    def _handling(self, shown: e.Conversation) -> dict[str, Any]:
        names = self._conversation
        name = names.name
        return {
            name["assignee"]: shown.assignee,
            name["thread_state"]: names.enum_value("thread_state", shown.thread_state),
            name["snoozed_until"]: _stamp_json(shown, "snoozed_until"),
            name["is_marked_unread"]: shown.is_marked_unread,
            name["note_count"]: shown.note_count,
        }

    def _tail(self, key: tuple[Any, ...], make: Callable[[], bytes]) -> bytes:
        """The end of an entity's object, the master's fields, as `make` writes them; the
        same for the same `key` (what they are made from), so kept for the commonest keys."""
        tail = self._tails.get(key)
        if tail is None:
            tail = make()
            if len(self._tails) < _TAILS_KEPT:
                self._tails[key] = tail
        return tail

    def conversation(self, state: AccountViews, conversation_id: str, raw: bytes | None = None) -> bytes:
        head = self.kept.head(state.conversations[conversation_id], state.account_id, "conversations", raw)
        handling = state.handling
        thread = handling.threads.get(conversation_id)
        unread = state.unread_by_conversation.get(conversation_id, 0)
        pinned, muted = conversation_id in handling.pinned, conversation_id in handling.muted
        if thread is None:
            key = ("conversation", unread, pinned, muted)
            tail = self._tails.get(key)
            return head + (tail or self._tail(key, lambda: _end(self._owned(unread, pinned, muted, None))))
        # threads.view decides them, on a conversation of nothing else.
        shown = e.Conversation()
        threads.view(shown, thread, time.time_ns())
        return head + _end(self._owned(unread, pinned, muted, shown))

    def conversations_of(
        self, state: AccountViews, keys: Iterable[tuple[Any, ...]], limit: int, stop: Any = None
    ) -> tuple[list[bytes], tuple[Any, ...] | None, bool]:
        """conversation() of the conversations of an order's keys (id last), at most
        `limit`: their JSON, the last one's key, whether more follow. One loop: one nobody
        handles, whose pieces are kept, is joined here; any other, by conversation()."""
        assert stop is None, "a page of conversations has no end but its count"
        conversations, unread_by, handling = state.conversations, state.unread_by_conversation, state.handling
        threads_of, pinned, muted = handling.threads, handling.pinned, handling.muted
        if PAGES is not None:  # the same loop in C (_pages.c), which leaves the rest to conversation()
            made = PAGES.conversations(
                keys, limit, threads_of, conversations, self.kept.entries, unread_by, pinned, muted, self._tails
            )
            return self._made(self.kept, made, lambda conversation_id: self.conversation(state, conversation_id))
        find, tails = self.kept.find, self._tails
        items: list[bytes] = []
        last = None
        for key in keys:
            if len(items) == limit:
                return items, last, True
            last = key
            conversation_id = str(key[-1])
            head = tail = None
            if conversation_id not in threads_of:
                head = find(conversations[conversation_id])
                flags = (unread_by.get(conversation_id, 0), conversation_id in pinned, conversation_id in muted)
                tail = tails.get(("conversation", *flags))
            items.append(head + tail if head and tail else self.conversation(state, conversation_id))
        return items, last, False

    @staticmethod
    def _made(
        kept: Encodings, made: tuple[list[Any], Any, bool, list[tuple[Any, ...]], int], make: Callable[..., bytes]
    ) -> tuple[list[bytes], Any, bool]:
        """A page from one of _pages.c's loops over `kept`: the items it left (None) made by
        `make`, of what it names of each (the id, or the kind and the id)."""
        items, last, more, missing, hits = made
        kept.hits += hits
        for index, *what in missing:
            items[index] = make(*what)
        return items, last, more

    def _owned(self, unread: int, pinned: bool, muted: bool, shown: e.Conversation | None) -> dict[str, Any]:
        names = self._conversation
        name = names.name
        owned = {
            name["unread_count"]: names.integer("unread_count", unread),
            name["is_pinned"]: pinned,
            name["is_muted"]: muted,
        }
        owned.update(self._unhandled if shown is None else self._handling(shown))
        return owned

    def message(
        self,
        state: AccountViews,
        message: e.Message,
        raw: bytes | None = None,
        reading: tuple[int | None, bool, bool] | None = None,
    ) -> bytes:
        """`reading`: state.message_reading(message), when the caller has it."""
        head = self.kept.head(message, state.account_id, "messages", raw)
        return head + self._read("message", reading or state.message_reading(message))

    def messages_of(
        self, state: AccountViews, keys: Iterable[bytes], limit: int, stop: Callable[[bytes], bool] | None = None
    ) -> tuple[list[bytes], bytes | None, bool]:
        """message() of the messages of an order's keys (time_keys), at most `limit`, ending
        before a key `stop` takes: their JSON, the last one's key, whether more follow. One
        loop, with state.message_reading written out in it: most of a page's cost is per item."""
        messages, is_inbound, account_id = state.messages, state.is_inbound, state.account_id
        read_at, new_items = state.handling.read_at, state.handling.new_items
        if PAGES is not None:  # the same loop in C (_pages.c), which leaves the rest to message()
            where, parts = places_of(messages)
            kept = self.kept.entries
            made = PAGES.messages(keys, limit, stop, where, parts, kept, read_at, new_items, is_inbound, self._tails)
            return self._made(self.kept, made, lambda message_id: self.message(state, messages[message_id]))
        find, tails = self.kept.find, self._tails
        items: list[bytes] = []
        last = None
        for key in keys:
            if stop is not None and stop(key):
                break
            if len(items) == limit:
                return items, last, True
            message_id = item_of(key)
            message = messages[message_id]
            head = find(message) or self.kept.head(message, account_id, "messages")
            item = "message:" + message_id  # keys.message_key
            read_ns = read_at.get(item)
            reading = ("message", read_ns, read_ns is not None or not is_inbound(message), item in new_items)
            items.append(head + (tails.get(reading) or self._read("message", reading[1:])))
            last = key
        return items, last, False

    def comment(
        self,
        state: AccountViews,
        comment: e.Comment,
        raw: bytes | None = None,
        reading: tuple[int | None, bool, bool] | None = None,
    ) -> bytes:
        head = self.kept.head(comment, state.account_id, "comments", raw)
        return head + self._read("comment", reading or state.comment_reading(comment))

    def notification(self, state: AccountViews, notification: e.Notification, raw: bytes | None = None) -> bytes:
        head = self.kept.head(notification, state.account_id, "notifications", raw)
        return head + self._read("notification", _notification_reading(state, notification.notification_id))

    def _read(self, kind: str, reading: tuple[int | None, bool, bool]) -> bytes:
        """The end of a message's, comment's or notification's object: its read state."""
        key = (kind, *reading)
        tail = self._tails.get(key)
        return tail or self._tail(key, lambda: _end(self._reading(kind, reading)))

    def _reading(self, kind: str, reading: tuple[int | None, bool, bool]) -> dict[str, Any]:
        read_ns, is_read, is_new = reading
        name = {"message": self._message, "comment": self._comment, "notification": self._notification}[kind].name
        fields: dict[str, Any] = {
            name["is_read"]: is_read,
            name["read_at"]: None if read_ns is None else _timestamp(read_ns),
        }
        if kind != "notification":  # a notification has no is_new of its own; the inbox item has
            fields[name["is_new"]] = is_new
        if kind == "comment":
            fields[name["is_handled"]] = False  # nothing marks a comment handled yet
        return fields

    def unified(self, state: AccountViews, item: str) -> bytes:
        """An inbox item ("message:<id>", ...) as account_views.unified_view shows it: what
        is the entity's (its id, type, account, time) kept, then the entity, then its read
        state."""
        kind, entity_id = split_item_key(item, field="id")
        return self.inbox_item(state, kind, entity_id)

    def inbox_item(self, state: AccountViews, kind: str, entity_id: str, raw: bytes | None = None) -> bytes:
        """unified(), of the item of that kind ("message", "comment", "notification") and
        id; `raw`: the entity's bytes, as for head(). Kept per entity: the item's own fields
        and the entity's up to its read state, in one piece; then the read state of both,
        by its values."""
        entity: Message
        if kind == "message":
            entity = state.messages[entity_id]
            reading = state.message_reading(entity)
        elif kind == "comment":
            entity = state.comments[entity_id]
            reading = state.comment_reading(entity)
        else:
            entity = state.notifications[entity_id]
            reading = _notification_reading(state, entity_id)
        wrapped = None if raw is None else kind.encode() + b":" + raw
        head = self.wrappers.find(entity, wrapped, state.account_id)
        if head is None:
            inner = self.kept.head(entity, state.account_id, f"{kind}s", raw)
            head = self.wrappers.keep(
                entity, self._wrapper(state, f"{kind}:{entity_id}") + inner, wrapped, state.account_id
            )
        key = ("unified", kind, *reading)
        tail = self._tails.get(key)
        return head + (tail or self._tail(key, lambda: self._unified_tail(kind, reading)))

    def inbox_of(
        self,
        state: AccountViews,
        kinds: tuple[str, str, str],
        orders: tuple[list[bytes], list[bytes], list[bytes]],
        limit: int,
        stop: Callable[[tuple[bytes, int, bytes]], bool] | None = None,
    ) -> tuple[list[bytes], tuple[bytes, int, bytes] | None, bool]:
        """inbox_item() of the inbox's first entries: the keys of each kind's order after
        the cursor (at most `limit` + 1 of each, time_keys), merged in the inbox's order
        ((time, kind's rank in `kinds`, the key): the entries, as the memory store merges
        them), at most `limit`, ending before an entry `stop` takes: their JSON, the last
        entry, whether more follow."""
        messages, comments, is_inbound, is_own = state.messages, state.comments, state.is_inbound, state.is_own
        read_at, new_items = state.handling.read_at, state.handling.new_items
        if PAGES is not None:  # the same loop in C (_pages.c), which leaves the rest to inbox_item()
            made = PAGES.inbox(
                orders,
                limit,
                stop,
                kinds,
                *places_of(messages),
                *places_of(comments),
                self.wrappers.entries,
                read_at,
                new_items,
                is_inbound,
                is_own,
                self._tails,
            )
            return self._made(self.wrappers, made, lambda kind, entity_id: self.inbox_item(state, kind, entity_id))
        find, tails = self.wrappers.find, self._tails
        items: list[bytes] = []
        last = None
        # The merge of a few keys by sorting them, not a merge step per item.
        for entry in sorted((key[:12], rank, key) for rank, keys in enumerate(orders) for key in keys):
            if stop is not None and stop(entry):
                break
            if len(items) == limit:
                return items, last, True
            last = entry
            kind, entity_id = kinds[entry[1]], item_of(entry[2])
            # A message's or comment's item whose pieces are kept, with its read state
            # (message_reading, comment_reading) written out; else inbox_item makes them.
            item = f"{kind}:{entity_id}"  # keys.message_key, comment_key
            read_ns = read_at.get(item)
            head = tail = None
            if kind == "message":
                message = messages[entity_id]
                head = find(message)
                shown = read_ns is not None or not is_inbound(message)
                tail = tails.get(("unified", kind, read_ns, shown, item in new_items))
            elif kind == "comment":
                comment = comments[entity_id]
                head = find(comment)
                shown = read_ns is not None or is_own(comment)
                tail = tails.get(("unified", kind, read_ns, shown, item in new_items))
            items.append(head + tail if head and tail else self.inbox_item(state, kind, entity_id))
        return items, last, False

    def _unified_tail(self, kind: str, reading: tuple[int | None, bool, bool]) -> bytes:
        """The entity's read state, closing its object, then the inbox item's, closing the item."""
        name = self._unified.name
        return self._read(kind, reading) + _end({name["is_read"]: reading[1], name["is_new"]: reading[2]})

    def _wrapper(self, state: AccountViews, item: str) -> bytes:
        """An inbox item's JSON up to its entity's: an object left open after the entity's name."""
        kind, entity_id, kind_type = state.unified_kind(item)
        entity, created = {
            "notification": (state.notifications.get(entity_id), "create_time"),
            "message": (state.messages.get(entity_id), "create_time"),
            "comment": (state.comments.get(entity_id), "created_at"),
        }[kind]
        assert entity is not None
        names = self._unified
        name = names.name
        opened = orjson.dumps(
            {
                name["id"]: item,
                name["type"]: names.enum_value("type", kind_type),
                name["account_id"]: state.account_id,
                name["create_time"]: _stamp_json(entity, created),
                name[kind]: 0,
            }
        )
        return opened[:-2]  # without the placeholder 0 and the closing brace


def _end(fields: dict[str, Any]) -> bytes:
    """Fields as the end of an object left open: a comma, the fields, the closing brace."""
    return b"," + orjson.dumps(fields)[1:]


def _notification_reading(state: AccountViews, notification_id: str) -> tuple[int | None, bool, bool]:
    """A notification's read state, as AccountViews' message_reading gives a message's."""
    item = notification_key(notification_id)
    read_ns = state.handling.read_at.get(item)
    return read_ns, read_ns is not None, item in state.handling.new_items


# Every JsonViews of the process, for the metrics (read when scraped: nothing per item).
_LIVE: weakref.WeakSet[JsonViews] = weakref.WeakSet()


class _Collector(Collector):
    def collect(self) -> Any:
        items = CounterMetricFamily(
            "imsync_encoded_items",
            "Items of the embedded gateway's pages: their kept encoding used (hit) or made (miss)",
            labels=["result"],
        )
        kept = list(_LIVE)
        items.add_metric(["hit"], sum(v.kept.hits + v.wrappers.hits for v in kept))
        items.add_metric(["miss"], sum(v.kept.misses + v.wrappers.misses for v in kept))
        yield items
        yield GaugeMetricFamily(
            "imsync_encoded_bytes",
            "Bytes of entities kept encoded as JSON, as counted against --encoded-max-bytes",
            value=sum(v.kept.bytes + v.wrappers.bytes for v in kept),
        )


REGISTRY.register(_Collector())
