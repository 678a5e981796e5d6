"""One account's state, as the IM API shows it: each entity with the master's own
state (read marks, pins, what is new) set on a copy."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import unified_messages_pb2 as u
from services.master.model import filters, threads
from services.master.model.account_base import AccountBase
from services.master.model.keys import (
    comment_key,
    message_key,
    notification_key,
    split_item_key,
)


class AccountViews(AccountBase):
    """The views of an account's entities."""

    # ----------------------------------------------------------------- views

    def account_view(self) -> e.Account:
        account = e.Account()
        account.CopyFrom(self.account)
        account.account_id = self.account_id
        account.version = self.version
        presence = self.presence
        account.worker_id = presence.worker_id
        account.online = presence.online
        account.paused = presence.paused
        account.display_name = presence.display_name
        if not account.platform:  # not crawled yet: the fleet's adapter says which
            account.platform = presence.platform
        status = presence.status
        if status.login_state:
            account.login_state = status.login_state
        if status.HasField("last_crawl_at"):
            account.last_crawl_at.CopyFrom(status.last_crawl_at)
        account.last_error = status.last_error
        if status.HasField("last_error_at"):
            account.last_error_at.CopyFrom(status.last_error_at)
        # How the crawls go, for everyone who may read the account; what a login asks of an
        # operator (status.login) only for the login scope (LoginService), never here.
        account.crawl_state = status.crawl_state
        if status.HasField("last_crawl_duration"):
            account.last_crawl_duration.CopyFrom(status.last_crawl_duration)
        del account.collections[:]
        account.collections.extend(status.collections)
        account.last_error_reason = status.last_error_reason
        return account

    def conversation_view(self, conversation_id: str) -> e.Conversation:
        conversation = e.Conversation()
        conversation.CopyFrom(self.conversations[conversation_id])
        conversation.account_id = self.account_id
        # Every master-owned field is set here, whatever the worker sent.
        conversation.unread_count = self.unread_by_conversation.get(conversation_id, 0)
        conversation.is_pinned = conversation_id in self.handling.pinned
        conversation.is_muted = conversation_id in self.handling.muted
        threads.view(conversation, self.handling.threads.get(conversation_id), time.time_ns())
        return conversation

    def unified_kind(self, item: str) -> tuple[str, str, int]:
        """An inbox item's kind, its entity's id and its UnifiedMessageType."""
        kind, entity_id = split_item_key(item, field="id")
        if kind == "notification":
            return kind, entity_id, u.UNIFIED_MESSAGE_TYPE_NOTIFICATION
        if kind == "message":
            return kind, entity_id, u.UNIFIED_MESSAGE_TYPE_DIRECT_MESSAGE
        discussion = bool(self.comments[entity_id].parent_comment_id)
        return kind, entity_id, u.UNIFIED_MESSAGE_TYPE_DISCUSSION if discussion else u.UNIFIED_MESSAGE_TYPE_COMMENT

    def message_view(self, message: e.Message) -> e.Message:
        view = e.Message()
        view.CopyFrom(message)
        view.account_id = self.account_id
        # Every master-owned field is set here, whatever the worker sent.
        read_ns, view.is_read, view.is_new = self.message_reading(message)
        _set_read_at(view, read_ns)
        return view

    def conversations_before_view(
        self, status: int, is_pinned: bool | None, is_muted: bool | None, assignee: str | None, thread_state: int
    ) -> Callable[[str], bool] | None:
        """filters.conversations_before_view of this account's conversations."""
        handling = self.handling
        asked = (status, is_pinned, is_muted, assignee, thread_state)
        return filters.conversations_before_view(
            *asked, self.conversations, handling.pinned, handling.muted, handling.threads
        )

    def inbox_before_view(
        self, types: Collection[int], is_read: bool | None, is_new: bool | None
    ) -> Callable[[str, str], bool] | None:
        """filters.unified_before_view of this account's inbox (message_reading and
        comment_reading's rules: the account's own words count read)."""
        return filters.unified_before_view(
            types,
            is_read,
            is_new,
            self.handling.read_at,
            self.handling.new_items,
            lambda kind, entity_id: (
                (kind == "message" and not self.is_inbound(self.messages[entity_id]))
                or (kind == "comment" and self.is_own(self.comments[entity_id]))
            ),
            lambda comment_id: bool(self.comments[comment_id].parent_comment_id),
        )

    def message_reading(self, message: e.Message) -> tuple[int | None, bool, bool]:
        """A message's read state: when it was read (None: not), whether it counts as
        read (an outbound one always does), whether it is new."""
        item = message_key(message.message_id)
        read_ns = self.handling.read_at.get(item)
        return read_ns, read_ns is not None or not self.is_inbound(message), item in self.handling.new_items

    def comment_view(self, comment: e.Comment) -> e.Comment:
        view = e.Comment()
        view.CopyFrom(comment)
        view.account_id = self.account_id
        # Every master-owned field is set here, whatever the worker sent.
        read_ns, view.is_read, view.is_new = self.comment_reading(comment)
        _set_read_at(view, read_ns)
        view.is_handled = False  # nothing marks a comment handled yet
        return view

    def comment_reading(self, comment: e.Comment) -> tuple[int | None, bool, bool]:
        """A comment's read state, as message_reading's (the account's own always read)."""
        item = comment_key(comment.comment_id)
        read_ns = self.handling.read_at.get(item)
        return read_ns, read_ns is not None or self.is_own(comment), item in self.handling.new_items

    def content_view(self, content_id: str) -> e.Content:
        content = e.Content()
        content.CopyFrom(self.contents[content_id])
        content.account_id = self.account_id
        # Every master-owned field is set here, whatever the worker sent.
        content.stats.unread_comments = self.unread_by_content.get(content_id, 0)
        content.stats.new_comments = self.new_by_content.get(content_id, 0)
        content.is_new = content_id in self.handling.new_contents
        return content

    def notification_view(self, notification: e.Notification) -> e.Notification:
        view = e.Notification()
        view.CopyFrom(notification)
        view.account_id = self.account_id
        read_ns = self.handling.read_at.get(notification_key(notification.notification_id))
        # Every master-owned field is set here, whatever the worker sent.
        _set_read_at(view, read_ns)
        view.is_read = read_ns is not None
        return view

    def unified_view(self, item: str) -> u.UnifiedMessage:
        kind, entity_id = split_item_key(item, field="id")
        result = u.UnifiedMessage(id=item, account_id=self.account_id)
        if kind == "notification":
            notification = self.notification_view(self.notifications[entity_id])
            result.type = u.UNIFIED_MESSAGE_TYPE_NOTIFICATION
            result.create_time.CopyFrom(notification.create_time)
            result.is_read, result.is_new = notification.is_read, item in self.handling.new_items
            result.notification.CopyFrom(notification)
        elif kind == "message":
            message = self.message_view(self.messages[entity_id])
            result.type = u.UNIFIED_MESSAGE_TYPE_DIRECT_MESSAGE
            result.create_time.CopyFrom(message.create_time)
            result.is_read, result.is_new = message.is_read, message.is_new
            result.message.CopyFrom(message)
        else:
            comment = self.comment_view(self.comments[entity_id])
            result.type = (
                u.UNIFIED_MESSAGE_TYPE_DISCUSSION if comment.parent_comment_id else u.UNIFIED_MESSAGE_TYPE_COMMENT
            )
            result.create_time.CopyFrom(comment.created_at)
            result.is_read, result.is_new = comment.is_read, comment.is_new
            result.comment.CopyFrom(comment)
        return result


