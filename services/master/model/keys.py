"""Keys of an account's items and the small helpers the account state's parts share."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from sortedcontainers import SortedList

from imsync.v1 import entities_pb2 as e
from services.master.model.errors import InvalidArgument

_APPLIED_HISTORY = 64
# Later than any platform time.
_NEVER = 1 << 80


def ns_of(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000_000 + ts.nanos


def comment_key(comment_id: str) -> str:
    return f"comment:{comment_id}"


def message_key(message_id: str) -> str:
    return f"message:{message_id}"


def notification_key(notification_id: str) -> str:
    return f"notification:{notification_id}"


INBOX_KINDS = ("comment", "message", "notification")


def split_item_key(item_id: str, *, field: str) -> tuple[str, str]:
    """Splits an inbox item id ("comment:<id>", "message:<id>" or "notification:<id>")
    into kind and entity id."""
    kind, sep, entity_id = item_id.partition(":")
    if not sep or kind not in INBOX_KINDS or not entity_id:
        raise InvalidArgument(
            f"{item_id!r} is not an inbox item id ('comment:<id>', 'message:<id>' or 'notification:<id>')", field=field
        )
    return kind, entity_id


def _content_key(content: e.Content) -> tuple[int, str]:
    return (-ns_of(content.publish_time), content.content_id)


def _discard_from(index: dict[str, SortedList], group: str, key: bytes) -> None:
    keys = index.get(group)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[group]


def _last_activity_ns(conversation: e.Conversation) -> int:
    if conversation.HasField("last_message"):
        return ns_of(conversation.last_message.create_time)
    return ns_of(conversation.update_time)
