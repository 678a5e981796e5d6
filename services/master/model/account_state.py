"""One account's state in the memory store: crawled entities, their indexes and counters.

The crawled dictionaries and sort orders are built once per applied snapshot and not
changed afterwards; only the unread counters move when the team marks items read. The
`Handling` beside it is the master's own state and outlives every snapshot.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from sortedcontainers import SortedList

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import sync_pb2
from imsync.v1 import unified_messages_pb2 as u
from services.master.model import time_keys
from services.master.model.entity_table import EntityTable
from services.master.model.errors import InvalidArgument, NotFound
from services.master.model.intake import Intake

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


@dataclass
class Presence:
    """What the owning worker says of the account, and whether it is connected."""

    worker_id: str = ""
    online: bool = False
    status: sync_pb2.AccountStatusReport = field(default_factory=sync_pb2.AccountStatusReport)


@dataclass
class Handling:
    """The master's own state of an account: never overwritten by a sync."""

    # Inbox item key ("comment:<id>", "message:<id>", "notification:<id>") -> when it was
    # marked read (ns).
    read_at: dict[str, int] = field(default_factory=dict)
    pinned: set[str] = field(default_factory=set)
    muted: set[str] = field(default_factory=set)
    # Inbox items and works that arrived after the account's first sync; an item stops
    # being new once read.
    new_items: set[str] = field(default_factory=set)
    new_contents: set[str] = field(default_factory=set)
    # Collection -> newest platform time (ns) evicted to bound memory: nothing at or before
    # it that the account does not hold is taken in again.
    horizons: dict[str, int] = field(default_factory=dict)


