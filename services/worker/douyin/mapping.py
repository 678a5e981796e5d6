"""The Douyin creator center's JSON, as its pages load it, mapped to imsync's entities.

Works, comments and notifications carry seconds, private messages milliseconds; past this
module every instant is a Timestamp. A comment's parent is its `reply_id` ("0" for none); a message is
outbound when it is the account's own (`is_self`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin

from google.protobuf.timestamp_pb2 import Timestamp

from imsync.v1 import entities_pb2 as e

_MEDIA_TYPES = {4: e.CONTENT_TYPE_VIDEO, 2: e.CONTENT_TYPE_IMAGE, 42: e.CONTENT_TYPE_IMAGE}
_MESSAGE_TYPES = {7: e.MESSAGE_TYPE_TEXT, 27: e.MESSAGE_TYPE_IMAGE, 8: e.MESSAGE_TYPE_VIDEO, 17: e.MESSAGE_TYPE_AUDIO}
# The notice types of `notice_list_v2` (as the simulator answers them).
_NOTICE_TYPES = {
    41: e.NOTIFICATION_TYPE_LIKE,
    33: e.NOTIFICATION_TYPE_FOLLOW,
    45: e.NOTIFICATION_TYPE_MENTION,
    1: e.NOTIFICATION_TYPE_SYSTEM,
}


class MappingError(ValueError):
    """A JSON object without what imsync needs of it."""


def _seconds(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromSeconds(int(value))
    return stamp


def _millis(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(int(value))
    return stamp


def text_of(value: Any) -> str:
    """Platform text as valid Unicode: a lone surrogate (which the platform's JSON may carry
    and protobuf strings cannot) becomes U+FFFD; everything else is kept as it came."""
    text = str(value)
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _required(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if value in (None, "", 0):
        raise MappingError(f"missing {key}")
    return str(value)


def user_of(raw: dict[str, Any], base_url: str) -> e.User:
    urls = ((raw.get("avatar_thumb") or {}).get("url_list")) or []
    return e.User(
        user_id=str(raw.get("uid", "")),
        user_name=text_of(raw.get("nickname", "")),
        avatar=urljoin(base_url, str(urls[0])) if urls else "",
    )


def account_of(account_id: str, raw: dict[str, Any], base_url: str) -> e.Account:
    user = user_of(raw, base_url)
    return e.Account(
        account_id=account_id,
        platform=e.PLATFORM_DOUYIN,
        user_id=user.user_id,
        user_name=user.user_name,
        avatar=user.avatar,
        signature=text_of(raw.get("signature", "")),
        follower_count=int(raw.get("follower_count") or 0),
        status=e.ACCOUNT_STATUS_ACTIVE,
        login_state=e.LOGIN_STATE_LOGGED_IN,
    )


def content_of(raw: dict[str, Any], base_url: str) -> e.Content:
    content_id = str(raw.get("aweme_id") or _required(raw, "item_id"))
    return e.Content(
        content_id=content_id,
        content_type=_MEDIA_TYPES.get(int(raw.get("media_type") or 0), e.CONTENT_TYPE_VIDEO),
        title=text_of(raw.get("title", "")),
        cover=urljoin(base_url, str(raw.get("cover_image_url", ""))),
        url=urljoin(base_url, f"/video/{content_id}"),
        publish_time=_seconds(_required(raw, "create_time")),
        stats=e.ContentStats(total_comments=int(raw.get("comment_count") or 0)),
    )


def comment_of(raw: dict[str, Any], base_url: str) -> e.Comment:
    parent = str(raw.get("reply_id") or "0")
    images = [
        urljoin(base_url, str(url))
        for image in raw.get("image_list") or []
        for url in (image.get("url_list") or [])[:1]
    ]
    return e.Comment(
        comment_id=_required(raw, "cid"),
        content_id=_required(raw, "aweme_id"),
        parent_comment_id="" if parent == "0" else parent,
        content=text_of(raw.get("text", "")),
        author=user_of(raw.get("user") or {}, base_url),
        created_at=_seconds(_required(raw, "create_time")),
        like_count=int(raw.get("digg_count") or 0),
        reply_count=int(raw.get("reply_comment_total") or 0),
        ip_label=text_of(raw.get("ip_label") or ""),
        image_urls=images,
    )


def conversation_of(raw: dict[str, Any], base_url: str) -> e.Conversation:
    conversation_id = _required(raw, "conversation_id")
    conversation = e.Conversation(
        conversation_id=conversation_id,
        conversation_type=e.CONVERSATION_TYPE_GROUP
        if conversation_id.startswith("0:2:")
        else e.CONVERSATION_TYPE_ONE_ON_ONE,
        participant=user_of(raw.get("participant") or {}, base_url),
        platform=e.PLATFORM_DOUYIN,
        status=e.CONVERSATION_STATUS_ACTIVE,
    )
    if raw.get("update_time"):
        conversation.update_time.CopyFrom(_millis(raw["update_time"]))
    last = raw.get("last_message")
    if last:
        conversation.last_message.CopyFrom(
            e.MessagePreview(
                content=text_of(last.get("content", "")),
                msg_type=_MESSAGE_TYPES.get(int(last.get("msg_type") or 7), e.MESSAGE_TYPE_TEXT),
                create_time=_millis(_required(last, "create_time")),
            )
        )
    return conversation


def message_of(raw: dict[str, Any], me: e.User, participant: e.User) -> e.Message:
    own = bool(raw.get("is_self"))
    return e.Message(
        message_id=_required(raw, "server_id"),
        conversation_id=_required(raw, "conversation_id"),
        sender=me if own else participant,
        receiver=participant if own else me,
        msg_type=_MESSAGE_TYPES.get(int(raw.get("msg_type") or 7), e.MESSAGE_TYPE_TEXT),
        content=text_of(raw.get("content", "")),
        create_time=_millis(_required(raw, "create_time")),
        status=e.MESSAGE_STATUS_SENT if own else e.MESSAGE_STATUS_DELIVERED,
        direction=e.DIRECTION_OUTBOUND if own else e.DIRECTION_INBOUND,
    )


def notification_of(raw: dict[str, Any], base_url: str) -> e.Notification:
    return e.Notification(
        notification_id=_required(raw, "nid"),
        notification_type=_NOTICE_TYPES.get(int(raw.get("type") or 0), e.NOTIFICATION_TYPE_SYSTEM),
        text=text_of(raw.get("content", "")),
        actor=user_of(raw.get("from_user") or {}, base_url),
        content_id=str(raw.get("aweme_id") or ""),
        create_time=_seconds(_required(raw, "create_time")),
    )
