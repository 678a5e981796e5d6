"""The IM lists' filters, one definition for every store backend: each takes a list's
filter parameters and gives the test an item (as the client sees it) must pass."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

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


def conversations_before_view(
    status: int,
    is_pinned: bool | None,
    is_muted: bool | None,
    assignee: str | None,
    thread_state: int,
    stored: Mapping[str, e.Conversation],
    pinned: Collection[str],
    muted: Collection[str],
    handled: Collection[str],
) -> Callable[[str], bool] | None:
    """What of `conversations`' test can be told of a conversation (by id) from what its
    view is made of, before the view is built: False only for one the test refuses (the
    view would be refused too); None when nothing is filtered. `stored`: the crawled
    conversations; `pinned`, `muted`, `handled`: the ids the team pinned, muted, handles.
    A conversation nobody handles shows no assignee and is open (threads.view); one that is
    handled is left to the view, whose state depends on the time (a snooze running out)."""
    if (status, is_pinned, is_muted, assignee, thread_state) == (0, None, None, None, 0):
        return None
    unhandled_passes = (assignee is None or assignee == "") and thread_state in (0, e.THREAD_STATE_OPEN)
    return lambda conversation_id: (
        (is_pinned is None or (conversation_id in pinned) == is_pinned)
        and (is_muted is None or (conversation_id in muted) == is_muted)
        and (not status or stored[conversation_id].status == status)
        and (unhandled_passes or conversation_id in handled)
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


# The inbox's kinds of item, and the types each kind's items may have.
_KIND_TYPES = {
    "notification": (u.UNIFIED_MESSAGE_TYPE_NOTIFICATION,),
    "message": (u.UNIFIED_MESSAGE_TYPE_DIRECT_MESSAGE,),
    "comment": (u.UNIFIED_MESSAGE_TYPE_COMMENT, u.UNIFIED_MESSAGE_TYPE_DISCUSSION),
}


def unified_kinds(types: Collection[int]) -> frozenset[str]:
    """The kinds of inbox item ("notification", "message", "comment") of which `unified`'s
    test may take some: the inbox's orders of the others need not be read at all."""
    return frozenset(kind for kind, kinds_types in _KIND_TYPES.items() if not types or set(kinds_types) & set(types))


def unified_before_view(
    types: Collection[int],
    is_read: bool | None,
    is_new: bool | None,
    read_at: Mapping[str, int],
    new_items: Collection[str],
    is_read_anyway: Callable[[str, str], bool],
    is_discussion: Callable[[str], bool],
) -> Callable[[str, str], bool] | None:
    """What of `unified`'s test can be told of an inbox item (its kind and entity id) from
    what its view is made of, before the view is built: False only for one the test
    refuses; None when nothing is filtered. `read_at`, `new_items`: the read marks and the
    new items, by item key; `is_read_anyway(kind, id)`: whether an unmarked one counts
    read (the account's own words do); `is_discussion(comment_id)`: a reply's."""
    if not types and is_read is None and is_new is None:
        return None
    wanted = set(types)

    def may_pass(kind: str, entity_id: str) -> bool:
        item = f"{kind}:{entity_id}"
        if is_new is not None and (item in new_items) != is_new:
            return False
        if is_read is not None and (item in read_at or is_read_anyway(kind, entity_id)) != is_read:
            return False
        if not wanted:
            return True
        if kind == "comment":
            discussion = is_discussion(entity_id)
            return (u.UNIFIED_MESSAGE_TYPE_DISCUSSION if discussion else u.UNIFIED_MESSAGE_TYPE_COMMENT) in wanted
        return _KIND_TYPES[kind][0] in wanted

    return may_pass


def unified(types: Collection[int], is_read: bool | None, is_new: bool | None) -> Callable[[u.UnifiedMessage], bool]:
    wanted = set(types)
    return lambda view: (
        (not wanted or view.type in wanted)
        and (is_read is None or view.is_read == is_read)
        and (is_new is None or view.is_new == is_new)
    )