class AccountState:
    """Crawled state of one account at one version, with its indexes."""

    def __init__(self, account_id: str, version: int, account: e.Account, handling: Handling) -> None:
        self.account_id = account_id
        self.version = version
        self.account = account
        self.handling = handling
        self.presence = Presence()
        # The last versions applied, newest last: a version among them delivered again is
        # a no-op; any other version not newer than `version` is refused.
        self.applied_versions: deque[int] = deque(maxlen=_APPLIED_HISTORY)
        # Customers' messages and comments, and notifications, this version brought; the
        # store announces them.
        self.arrivals: list[e.Message | e.Comment | e.Notification] = []
        self.contents: dict[str, e.Content] = {}
        # Messages and comments: EntityTables when built here (entity_table.py), any
        # mapping when loaded (Redis).
        self.comments: MutableMapping[str, e.Comment] = EntityTable()
        self.conversations: dict[str, e.Conversation] = {}
        self.messages: MutableMapping[str, e.Message] = EntityTable()
        self.notifications: dict[str, e.Notification] = {}
        # No notification is older than this (ns): the retention sweep looks at them only past it.
        self.notifications_since = 0
        # Sort orders; every key ends with the entity's id, so keys are unique.
        self.conversation_order = SortedList()  # (0 pinned / 1 not, -last message ns, id)
        # The orders of messages, comments and the inbox hold packed keys (time_keys.py).
        self.message_order = SortedList()  # (-create ns, id)
        self.messages_by_conversation: dict[str, SortedList] = {}
        self.content_order = SortedList()  # (-publish ns, id)
        self.comment_order = SortedList()  # (-create ns, id)
        self.comments_by_content: dict[str, SortedList] = {}
        self.replies_by_parent: dict[str, SortedList] = {}
        # The inbox: customers' messages and comments, their keys shared with the orders
        # above; merged when listed (MemoryStore.list_unified).
        self.inbox_messages = SortedList()
        self.inbox_comments = SortedList()
        self.inbox_notifications = SortedList()
        # Unread counters, kept in step with Handling.read_at.
        self.unread_by_conversation: Counter[str] = Counter()
        self.unread_by_content: Counter[str] = Counter()
        self.new_by_content: Counter[str] = Counter()
        self.unread_comments = 0
        self.unread_discussions = 0
        self.unread_direct_messages = 0
        self.unread_notifications = 0

    @classmethod
    def empty(cls, account_id: str) -> AccountState:
        return cls(account_id, 0, e.Account(account_id=account_id), Handling())

    @classmethod
    def build(
        cls, *, version: int, account: e.Account, intake: Intake, handling: Handling, previous: AccountState | None
    ) -> AccountState:
        """A state of the entities `intake` holds, every index made in bulk (one sort per
        index) from the facts gathered as they came in."""
        intake.settled()
        state = cls(intake.account_id, version, account, handling)
        state.contents = intake.contents
        state.comments = intake.comments
        state.conversations = intake.conversations
        state.messages = intake.messages
        state.notifications = intake.notifications
        if previous is not None and previous.version > 0:
            state._note_new_arrivals(previous)

        state.conversation_order = SortedList(state._conversation_key(c) for c in state.conversations.values())
        state.message_order = SortedList(intake.message_keys)
        state.messages_by_conversation = {
            cid: SortedList(keys) for cid, keys in intake.messages_by_conversation.items()
        }
        inbox, conversations, ids = intake.inbound_keys, intake.inbound_conversations, intake.inbound_ids
        if intake.undirected:
            inbox, conversations, ids = list(inbox), list(conversations), list(ids)
            user_id = account.user_id
            for key, m in intake.undirected:
                if m.sender.user_id != user_id:  # is_inbound(m) of a message without a direction
                    inbox.append(key)
                    conversations.append(m.conversation_id)
                    ids.append(m.message_id)
        state.inbox_messages = SortedList(inbox)
        read_at = handling.read_at
        if read_at:
            conversations = [
                cid for cid, mid in zip(conversations, ids, strict=True) if message_key(mid) not in read_at
            ]
        state.unread_by_conversation = Counter(conversations)
        state.unread_direct_messages = len(conversations)

        state.content_order = SortedList(_content_key(c) for c in state.contents.values())
        state.comment_order = SortedList(intake.comment_keys)
        state.comments_by_content = {cid: SortedList(keys) for cid, keys in intake.comments_by_content.items()}
        state.replies_by_parent = {cid: SortedList(keys) for cid, keys in intake.replies_by_parent.items()}
        inbox = []
        for key, c in zip(intake.comment_keys, intake.comment_list, strict=True):
            if not state.is_own(c):
                inbox.append(key)
                state._count_comment(c, +1)
        state.inbox_comments = SortedList(inbox)
        keys = []
        for nid, notification in state.notifications.items():
            keys.append(time_keys.time_key(notification.create_time, nid))
            if notification_key(nid) not in read_at:
                state.unread_notifications += 1
        state.inbox_notifications = SortedList(keys)
        return state

    # ------------------------------------------------------ index keys, counters

    def _conversation_key(self, conversation: e.Conversation) -> tuple[int, int, str]:
        pinned = conversation.conversation_id in self.handling.pinned
        return (0 if pinned else 1, -_last_activity_ns(conversation), conversation.conversation_id)

    def _count_message(self, message: e.Message, sign: int) -> None:
        """Counts an inbound message in (sign +1) or out of (-1) the unread counters."""
        if message_key(message.message_id) in self.handling.read_at:
            return
        self.unread_by_conversation[message.conversation_id] += sign
        self.unread_direct_messages += sign

    def _count_comment(self, comment: e.Comment, sign: int) -> None:
        """Counts a customer's comment in (+1) or out of (-1) the unread and new counters."""
        item = comment_key(comment.comment_id)
        if item in self.handling.read_at:
            return
        self.unread_by_content[comment.content_id] += sign
        if item in self.handling.new_items:
            self.new_by_content[comment.content_id] += sign
        if comment.parent_comment_id:
            self.unread_discussions += sign
        else:
            self.unread_comments += sign

    # ----------------------------------------------------- incremental changes

    def apply_changes(
        self, version: int, account: e.Account | None, upserts: Any, removals: Any, floors: dict[str, int] | None = None
    ) -> None:
        """Applies a delta in place, index by index; O(changes x log n). An entity the
        account does not hold, at or before its collection's floor (retention), is left out."""
        if account is not None:
            self.account = account
        if floors:
            upserts = self.admitted(upserts, floors)
        fresh = self.version > 0
        for content in upserts.contents:
            if fresh and content.content_id not in self.contents:
                self.handling.new_contents.add(content.content_id)
            self._remove_content(content.content_id)
            self.contents[content.content_id] = content
            self.content_order.add(_content_key(content))
        for conversation in upserts.conversations:
            self._remove_conversation(conversation.conversation_id)
            self.conversations[conversation.conversation_id] = conversation
            self.conversation_order.add(self._conversation_key(conversation))
        for message in upserts.messages:
            old_message = self.messages.get(message.message_id)
            if old_message is not None and self._same_place(old_message, message):
                self.messages[message.message_id] = message  # a status, a recall: every index stays
                continue
            is_new = fresh and old_message is None
            self._remove_message(message.message_id)
            if is_new and self.is_inbound(message):
                self.handling.new_items.add(message_key(message.message_id))
                self.arrivals.append(message)
            self._add_message(message)
        for comment in upserts.comments:
            old_comment = self.comments.get(comment.comment_id)
            if old_comment is not None and self._same_place(old_comment, comment):
                self.comments[comment.comment_id] = comment
                continue
            is_new = fresh and old_comment is None
            self._remove_comment(comment.comment_id)
            if is_new and not self.is_own(comment):
                self.handling.new_items.add(comment_key(comment.comment_id))
                self.arrivals.append(comment)
            self._add_comment(comment)
        for notification in upserts.notifications:
            old_notification = self.notifications.get(notification.notification_id)
            if old_notification is not None and old_notification.create_time == notification.create_time:
                self.notifications[notification.notification_id] = notification  # every index stays
                continue
            self._remove_notification(notification.notification_id)
            if fresh and old_notification is None:
                self.handling.new_items.add(notification_key(notification.notification_id))
                self.arrivals.append(notification)
            self._add_notification(notification)

        for content_id in removals.content_ids:
            self._remove_content(content_id)
            self.handling.new_contents.discard(content_id)
        for conversation_id in removals.conversation_ids:
            self._remove_conversation(conversation_id)
        for message_id in removals.message_ids:
            self._remove_message(message_id)
            self.handling.new_items.discard(message_key(message_id))
        for comment_id in removals.comment_ids:
            self._remove_comment(comment_id)
            self.handling.new_items.discard(comment_key(comment_id))
        for notification_id in removals.notification_ids:
            self._remove_notification(notification_id)
            self.handling.new_items.discard(notification_key(notification_id))
        self.version = version

    def _same_place(self, old: e.Message | e.Comment, new: e.Message | e.Comment) -> bool:
        """Whether a changed message or comment keeps its place in every index and count:
        the same time, group and side (the customer's or the account's)."""
        if isinstance(new, e.Message):
            assert isinstance(old, e.Message)
            return (
                old.create_time == new.create_time
                and old.conversation_id == new.conversation_id
                and self.is_inbound(old) == self.is_inbound(new)
            )
        assert isinstance(old, e.Comment)
        return (
            old.created_at == new.created_at
            and old.content_id == new.content_id
            and old.parent_comment_id == new.parent_comment_id
            and self.is_own(old) == self.is_own(new)
        )

    def set_pinned(self, conversation_id: str, pinned: bool) -> None:
        """Pins or unpins a conversation, moving it in the conversation order."""
        conversation = self.conversations[conversation_id]
        self.conversation_order.discard(self._conversation_key(conversation))
        if pinned:
            self.handling.pinned.add(conversation_id)
        else:
            self.handling.pinned.discard(conversation_id)
        self.conversation_order.add(self._conversation_key(conversation))

    def _remove_content(self, content_id: str) -> None:
        old = self.contents.pop(content_id, None)
        if old is not None:
            self.content_order.discard(_content_key(old))

    def _remove_conversation(self, conversation_id: str) -> None:
        old = self.conversations.pop(conversation_id, None)
        if old is not None:
            self.conversation_order.discard(self._conversation_key(old))

    def _add_message(self, message: e.Message) -> None:
        self.messages[message.message_id] = message
        key = time_keys.time_key(message.create_time, message.message_id)
        self.message_order.add(key)
        self.messages_by_conversation.setdefault(message.conversation_id, SortedList()).add(key)
        if self.is_inbound(message):
            self.inbox_messages.add(key)
            self._count_message(message, +1)

    def _remove_message(self, message_id: str) -> None:
        old = self.messages.pop(message_id, None)
        if old is None:
            return
        key = time_keys.time_key(old.create_time, message_id)
        self.message_order.discard(key)
        _discard_from(self.messages_by_conversation, old.conversation_id, key)
        if self.is_inbound(old):
            self.inbox_messages.discard(key)
            self._count_message(old, -1)

    def _add_comment(self, comment: e.Comment) -> None:
        self.comments[comment.comment_id] = comment
        key = time_keys.time_key(comment.created_at, comment.comment_id)
        self.comment_order.add(key)
        self.comments_by_content.setdefault(comment.content_id, SortedList()).add(key)
        if comment.parent_comment_id:
            self.replies_by_parent.setdefault(comment.parent_comment_id, SortedList()).add(key)
        if not self.is_own(comment):
            self.inbox_comments.add(key)
            self._count_comment(comment, +1)

    def _remove_comment(self, comment_id: str) -> None:
        old = self.comments.pop(comment_id, None)
        if old is None:
            return
        key = time_keys.time_key(old.created_at, comment_id)
        self.comment_order.discard(key)
        _discard_from(self.comments_by_content, old.content_id, key)
        if old.parent_comment_id:
            _discard_from(self.replies_by_parent, old.parent_comment_id, key)
        if not self.is_own(old):
            self.inbox_comments.discard(key)
            self._count_comment(old, -1)

    def _add_notification(self, notification: e.Notification) -> None:
        nid = notification.notification_id
        self.notifications[nid] = notification
        self.notifications_since = min(self.notifications_since, ns_of(notification.create_time))
        self.inbox_notifications.add(time_keys.time_key(notification.create_time, nid))
        if notification_key(nid) not in self.handling.read_at:
            self.unread_notifications += 1

    def _remove_notification(self, notification_id: str) -> None:
        old = self.notifications.pop(notification_id, None)
        if old is None:
            return
        self.inbox_notifications.discard(time_keys.time_key(old.create_time, notification_id))
        if notification_key(notification_id) not in self.handling.read_at:
            self.unread_notifications -= 1

    def _note_new_arrivals(self, previous: AccountState) -> None:
        """Marks as new what this version brings that the previous one did not have."""
        handling = self.handling
        # Found with set operations; then walked in the snapshot's order, as announced,
        # looking at the new ones only (a table makes an entity's wrapper when asked).
        new = self.messages.keys() - previous.messages.keys()
        for mid in self.messages if new else ():
            if mid in new and self.is_inbound(m := self.messages[mid]):
                handling.new_items.add(message_key(mid))
                self.arrivals.append(m)
        new = self.comments.keys() - previous.comments.keys()
        for cid in self.comments if new else ():
            if cid in new and not self.is_own(c := self.comments[cid]):
                handling.new_items.add(comment_key(cid))
                self.arrivals.append(c)
        new = self.notifications.keys() - previous.notifications.keys()
        for nid in self.notifications if new else ():
            if nid in new:
                handling.new_items.add(notification_key(nid))
                self.arrivals.append(self.notifications[nid])
        handling.new_contents.update(cid for cid in self.contents if cid not in previous.contents)
        # What is gone is no longer new.
        handling.new_items = {item for item in handling.new_items if self._holds_item(item)}
        handling.new_contents &= self.contents.keys()

    def _holds_item(self, item: str) -> bool:
        kind, _, entity_id = item.partition(":")
        return kind in INBOX_KINDS and entity_id in self.collection(kind)

    def reaches(self, floors: dict[str, int]) -> bool:
        """Whether the state holds anything at or before its collection's floor."""
        oldest = {
            "messages": time_keys.ns_of_key(self.message_order[-1]) if self.message_order else None,
            "comments": time_keys.ns_of_key(self.comment_order[-1]) if self.comment_order else None,
            "contents": -int(self.content_order[-1][0]) if self.content_order else None,
            "conversations": min(map(_last_activity_ns, self.conversations.values()), default=None),
            "notifications": min((ns_of(n.create_time) for n in self.notifications.values()), default=None),
        }
        return any(at is not None and at <= floors.get(kind, 0) for kind, at in oldest.items())

    def admitted(self, batch: Any, floors: dict[str, int]) -> sync_pb2.EntityBatch:
        """The entities of `batch` the account holds already or that are newer than their
        collection's floor; `batch` itself when that is all of them."""
        held: dict[str, tuple[MutableMapping[str, Any], str, Any]] = {
            "messages": (self.messages, "message_id", lambda m: ns_of(m.create_time)),
            "comments": (self.comments, "comment_id", lambda c: ns_of(c.created_at)),
            "contents": (self.contents, "content_id", lambda c: ns_of(c.publish_time)),
            "conversations": (self.conversations, "conversation_id", _last_activity_ns),
            "notifications": (self.notifications, "notification_id", lambda n: ns_of(n.create_time)),
        }
        kept: dict[str, list[Any]] = {}
        dropped = False
        for kind, (entities, key, time_of) in held.items():
            floor = floors.get(kind, 0)
            items = getattr(batch, kind)
            if not floor:
                kept[kind] = items
                continue
            kept[kind] = [x for x in items if getattr(x, key) in entities or time_of(x) > floor]
            dropped = dropped or len(kept[kind]) != len(items)
        if not dropped:
            return batch  # type: ignore[no-any-return]
        out = sync_pb2.EntityBatch()
        for kind, items in kept.items():
            getattr(out, kind).extend(items)
        return out

    def floors(self, ttl_horizons: dict[str, int]) -> dict[str, int]:
        """Per collection, the platform time at or before which an entity not held is not taken in."""
        return {kind: max(ttl_horizons.get(kind, 0), self.handling.horizons.get(kind, 0)) for kind in ttl_horizons}

    def expired(self, ttl_horizons: dict[str, int]) -> sync_pb2.Removals:
        """The entities past their time to live, found from the old end of each order."""
        removals = sync_pb2.Removals()

        def old_end(order: SortedList, floor: int, packed: bool) -> list[str]:
            out: list[str] = []
            if floor:
                for key in reversed(order):
                    if (time_keys.ns_of_key(key) if packed else -int(key[0])) > floor:
                        break
                    out.append(time_keys.item_of(key) if packed else str(key[-1]))
            return out

        removals.message_ids.extend(old_end(self.message_order, ttl_horizons.get("messages", 0), True))
        removals.comment_ids.extend(old_end(self.comment_order, ttl_horizons.get("comments", 0), True))
        removals.content_ids.extend(old_end(self.content_order, ttl_horizons.get("contents", 0), False))
        floor = ttl_horizons.get("conversations", 0)
        if floor:
            # The order's old end: unpinned, least recently active last. A conversation the
            # team pinned sorts before all others and stays until unpinned.
            for unpinned, newest, conversation_id in reversed(self.conversation_order):
                if not unpinned or -newest > floor:
                    break
                removals.conversation_ids.append(conversation_id)
        floor = ttl_horizons.get("notifications", 0)
        if floor and self.notifications_since <= floor:
            # Notifications have no order: they are looked at only once one may be due.
            removals.notification_ids.extend(
                nid for nid, n in self.notifications.items() if ns_of(n.create_time) <= floor
            )
            gone = set(removals.notification_ids)
            self.notifications_since = min(
                (ns_of(n.create_time) for nid, n in self.notifications.items() if nid not in gone), default=_NEVER
            )
        return removals

    def evict(self, removals: sync_pb2.Removals) -> None:
        """Drops entities as a platform deletion would, and forgets their read marks."""
        self.apply_changes(self.version, None, sync_pb2.EntityBatch(), removals)
        handling = self.handling
        for message_id in removals.message_ids:
            handling.read_at.pop(message_key(message_id), None)
        for comment_id in removals.comment_ids:
            handling.read_at.pop(comment_key(comment_id), None)
        for notification_id in removals.notification_ids:
            handling.read_at.pop(notification_key(notification_id), None)
        handling.pinned.difference_update(removals.conversation_ids)
        handling.muted.difference_update(removals.conversation_ids)

    def entity_count(self) -> int:
        return (
            len(self.contents)
            + len(self.comments)
            + len(self.conversations)
            + len(self.messages)
            + len(self.notifications)
        )

    def was_applied(self, version: int) -> bool:
        return version in self.applied_versions

    def note_applied(self, version: int) -> None:
        self.applied_versions.append(version)

    def collection(self, kind: str) -> MutableMapping[str, Any]:
        """The entities of one kind: "conversation", "message", "content", "comment" or
        "notification"."""
        collections: dict[str, MutableMapping[str, Any]] = {
            "conversation": self.conversations,
            "message": self.messages,
            "content": self.contents,
            "comment": self.comments,
            "notification": self.notifications,
        }
        return collections[kind]

    # ----------------------------------------------------------- predicates

    def is_inbound(self, message: e.Message) -> bool:
        if message.direction != e.DIRECTION_UNSPECIFIED:
            return message.direction == e.DIRECTION_INBOUND
        return message.sender.user_id != self.account.user_id

    def is_own(self, comment: e.Comment) -> bool:
        return bool(self.account.user_id) and comment.author.user_id == self.account.user_id

    # ------------------------------------------------------------ read state

    def mark_read(self, item: str, now_ns: int) -> bool:
        """Marks an inbox item read; True when it was unread. Outbound items are never unread."""
        handling = self.handling
        if item in handling.read_at:
            return False
        kind, entity_id = split_item_key(item, field="id")
        if kind == "message":
            message = self.messages.get(entity_id)
            if message is None:
                raise NotFound(f"message {entity_id!r} not found")
            if not self.is_inbound(message):
                return False
            self._count_message(message, -1)
        elif kind == "comment":
            comment = self.comments.get(entity_id)
            if comment is None:
                raise NotFound(f"comment {entity_id!r} not found")
            if self.is_own(comment):
                return False
            self._count_comment(comment, -1)
        else:
            if entity_id not in self.notifications:
                raise NotFound(f"notification {entity_id!r} not found")
            self.unread_notifications -= 1
        handling.read_at[item] = now_ns
        handling.new_items.discard(item)
        return True

    # ----------------------------------------------------------------- views

    def account_view(self) -> e.Account:
        account = e.Account()
        account.CopyFrom(self.account)
        account.account_id = self.account_id
        account.version = self.version
        presence = self.presence
        account.worker_id = presence.worker_id
        account.online = presence.online
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
        return conversation

    def message_view(self, message: e.Message) -> e.Message:
        view = e.Message()
        view.CopyFrom(message)
        view.account_id = self.account_id
        item = message_key(message.message_id)
        read_ns = self.handling.read_at.get(item)
        # Every master-owned field is set here, whatever the worker sent.
        if read_ns is not None:
            view.read_at.FromNanoseconds(read_ns)
        else:
            view.ClearField("read_at")
        view.is_read = read_ns is not None or not self.is_inbound(message)
        view.is_new = item in self.handling.new_items
        return view

    def comment_view(self, comment: e.Comment) -> e.Comment:
        view = e.Comment()
        view.CopyFrom(comment)
        view.account_id = self.account_id
        item = comment_key(comment.comment_id)
        read_ns = self.handling.read_at.get(item)
        # Every master-owned field is set here, whatever the worker sent.
        if read_ns is not None:
            view.read_at.FromNanoseconds(read_ns)
        else:
            view.ClearField("read_at")
        view.is_read = read_ns is not None or self.is_own(comment)
        view.is_new = item in self.handling.new_items
        view.is_handled = False  # nothing marks a comment handled yet
        return view

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
        if read_ns is not None:
            view.read_at.FromNanoseconds(read_ns)
        else:
            view.ClearField("read_at")
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


def arrival_event(state: AccountState, entity: e.Message | e.Comment | e.Notification) -> ev.Event:
    """The event announcing what arrived: a customer's message or comment, a notification."""
    if isinstance(entity, e.Message):
        return ev.Event(type=ev.EVENT_TYPE_NEW_MESSAGE, account_id=state.account_id, message=state.message_view(entity))
    if isinstance(entity, e.Comment):
        return ev.Event(type=ev.EVENT_TYPE_NEW_COMMENT, account_id=state.account_id, comment=state.comment_view(entity))
    return ev.Event(
        type=ev.EVENT_TYPE_NEW_NOTIFICATION, account_id=state.account_id, notification=state.notification_view(entity)
    )


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