def arrival_event(state: AccountViews, entity: e.Message | e.Comment | e.Notification) -> ev.Event:
    """The event announcing what arrived: a customer's message or comment, a notification."""
    if isinstance(entity, e.Message):
        return ev.Event(type=ev.EVENT_TYPE_NEW_MESSAGE, account_id=state.account_id, message=state.message_view(entity))
    if isinstance(entity, e.Comment):
        return ev.Event(type=ev.EVENT_TYPE_NEW_COMMENT, account_id=state.account_id, comment=state.comment_view(entity))
    return ev.Event(
        type=ev.EVENT_TYPE_NEW_NOTIFICATION, account_id=state.account_id, notification=state.notification_view(entity)
    )


def own_event(state: AccountViews, entity: e.Message | e.Comment) -> ev.Event:
    """The event announcing the account's own message or comment, new on the platform."""
    if isinstance(entity, e.Message):
        return ev.Event(type=ev.EVENT_TYPE_OWN_MESSAGE, account_id=state.account_id, message=state.message_view(entity))
    return ev.Event(type=ev.EVENT_TYPE_OWN_COMMENT, account_id=state.account_id, comment=state.comment_view(entity))


def _set_read_at(view: e.Message | e.Comment | e.Notification, read_ns: int | None) -> None:
    if read_ns is not None:
        view.read_at.FromNanoseconds(read_ns)
    else:
        view.ClearField("read_at")
