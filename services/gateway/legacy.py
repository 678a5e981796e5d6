"""The names the IM clients of the system imsync replaces speak, where their meaning is
imsync's own (docs/im-api.md has the table, and what the old API had that imsync keeps not).

Requests: the old body of `PUT /api/im/unified-messages/read-many` (`message_ids` and a
`business_type`) and times in epoch milliseconds (`since_time=1790000000000`) are taken
always; they cannot be mistaken for anything else. Answers: the old field names beside
today's (`msg_id` beside `message_id`, `discussion_id` beside `comment_id`, an author's
`author_id` and `author_name`) only when asked, per request (`?legacy_names=true`) or per
gateway (`imsync gateway --im-legacy-names`), so that today's clients see no change.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor

from .binding import BindingError

# The query parameter a request asks for the old names with.
PARAM = "legacy_names"
_TRUE = {"1", "true", "True", "yes"}

# business_type -> the inbox item kind of the ids it names.
_KINDS = {
    "comment": "comment",
    "discussion": "comment",
    "direct_message": "message",
    "message": "message",
    "notification": "notification",
}


def asked(query_items: list[tuple[str, str]]) -> bool:
    return any(key == PARAM and value in _TRUE for key, value in query_items)


def request_body(request_type: str, value: Any) -> Any:
    """An old request body in today's words (only read-many has one of its own)."""
    if request_type != "imsync.v1.MarkUnifiedMessagesReadRequest" or not isinstance(value, dict):
        return value
    if "message_ids" not in value and "business_type" not in value:
        return value
    old_ids = value.get("message_ids")
    if not isinstance(old_ids, list) or not all(isinstance(i, str) and i for i in old_ids):
        raise BindingError("message_ids", "expected a list of ids")
    business_type = value.get("business_type")
    kind = _KINDS.get(business_type) if isinstance(business_type, str) else None
    if kind is None:
        raise BindingError("business_type", f"expected one of {', '.join(sorted(_KINDS))} with message_ids")
    ids = [i if ":" in i else f"{kind}:{i}" for i in old_ids]
    rest = {k: v for k, v in value.items() if k not in ("message_ids", "business_type")}
    return {**rest, "ids": [*rest.get("ids", []), *ids]}


def add_names(data: Any, descriptor: Descriptor) -> Any:
    """Adds the old names beside today's in a message's JSON (IM style), wherever a message
    or a comment is in it; returns `data`."""
    if not isinstance(data, dict):
        return data
    name = descriptor.full_name
    if name == "imsync.v1.Message" and "message_id" in data:
        data["msg_id"] = data["message_id"]
    elif name == "imsync.v1.Comment" and "comment_id" in data:
        data["discussion_id"] = data["comment_id"]
        author = data.get("author")
        if isinstance(author, dict):
            author["author_id"] = author.get("user_id", "")
            author["author_name"] = author.get("user_name", "")
    for field in descriptor.fields:
        message = field.message_type
        if message is None or message.full_name.startswith("google.") or message.GetOptions().map_entry:
            continue
        value = data.get(field.name)
        if isinstance(value, list):
            for item in value:
                add_names(item, message)
        elif isinstance(value, dict):
            add_names(value, message)
    return data
