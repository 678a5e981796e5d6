"""Checks of what a worker sends, before anything of it reaches the store.

Every refusal names the offending field by its path in the sync message
(e.g. `snapshot.entities.messages[3].message_id`), so a worker's log says what to fix.
Master-owned fields a worker sets are cleared, never trusted.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2

from .errors import InvalidArgument

# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799

# (collection field of EntityBatch, key field, master-owned fields to clear)
_COLLECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("contents", "content_id", ("is_new",)),
    ("comments", "comment_id", ("is_read", "read_at", "is_new", "is_handled")),
    ("conversations", "conversation_id", ("unread_count", "is_pinned", "is_muted")),
    ("messages", "message_id", ("is_read", "read_at", "is_new")),
    ("notifications", "notification_id", ("is_read", "read_at")),
)


_PLANNING: set[str] = set()


@cache
def _timestamp_plan(descriptor: Descriptor) -> tuple[tuple[str, bool, bool], ...]:
    """(field, repeated, is a Timestamp) for each field of a message type holding a
    Timestamp, directly or deeper; decided once per type."""
    _PLANNING.add(descriptor.full_name)
    plan = []
    for field in descriptor.fields:
        kind = field.message_type
        if kind is None:
            continue
        if kind.full_name == "google.protobuf.Timestamp":
            plan.append((field.name, field.is_repeated, True))
        elif kind.full_name in _PLANNING:
            # A type that holds itself: walk it field by field, as a nested message.
            plan.append((field.name, field.is_repeated, False))
        elif _timestamp_plan(kind):
            plan.append((field.name, field.is_repeated, False))
    _PLANNING.discard(descriptor.full_name)
    return tuple(plan)


def _timestamps_fit(message: ProtoMessage) -> bool:
    for name, repeated, is_timestamp in _timestamp_plan(message.DESCRIPTOR):
        values = getattr(message, name)
        for item in values if repeated else (values,):
            if is_timestamp:
                if not (_MIN_SECONDS <= item.seconds <= _MAX_SECONDS and 0 <= item.nanos <= 999_999_999):
                    return False
            elif not _timestamps_fit(item):
                return False
    return True


def check_timestamps(message: ProtoMessage, path: str) -> None:
    """Refuses any Timestamp, however deep, outside the range protojson can print."""
    if _timestamps_fit(message):
        return
    _find_bad_timestamp(message, path)


def _find_bad_timestamp(message: ProtoMessage, path: str) -> None:
    """The slow walk that names the field, once a bad timestamp is known to be there."""
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        values: Iterable[ProtoMessage] = value if descriptor.is_repeated else (value,)
        for index, item in enumerate(values):
            where = f"{path}.{descriptor.name}" + (f"[{index}]" if descriptor.is_repeated else "")
            if isinstance(item, Timestamp):
                if not (_MIN_SECONDS <= item.seconds <= _MAX_SECONDS and 0 <= item.nanos <= 999_999_999):
                    raise InvalidArgument("timestamp out of range", field=where)
            else:
                _find_bad_timestamp(item, where)


def _check_account_id(entity: ProtoMessage, account_id: str, where: str) -> None:
    value = getattr(entity, "account_id")
    if value and value != account_id:
        raise InvalidArgument(f"belongs to account {value!r}, not {account_id!r}", field=f"{where}.account_id")
    setattr(entity, "account_id", account_id)


@cache
def _entity_plan(descriptor: Descriptor, master_owned: tuple[str, ...]) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """For an entity type: the Timestamp fields to check when they are all plain fields of
    it (None: walk the whole entity), and which master-owned fields hold a message (whether
    one is set is asked with HasField; of the others, by their truth)."""
    plan = [step for step in _timestamp_plan(descriptor) if step[0] not in master_owned]
    direct = tuple(name for name, repeated, is_timestamp in plan if is_timestamp and not repeated)
    messages = tuple(name for name in master_owned if descriptor.fields_by_name[name].message_type is not None)
    return (direct if len(direct) == len(plan) else None), messages


def clean_batch(batch: sync_pb2.EntityBatch, account_id: str, path: str) -> None:
    """Validates a batch of one account's entities in place and clears master-owned fields.
    (Every entity passes through here: field paths are only spelled out for a refusal.)"""
    for collection, key, master_owned in _COLLECTIONS:
        items = getattr(batch, collection)
        if not items:
            continue
        timestamps, held_messages = _entity_plan(items[0].DESCRIPTOR, master_owned)
        for index, entity in enumerate(items):
            if not getattr(entity, key):
                raise InvalidArgument("must not be empty", field=f"{path}.{collection}[{index}].{key}")
            if entity.account_id != account_id:
                _check_account_id(entity, account_id, f"{path}.{collection}[{index}]")
            # Looking is cheaper than clearing, and they are seldom set.
            for name in master_owned:
                if entity.HasField(name) if name in held_messages else getattr(entity, name):
                    entity.ClearField(name)
            if timestamps is None:
                fits = _timestamps_fit(entity)
            else:
                fits = True
                for name in timestamps:
                    at = getattr(entity, name)
                    if not (_MIN_SECONDS <= at.seconds <= _MAX_SECONDS and 0 <= at.nanos <= 999_999_999):
                        fits = False
            if not fits:
                _find_bad_timestamp(entity, f"{path}.{collection}[{index}]")
            # In the same pass: each pass over a repeated field makes its Python objects anew.
            if collection == "messages":
                if not entity.conversation_id:
                    raise InvalidArgument("must not be empty", field=f"{path}.messages[{index}].conversation_id")
            elif collection == "comments":
                if not entity.content_id:
                    raise InvalidArgument("must not be empty", field=f"{path}.comments[{index}].content_id")
                if entity.parent_comment_id == entity.comment_id:
                    raise InvalidArgument(
                        "a comment cannot reply to itself", field=f"{path}.comments[{index}].parent_comment_id"
                    )
            elif collection == "contents":
                entity.stats.ClearField("unread_comments")
                entity.stats.ClearField("new_comments")


def clean_removals(removals: sync_pb2.Removals, path: str) -> None:
    for name in ("content_ids", "comment_ids", "conversation_ids", "message_ids", "notification_ids"):
        for index, key in enumerate(getattr(removals, name)):
            if not key:
                raise InvalidArgument("must not be empty", field=f"{path}.{name}[{index}]")


def clean_account(account: e.Account, account_id: str, path: str) -> None:
    if account.account_id and account.account_id != account_id:
        raise InvalidArgument(f"is {account.account_id!r}, the snapshot's account is {account_id!r}", field=f"{path}.account_id")
    account.account_id = account_id
    account.ClearField("version")
    check_timestamps(account, path)
