"""The IM lists' filters, one definition for every store backend: each takes a list's
filter parameters and gives the test an item (as the client sees it) must pass."""

from __future__ import annotations

from collections.abc import Callable, Collection

from imsync.v1 import entities_pb2 as e
from imsync.v1 import unified_messages_pb2 as u


def accounts(status: int, platform: int, only: Collection[str] | None) -> Callable[[e.Account], bool]:
    """`only`: the accounts a key may use (None: all)."""
    return lambda view: (
        (only is None or view.account_id in only)
        and (not status or view.status == status)
        and (not platform or view.platform == platform)
    )


def conversations(
    status: int, is_pinned: bool | None, is_muted: bool | None, assignee: str | None = None, thread_state: int = 0
) -> Callable[[e.Conversation], bool]:
    """`assignee`: None for any, "" for nobody's; `thread_state` as it is now (threads.view)."""
    handled = handling(assignee, thread_state)
    return lambda view: (
        (is_pinned is None or view.is_pinned == is_pinned)
        and (is_muted is None or view.is_muted == is_muted)
        and (not status or view.status == status)
        and handled(view)
    )


def handling(assignee: str | None, thread_state: int) -> Callable[[e.Conversation | e.Thread], bool]:
    """By the team's handling, of a conversation or a thread: as `conversations`."""
    return lambda view: (
        (assignee is None or view.assignee == assignee) and (not thread_state or view.thread_state == thread_state)
    )


def messages(sender_id: str, receiver_id: str, status: int, message_type: int) -> Callable[[e.Message], bool]:
    """On crawled fields only: a stored message can be tested before its view is built."""
    return lambda message: (
        (not sender_id or message.sender.user_id == sender_id)
        and (not receiver_id or message.receiver.user_id == receiver_id)
        and (not status or message.status == status)
        and (not message_type or message.msg_type == message_type)
    )


def contents(content_type: int, is_new: bool | None) -> Callable[[e.Content], bool]:
    return lambda view: (
        (not content_type or view.content_type == content_type) and (is_new is None or view.is_new == is_new)
    )


def discussions(content_id: str, is_read: bool | None, is_new: bool | None) -> Callable[[e.Comment], bool]:
    return lambda view: (
        (not content_id or view.content_id == content_id)
        and (is_read is None or view.is_read == is_read)
        and (is_new is None or view.is_new == is_new)
    )


def unified(types: Collection[int], is_read: bool | None, is_new: bool | None) -> Callable[[u.UnifiedMessage], bool]:
    wanted = set(types)
    return lambda view: (
        (not wanted or view.type in wanted)
        and (is_read is None or view.is_read == is_read)
        and (is_new is None or view.is_new == is_new)
    )
