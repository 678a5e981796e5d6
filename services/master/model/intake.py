"""Entities as they come in from a worker: each checked and read once.

Checking an entity and indexing it read the same fields (its id, its time, its
conversation), and each read of a protobuf field makes a Python object anew. So one pass
over every entity both refuses what is wrong and gathers what `AccountState.build`
needs: the entities by id, the messages' and comments' packed time keys (time_keys.py),
their groups, and which messages are a customer's. A snapshot is taken in chunk by chunk
as its chunks arrive; a delta's upserts pass the same checks.

A snapshot chunk's messages (most of what it holds) are read off the bytes it was parsed
from, where those are at hand (`Wire`), by imsync's compiled reader (_wire.c, where it
was built: compiled.py). It
declines what an encoder would not plainly write and every message the checks refuse;
the Python loop then takes the chunk, and names what is wrong.

Every refusal names the offending field by its path in the sync message (e.g.
`snapshot.entities.messages[3].message_id`), so a worker's log says what to fix.
Master-owned fields (read state, pins, counters) are not read here: the master never
shows a stored entity without setting them from its own state (AccountState's views).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.master.model import time_keys
from services.master.model.compiled import READER as _wire
from services.master.model.entity_table import EntityTable
from services.master.model.errors import InvalidArgument
from services.master.model.validation import MAX_SECONDS, MIN_SECONDS, find_bad_timestamp, timestamps_fit

# Each collection of EntityBatch: its key field and the fields the master owns.
COLLECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "contents": ("content_id", ("is_new",)),
    "comments": ("comment_id", ("is_read", "read_at", "is_new", "is_handled")),
    "conversations": (
        "conversation_id",
        (
            *("unread_count", "is_pinned", "is_muted", "assignee", "thread_state"),
            *("snoozed_until", "is_marked_unread", "note_count"),
        ),
    ),
    "messages": ("message_id", ("is_read", "read_at", "is_new")),
    "notifications": ("notification_id", ("is_read", "read_at")),
}

_NANOS = 999_999_999
_INBOUND, _UNSPECIFIED = e.DIRECTION_INBOUND, e.DIRECTION_UNSPECIFIED
_MESSAGES = sync_pb2.EntityBatch.DESCRIPTOR.fields_by_name["messages"].number

# A batch's bytes on the wire: the message it was parsed from (a SyncDataRequest's bytes,
# say) and the field numbers leading from its top to the EntityBatch (none: the batch's).
Wire = tuple[bytes, tuple[int, ...]]


class Intake:
    """One account's entities taken in, with the facts their indexes are built from.

    Lists of keys are in arrival order; an entity id sent twice keeps its last entity,
    and `settled()` then gathers that collection's facts again from what is kept."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.contents: dict[str, e.Content] = {}
        self.comments: EntityTable[e.Comment] = EntityTable()
        self.conversations: dict[str, e.Conversation] = {}
        self.messages: EntityTable[e.Message] = EntityTable()
        self.notifications: dict[str, e.Notification] = {}
        self.message_keys: list[bytes] = []
        self.messages_by_conversation: dict[str, list[bytes]] = {}
        # Messages marked inbound: their keys, conversations and ids, in step.
        self.inbound_keys: list[bytes] = []
        self.inbound_conversations: list[str] = []
        self.inbound_ids: list[str] = []
        # Messages without a direction: whose they are depends on the account's user id.
        self.undirected: list[tuple[bytes, e.Message]] = []
        self.comment_keys: list[bytes] = []
        # The comments in the order of their keys, for what depends on the account.
        self.comment_list: list[e.Comment] = []
        self.comments_by_content: dict[str, list[bytes]] = {}
        self.replies_by_parent: dict[str, list[bytes]] = {}

    @classmethod
    def of(
        cls, account_id: str, batches: Sequence[Any], path: str = "entities", wires: Sequence[Wire] | None = None
    ) -> Intake:
        """The intake of `batches` (parsed from `wires`, in step, when given)."""
        intake = cls(account_id)
        for index, batch in enumerate(batches):
            intake.take(batch, path, None if wires is None else wires[index])
        return intake

    def take(self, batch: sync_pb2.EntityBatch, path: str, wire: Wire | None = None) -> None:
        """Checks every entity of `batch` and takes it in; raises InvalidArgument naming the
        first wrong field. An entity may leave its account_id empty (views always carry
        the account's); one naming another account is refused. `wire`, when given, is
        where the batch was parsed from."""
        if batch.messages:
            self.take_messages(batch.messages, f"{path}.messages", wire)
        if batch.comments:
            self.take_comments(batch.comments, f"{path}.comments")
        for name in ("contents", "conversations", "notifications"):
            items = getattr(batch, name)
            if items:
                self._take_plain(name, items, f"{path}.{name}")

    def take_messages(self, items: Sequence[e.Message], path: str, wire: Wire | None = None) -> None:
        # The hot loop of a snapshot, in C where the chunk's bytes are at hand; here every
        # read of a field is made once and time_key is inlined. The messages stay where
        # they were parsed (entity_table.py).
        account_id = self.account_id
        place, places = self.messages.add_part(items), self.messages.where
        keys, groups = self.message_keys, self.messages_by_conversation
        inbound_keys, inbound_conversations, inbound_ids = (
            self.inbound_keys,
            self.inbound_conversations,
            self.inbound_ids,
        )
        if (
            wire is not None
            and _wire is not None
            and _wire.take_messages(
                wire[0],
                (*wire[1], _MESSAGES),
                account_id,
                MIN_SECONDS,
                MAX_SECONDS,
                place,
                items,
                places,
                keys,
                groups,
                inbound_keys,
                inbound_conversations,
                inbound_ids,
                self.undirected,
            )
        ):
            return
        pack, bias, invert, end = time_keys.HEAD.pack, time_keys.BIAS, time_keys.INVERT, time_keys.END
        for index, m in enumerate(items):
            message_id = m.message_id
            if not message_id:
                raise _empty(f"{path}[{index}].message_id")
            owner = m.account_id
            if owner and owner != account_id:
                raise _foreign(owner, account_id, f"{path}[{index}]")
            at = m.create_time
            seconds, nanos = at.seconds, at.nanos
            if not (MIN_SECONDS <= seconds <= MAX_SECONDS and 0 <= nanos <= _NANOS):
                raise _out_of_range(f"{path}[{index}].create_time")
            conversation_id = m.conversation_id
            if not conversation_id:
                raise _empty(f"{path}[{index}].conversation_id")
            key = (
                pack(bias - seconds, _NANOS - nanos)
                + message_id.encode("utf-8", "surrogatepass").translate(invert)
                + end
            )
            places[message_id] = place + index
            keys.append(key)
            group = groups.get(conversation_id)
            if group is None:
                groups[conversation_id] = [key]
            else:
                group.append(key)
            direction = m.direction
            if direction == _INBOUND:
                inbound_keys.append(key)
                inbound_conversations.append(conversation_id)
                inbound_ids.append(message_id)
            elif direction == _UNSPECIFIED:
                self.undirected.append((key, m))

    def take_comments(self, items: Sequence[e.Comment], path: str) -> None:
        account_id = self.account_id
        place, places = self.comments.add_part(items), self.comments.where
        keys, listed = self.comment_keys, self.comment_list
        by_content, by_parent = self.comments_by_content, self.replies_by_parent
        for index, c in enumerate(items):
            comment_id = c.comment_id
            if not comment_id:
                raise _empty(f"{path}[{index}].comment_id")
            owner = c.account_id
            if owner and owner != account_id:
                raise _foreign(owner, account_id, f"{path}[{index}]")
            at = c.created_at
            seconds, nanos = at.seconds, at.nanos
            if not (MIN_SECONDS <= seconds <= MAX_SECONDS and 0 <= nanos <= _NANOS):
                raise _out_of_range(f"{path}[{index}].created_at")
            content_id = c.content_id
            if not content_id:
                raise _empty(f"{path}[{index}].content_id")
            parent_id = c.parent_comment_id
            if parent_id == comment_id:
                raise InvalidArgument("a comment cannot reply to itself", field=f"{path}[{index}].parent_comment_id")
            key = time_keys.of_time(seconds, nanos, comment_id)
            places[comment_id] = place + index
            keys.append(key)
            listed.append(c)
            by_content.setdefault(content_id, []).append(key)
            if parent_id:
                by_parent.setdefault(parent_id, []).append(key)

    def _take_plain(self, name: str, items: Iterable[Any], path: str) -> None:
        """Contents, conversations, notifications: few, checked field by field as planned."""
        key_field, master_owned = COLLECTIONS[name]
        kept: dict[str, Any] = getattr(self, name)
        account_id = self.account_id
        for index, entity in enumerate(items):
            entity_id = getattr(entity, key_field)
            if not entity_id:
                raise _empty(f"{path}[{index}].{key_field}")
            owner = entity.account_id
            if owner and owner != account_id:
                raise _foreign(owner, account_id, f"{path}[{index}]")
            if not timestamps_fit(entity, master_owned):
                find_bad_timestamp(entity, f"{path}[{index}]", master_owned)
            kept[entity_id] = entity

    def replace(self, name: str, entities: Iterable[Any]) -> None:
        """Takes `entities` as the whole of collection `name`, in place of what came."""
        fresh = Intake(self.account_id)
        if name == "messages":
            fresh.take_messages(list(entities), name)
            self.messages, self.message_keys = fresh.messages, fresh.message_keys
            self.messages_by_conversation, self.undirected = fresh.messages_by_conversation, fresh.undirected
            self.inbound_keys, self.inbound_conversations = fresh.inbound_keys, fresh.inbound_conversations
            self.inbound_ids = fresh.inbound_ids
        elif name == "comments":
            fresh.take_comments(list(entities), name)
            self.comments, self.comment_keys, self.comment_list = fresh.comments, fresh.comment_keys, fresh.comment_list
            self.comments_by_content, self.replies_by_parent = fresh.comments_by_content, fresh.replies_by_parent
        else:
            fresh._take_plain(name, entities, name)
            setattr(self, name, getattr(fresh, name))

    def settled(self) -> Intake:
        """Itself, once an id sent twice left only its last entity in every list."""
        if len(self.message_keys) != len(self.messages):
            self.replace("messages", list(self.messages.values()))
        if len(self.comment_keys) != len(self.comments):
            self.replace("comments", list(self.comments.values()))
        return self


def _empty(where: str) -> InvalidArgument:
    return InvalidArgument("must not be empty", field=where)


def _out_of_range(where: str) -> InvalidArgument:
    return InvalidArgument("timestamp out of range", field=where)


def _foreign(owner: str, account_id: str, where: str) -> InvalidArgument:
    return InvalidArgument(f"belongs to account {owner!r}, not {account_id!r}", field=f"{where}.account_id")


def clean_batch(batch: sync_pb2.EntityBatch, account_id: str, path: str) -> None:
    """Checks a batch of one account's entities (a delta's upserts), as a snapshot's are."""
    Intake(account_id).take(batch, path)
