"""One account's state, its fields: what it holds, its index keys and counters, its
predicates and read state (account_state.py says how the whole works)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from imsync.journal.v1 import journal_pb2 as jpb
from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.master.model.entity_table import EntityTable
from services.master.model.errors import NotFound
from services.master.model.keys import (
    _APPLIED_HISTORY,
    _last_activity_ns,
    comment_key,
    message_key,
    split_item_key,
)
from services.master.model.search import SearchIndex


@dataclass
class Presence:
    """What the owning worker says of the account, whether it is connected, and what its
    fleet entry says that every view shows (mirrored here: whether an operator paused it,
    what the team calls it, its adapter's platform; model/fleet.py's mirror)."""

    worker_id: str = ""
    online: bool = False
    status: sync_pb2.AccountStatusReport = field(default_factory=sync_pb2.AccountStatusReport)
    paused: bool = False
    display_name: str = ""
    platform: e.Platform.ValueType = e.PLATFORM_UNSPECIFIED


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
    # Thread key (a conversation's id, or threads.comment_thread of a top-level comment's)
    # -> the team's handling of the thread (threads.py); none until someone acts.
    threads: dict[str, jpb.ThreadHandling] = field(default_factory=dict)


class AccountBase:
    """Crawled state of one account at one version: its fields and index keys."""

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
        # The account's own messages and comments this version brought (replies sent,
        # through imsync or elsewhere); the store announces them too.
        self.own_arrivals: list[e.Message | e.Comment] = []
        # Threads (their keys) the team had set done or snoozed that a customer's new
        # message or comment opened again (threads.py); the store announces them.
        self.reopened: list[str] = []
        # The account's search index (search.py): built when it is first searched, then
        # kept as changes are applied; None until then (a snapshot starts without one).
        self.search: SearchIndex | None = None
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
