"""One account's state in the memory store: crawled entities, their indexes and counters.

The crawled dictionaries and sort orders are built once per applied snapshot and not
changed afterwards; only the unread counters move when the team marks items read. The
`Handling` beside it is the master's own state and outlives every snapshot.

Its parts: keys.py (item keys), account_base.py (fields, index keys, counters, read
state), account_views.py (what the IM API shows); here building a state and changing it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, MutableMapping
from typing import Any

from sortedcontainers import SortedList

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.master.model import search, threads, time_keys
from services.master.model.account_base import Handling
from services.master.model.account_views import AccountViews
from services.master.model.intake import Intake
from services.master.model.keys import (
    _NEVER,
    INBOX_KINDS,
    _content_key,
    _discard_from,
    _last_activity_ns,
    comment_key,
    message_key,
    notification_key,
    ns_of,
)
from services.master.model.search import SearchIndex


class AccountState(AccountViews):
    """Crawled state of one account at one version, with its indexes."""

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
            if self.search is not None:
                self.search.add("w", content)
        for conversation in upserts.conversations:
            self._remove_conversation(conversation.conversation_id)
            self.conversations[conversation.conversation_id] = conversation
            self.conversation_order.add(self._conversation_key(conversation))
        for message in upserts.messages:
            old_message = self.messages.get(message.message_id)
            if old_message is not None and self._same_place(old_message, message):
                self.messages[message.message_id] = message  # a status, a recall: every index stays
                self._reindex("m", old_message, message)
                continue
            is_new = fresh and old_message is None
            self._remove_message(message.message_id)
            if is_new and self.is_inbound(message):
                self.handling.new_items.add(message_key(message.message_id))
                self.arrivals.append(message)
            elif is_new:
                self.own_arrivals.append(message)
            self._add_message(message)
        for comment in upserts.comments:
            old_comment = self.comments.get(comment.comment_id)
            if old_comment is not None and self._same_place(old_comment, comment):
                self.comments[comment.comment_id] = comment
                self._reindex("c", old_comment, comment)
                continue
            is_new = fresh and old_comment is None
            self._remove_comment(comment.comment_id)
            if is_new and not self.is_own(comment):
                self.handling.new_items.add(comment_key(comment.comment_id))
                self.arrivals.append(comment)
            elif is_new:
                self.own_arrivals.append(comment)
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

    def _reindex(self, kind: str, old: Any, new: Any) -> None:
        """An item edited in place: found by its new words."""
        if self.search is not None and search.terms_of(kind, old) != search.terms_of(kind, new):
            self.search.discard(kind, old)
            self.search.add(kind, new)

    async def search_index(self) -> SearchIndex:
        """The account's search index: made now, a slice at a time, if it was not yet (and
        from then on kept as changes are applied); waited for while it is being made."""
        if self.search is None:
            self.search = SearchIndex()
            await self.search.fill(self._search_slices())
        await self.search.ready.wait()
        return self.search

    def _search_slices(self, size: int = 5_000) -> Iterator[list[tuple[str, Any]]]:
        """Every message, comment and work in slices, read from the orders from where the
        last slice ended (so that changes between slices skip nothing)."""
        yield [("w", content) for content in list(self.contents.values())]
        for kind, order, table in (("m", self.message_order, self.messages), ("c", self.comment_order, self.comments)):
            after: bytes | None = None
            while True:
                keys = list(
                    itertools.islice(
                        order.irange(minimum=after, inclusive=(False, True)) if after is not None else iter(order), size
                    )
                )
                if not keys:
                    break
                after = keys[-1]
                yield [(kind, entity) for key in keys if (entity := table.get(time_keys.item_of(key))) is not None]

    def _remove_content(self, content_id: str) -> None:
        old = self.contents.pop(content_id, None)
        if old is not None:
            self.content_order.discard(_content_key(old))
            if self.search is not None:
                self.search.discard("w", old)

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
        if self.search is not None:
            self.search.add("m", message)

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
        if self.search is not None:
            self.search.discard("m", old)

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
        if self.search is not None:
            self.search.add("c", comment)

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
        if self.search is not None:
            self.search.discard("c", old)

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
            if mid not in new:
                continue
            if self.is_inbound(m := self.messages[mid]):
                handling.new_items.add(message_key(mid))
                self.arrivals.append(m)
            else:
                self.own_arrivals.append(m)
        new = self.comments.keys() - previous.comments.keys()
        for cid in self.comments if new else ():
            if cid not in new:
                continue
            if not self.is_own(c := self.comments[cid]):
                handling.new_items.add(comment_key(cid))
                self.arrivals.append(c)
            else:
                self.own_arrivals.append(c)
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
        for conversation_id in removals.conversation_ids:
            handling.threads.pop(conversation_id, None)
        for comment_id in removals.comment_ids:
            handling.threads.pop(threads.comment_thread(comment_id), None)

    def reopen_threads(self) -> None:
        """A customer writing in a conversation, or in a comment thread, the team set done
        or snoozed opens it again."""
        handlings = self.handling.threads
        if not handlings:
            return
        for entity in self.arrivals:
            if isinstance(entity, e.Message):
                thread_key, at = entity.conversation_id, entity.create_time
            elif isinstance(entity, e.Comment):
                thread_key, at = threads.thread_of(entity), entity.created_at
            else:
                continue
            handling = handlings.get(thread_key)
            if handling is not None and (after := threads.reopened(handling, ns_of(at))) is not None:
                handlings[thread_key] = after
                self.reopened.append(thread_key)

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
