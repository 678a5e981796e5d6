"""The embedded store: every account's newest state in memory, indexed for the IM orders.

Each account's crawled state is an immutable-by-convention `AccountState`: a snapshot
builds a new one beside the old and swaps it in, so a reader never sees half a snapshot.
The master's own state (`Handling`: read marks, pins, mutes, what is new) lives apart and
is never replaced by a sync. Every list walks a sorted index from the cursor's key, so a
page costs O(log n + page size) plus whatever a filter skips.

The store is two modules: changes.py (state, journal, sync, retention, events) and
this one (the IM reads and marks).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from sortedcontainers import SortedList

from imsync.journal.v1 import journal_pb2 as jpb
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from imsync.v1 import unified_messages_pb2 as u
from services.master.memory.changes import Key, _collect, _page, _set_flag
from services.master.memory.search import Searching
from services.master.model import cursor as cursors
from services.master.model import filters, threads, time_keys
from services.master.model.account_state import AccountState
from services.master.model.cursor import Newest
from services.master.model.errors import InvalidArgument, NotFound
from services.master.model.keys import comment_key, message_key, split_item_key
from services.master.model.store import Page, UnifiedStats, page_size
from services.master.model.time_keys import item_of

if TYPE_CHECKING:
    from services.master.model.json_views import JsonViews

# The inbox's kinds in their rank at one instant (list_unified's orders).
_KINDS = ("notification", "message", "comment")


def _item_id(entry: tuple[bytes, int, bytes]) -> str:
    """An inbox entry's item id ("<kind>:<id>"): (time, the kind's rank in _KINDS, its key)."""
    return f"{_KINDS[entry[1]]}:{item_of(entry[2])}"


def _unified_cursor(end: tuple[bytes, int, bytes] | None) -> str:
    """The cursor after an inbox page's last entry ("" after none)."""
    return "" if end is None else cursors.encode("unified", (-time_keys.ns_of_key(end[2]), _item_id(end)))


class MemoryStore(Searching):
    """The in-memory Store."""

    # ------------------------------------------------------------ accounts

    def _owner(self, account_id: str, kind: str, entity_id: str, field: str) -> AccountState:
        """The account holding an entity: the one named, or else the only one that has it.

        IM clients of the old API address items by id alone; platform ids are unique in
        practice, and an id found in several accounts asks for `account_id`.
        """
        if account_id:
            state = self._state(account_id)
            owners = [state] if entity_id in state.collection(kind) else []
        else:
            owners = [state for state in self._accounts.values() if entity_id in state.collection(kind)]
        if not entity_id:
            raise InvalidArgument("required", field=field)
        if not owners:
            raise NotFound(f"{kind} {entity_id!r} not found")
        if len(owners) > 1:
            raise InvalidArgument(f"{kind} {entity_id!r} is in several accounts; name one", field="account_id")
        return owners[0]

    async def accounts_holding(self, kind: str, entity_id: str) -> list[str]:
        return [state.account_id for state in self._accounts.values() if entity_id in state.collection(kind)]

    async def list_accounts(
        self,
        *,
        status: int,
        platform: int,
        cursor: str,
        count: int,
        only: Collection[str] | None = None,
    ) -> Page[e.Account]:
        wanted = filters.accounts(status, platform, only)

        def view(key: Key) -> e.Account | None:
            if only is not None and key[0] not in only:
                return None  # not even built
            account = self._accounts[str(key[0])].account_view()
            return account if wanted(account) else None

        return _page(self._account_order, "accounts", (str,), cursor, count, view)

    async def get_account(self, account_id: str) -> e.Account:
        return self._state(account_id).account_view()

    # ------------------------------------------------------- conversations

    async def list_conversations(
        self,
        account_id: str,
        *,
        status: int,
        is_pinned: bool | None,
        is_muted: bool | None,
        cursor: str,
        count: int,
        assignee: str | None = None,
        thread_state: int = 0,
        as_json: JsonViews | None = None,
    ) -> Page[e.Conversation]:
        state = self._state(account_id)
        order = state.conversation_order
        if as_json is not None and (status, is_pinned, is_muted, assignee, thread_state) == (0, None, None, None, 0):
            every = partial(as_json.conversations_of, state)
            return _page(order, "conversations", (int, int, str), cursor, count, None, collect=every).as_encoded()
        wanted = filters.conversations(status, is_pinned, is_muted, assignee, thread_state)
        may_pass = state.conversations_before_view(status, is_pinned, is_muted, assignee, thread_state)

        def view(key: Key) -> e.Conversation | None:
            # A filtered page may pass over most of the account: refuse what can be refused
            # before a view is built.
            if may_pass is not None and not may_pass(str(key[2])):
                return None
            conversation = state.conversation_view(str(key[2]))
            return conversation if wanted(conversation) else None

        if as_json is None:
            return _page(order, "conversations", (int, int, str), cursor, count, view)
        to_json = as_json.conversation

        def encoded(key: Key) -> bytes | None:
            return to_json(state, str(key[2])) if view(key) is not None else None

        return _page(order, "conversations", (int, int, str), cursor, count, encoded).as_encoded()

    async def get_conversation(self, account_id: str, conversation_id: str) -> e.Conversation:
        state = self._owner(account_id, "conversation", conversation_id, "conversation_id")
        return state.conversation_view(conversation_id)

    async def mark_conversation_read(
        self, account_id: str, conversation_id: str, now_ns: int
    ) -> tuple[int, e.Conversation]:
        state = self._owner(account_id, "conversation", conversation_id, "conversation_id")
        conversation = state.conversation_view(conversation_id)
        order = state.messages_by_conversation.get(conversation_id, ())
        items = [item for key in order if state.mark_read(item := message_key(item_of(key)), now_ns)]
        self._log_reads(state, items, now_ns)
        self._announce_read(state, items)
        handled = conversation_id in state.handling.threads  # else there is no mark to clear
        if handled and self._handle(state, conversation_id, threads.read, now_ns):
            conversation = state.conversation_view(conversation_id)
        marked = len(items)
        conversation.unread_count = state.unread_by_conversation.get(conversation_id, 0)
        return marked, conversation

    # ------------------------------------------------------------ the team's handling

    async def handle_conversation(
        self, account_id: str, conversation_id: str, change: threads.Change, now_ns: int
    ) -> e.Conversation:
        state = self._owner(account_id, "conversation", conversation_id, "conversation_id")
        self._handle(state, conversation_id, change, now_ns)
        return state.conversation_view(conversation_id)

    async def handle_comment_thread(
        self, account_id: str, comment_id: str, change: threads.Change, now_ns: int
    ) -> tuple[str, str]:
        state = self._owner(account_id, "comment", comment_id, "comment_id")
        root = state.comments[comment_id].parent_comment_id or comment_id
        self._handle(state, threads.comment_thread(root), change, now_ns)
        return state.account_id, root

    async def thread_handlings(self, account_id: str, thread_keys: Iterable[str]) -> dict[str, jpb.ThreadHandling]:
        handlings = self._state(account_id).handling.threads
        return {key: handlings[key] for key in thread_keys if key in handlings}

    def _handle(self, state: AccountState, thread_key: str, change: threads.Change, now_ns: int) -> bool:
        """Applies a change to a thread's handling: journaled and announced when it changes
        anything. The handling is replaced, never changed in place (checkpoints take
        references)."""
        after, changed = threads.apply(state.handling.threads.get(thread_key), change, now_ns)
        if not changed:
            return False
        state.handling.threads[thread_key] = after
        self._changed(state.account_id)
        self._log(state.account_id, jpb.Record(thread=threads.record(state.account_id, thread_key, after)))
        self._emit(threads.event_of(state.account_id, thread_key, after))
        return True

    async def conversation_notes(self, account_id: str, conversation_id: str) -> list[e.Note]:
        state = self._owner(account_id, "conversation", conversation_id, "conversation_id")
        handling = state.handling.threads.get(conversation_id)
        return list(handling.notes) if handling is not None else []

    async def announce(self, event: ev.Event) -> None:
        self._emit(event)

    async def snoozed(self) -> list[tuple[int, str, str]]:
        return [
            snooze
            for state in self._accounts.values()
            for snooze in threads.snoozes(state.account_id, state.handling.threads)
        ]

    async def set_pinned(self, account_id: str, conversation_id: str, pinned: bool) -> e.Conversation:
        state = self._owner(account_id, "conversation", conversation_id, "conversation_id")
        state.set_pinned(conversation_id, pinned)
        self._changed(state.account_id)
        flags = jpb.ConversationFlags(account_id=state.account_id, conversation_id=conversation_id, pinned=pinned)
        self._log(state.account_id, jpb.Record(conversation_flags=flags))
        return state.conversation_view(conversation_id)

    async def set_muted(self, account_id: str, conversation_id: str, muted: bool) -> e.Conversation:
        state = self._owner(account_id, "conversation", conversation_id, "conversation_id")
        _set_flag(state.handling.muted, conversation_id, muted)
        self._changed(state.account_id)
        flags = jpb.ConversationFlags(account_id=state.account_id, conversation_id=conversation_id, muted=muted)
        self._log(state.account_id, jpb.Record(conversation_flags=flags))
        return state.conversation_view(conversation_id)

    # ------------------------------------------------------------ messages

    async def list_messages(
        self,
        account_id: str,
        *,
        conversation_id: str,
        sender_id: str,
        receiver_id: str,
        status: int,
        message_type: int,
        since_ns: int | None,
        cursor: str,
        count: int,
        as_json: JsonViews | None = None,
    ) -> Page[e.Message]:
        state = self._state(account_id)
        if conversation_id:
            order = state.messages_by_conversation.get(conversation_id)
            if order is None:
                if conversation_id not in state.conversations:
                    raise NotFound(f"conversation {conversation_id!r} not found")
                order = SortedList()
        else:
            order = state.message_order

        wanted = filters.messages(sender_id, receiver_id, status, message_type)

        def view(key: bytes) -> e.Message | None:
            message = state.messages[item_of(key)]
            return state.message_view(message) if wanted(message) else None

        # Newest first: once a message is older than since_time, so are all after it.
        stop = None if since_ns is None else (lambda key: time_keys.ns_of_key(key) < since_ns)
        if as_json is None:
            return _page(order, "messages", (int, Newest), cursor, count, view, stop, packed=True)
        to_json = as_json.message

        if not (sender_id or receiver_id or status or message_type):
            every = partial(as_json.messages_of, state)
            return _page(
                order, "messages", (int, Newest), cursor, count, None, stop, packed=True, collect=every
            ).as_encoded()

        def encoded(key: bytes) -> bytes | None:
            message = state.messages[item_of(key)]
            return to_json(state, message) if wanted(message) else None

        return _page(order, "messages", (int, Newest), cursor, count, encoded, stop, packed=True).as_encoded()

    async def get_message(self, account_id: str, message_id: str) -> e.Message:
        state = self._owner(account_id, "message", message_id, "message_id")
        return state.message_view(state.messages[message_id])

    async def mark_message_read(self, account_id: str, message_id: str, now_ns: int) -> e.Message:
        state = self._owner(account_id, "message", message_id, "message_id")
        if state.mark_read(message_key(message_id), now_ns):
            self._log_reads(state, [message_key(message_id)], now_ns)
            self._announce_read(state, [message_key(message_id)])
        return state.message_view(state.messages[message_id])

    # ------------------------------------------------------------ contents

    async def list_contents(
        self,
        account_id: str,
        *,
        content_type: int,
        is_new: bool | None,
        cursor: str,
        count: int,
    ) -> Page[e.Content]:
        state = self._state(account_id)
        wanted = filters.contents(content_type, is_new)

        def view(key: Key) -> e.Content | None:
            content = state.content_view(str(key[1]))
            return content if wanted(content) else None

        return _page(state.content_order, "contents", (int, str), cursor, count, view)

    async def get_content(self, account_id: str, content_id: str) -> e.Content:
        state = self._owner(account_id, "content", content_id, "content_id")
        return state.content_view(content_id)

    async def mark_content_read(self, account_id: str, content_id: str, now_ns: int) -> tuple[int, e.Content]:
        state = self._owner(account_id, "content", content_id, "content_id")
        order = state.comments_by_content.get(content_id, ())
        items = [item for key in order if state.mark_read(item := comment_key(item_of(key)), now_ns)]
        seen = content_id if content_id in state.handling.new_contents else ""
        state.handling.new_contents.discard(content_id)
        self._log_reads(state, items, now_ns, seen)
        self._announce_read(state, items)
        marked = len(items)
        return marked, state.content_view(content_id)

    # --------------------------------------------------------- discussions

    async def list_discussions(
        self,
        account_id: str,
        *,
        content_id: str,
        parent_comment_id: str,
        is_read: bool | None,
        is_new: bool | None,
        cursor: str,
        count: int,
    ) -> Page[e.Comment]:
        state = self._state(account_id)
        if parent_comment_id:
            order = state.replies_by_parent.get(parent_comment_id, SortedList())
        elif content_id:
            order = state.comments_by_content.get(content_id, SortedList())
        else:
            order = state.comment_order

        wanted = filters.discussions(content_id, is_read, is_new)

        def view(key: bytes) -> e.Comment | None:
            comment = state.comment_view(state.comments[item_of(key)])
            return comment if wanted(comment) else None

        return _page(order, "discussions", (int, Newest), cursor, count, view, packed=True)

    async def get_discussion(self, account_id: str, comment_id: str) -> e.Comment:
        state = self._owner(account_id, "comment", comment_id, "comment_id")
        return state.comment_view(state.comments[comment_id])

    async def mark_discussion_read(self, account_id: str, comment_id: str, now_ns: int) -> e.Comment:
        state = self._owner(account_id, "comment", comment_id, "comment_id")
        if state.mark_read(comment_key(comment_id), now_ns):
            self._log_reads(state, [comment_key(comment_id)], now_ns)
            self._announce_read(state, [comment_key(comment_id)])
        return state.comment_view(state.comments[comment_id])

    # ------------------------------------------------------- unified inbox

    async def list_unified(
        self,
        account_id: str,
        *,
        types: Collection[int],
        is_read: bool | None,
        is_new: bool | None,
        cursor: str,
        count: int,
        since_ns: int | None = None,
        as_json: JsonViews | None = None,
    ) -> Page[u.UnifiedMessage]:
        state = self._state(account_id)

        # The inbox is the merge of customers' messages and comments and the notifications,
        # ordered as the cursors' (-ns, Newest("<kind>:<id>")): newest first, and at one
        # instant notifications, then messages, then comments ("n" > "m" > "c"), each kind
        # by id, larger first.
        lists = (state.inbox_notifications, state.inbox_messages, state.inbox_comments)
        orders = tuple(zip(_KINDS, lists, strict=True))
        after = cursors.decode(cursor, "unified", (int, Newest))
        starts = [0, 0, 0]
        if after is not None:
            kind, entity_id = split_item_key(str(after[1]), field="cursor")
            key = time_keys.from_cursor((after[0], entity_id))
            at = key[:12]
            rank = next(index for index, (name, _) in enumerate(orders) if name == kind)
            for index, (_, order) in enumerate(orders):
                if index < rank:  # everything of this kind at that instant came before
                    starts[index] = order.bisect_left(time_keys.after_head(at))
                elif index == rank:
                    starts[index] = order.bisect_right(key)
                else:  # nothing of this kind at that instant came yet
                    starts[index] = order.bisect_left(at)

        # Newest first: once an item is older than since_time, so are all after it.
        stop = None if since_ns is None else (lambda entry: time_keys.ns_of_key(entry[2]) < since_ns)
        if as_json is not None and not types and is_read is None and is_new is None:
            # Every item taken: the page's are among the first of each order after the
            # cursor, which inbox_of merges (no merge step per item of the whole orders).
            most = page_size(count) + 1
            firsts = (
                lists[0][starts[0] : starts[0] + most],
                lists[1][starts[1] : starts[1] + most],
                lists[2][starts[2] : starts[2] + most],
            )
            encoded, end, has_more = as_json.inbox_of(state, _KINDS, firsts, most - 1, stop)
            return Page([], _unified_cursor(end), has_more, encoded)

        # Only the orders of the kinds the types ask for are read.
        read_kinds = filters.unified_kinds(types)

        def ranked(rank: int, order: SortedList) -> Iterable[tuple[bytes, int, bytes]]:
            if orders[rank][0] not in read_kinds:
                return ()
            return ((key[:12], rank, key) for key in order.islice(starts[rank]))

        merged = heapq.merge(*(ranked(rank, order) for rank, (_, order) in enumerate(orders)))
        wanted = filters.unified(types, is_read, is_new)
        may_pass = state.inbox_before_view(types, is_read, is_new)

        def view(entry: tuple[bytes, int, bytes]) -> u.UnifiedMessage | None:
            # A filtered page may pass over most of the inbox: refuse what can be refused
            # before a view is built.
            if may_pass is not None and not may_pass(_KINDS[entry[1]], item_of(entry[2])):
                return None
            item = state.unified_view(_item_id(entry))
            return item if wanted(item) else None

        if as_json is None:
            items, end, has_more = _collect(merged, view, page_size(count), stop)
            return Page(items, _unified_cursor(end), has_more)
        to_json = as_json.inbox_item
        encoded, end, has_more = _collect(
            merged,
            lambda entry: to_json(state, _KINDS[entry[1]], item_of(entry[2])) if view(entry) is not None else None,
            page_size(count),
            stop,
        )
        return Page([], _unified_cursor(end), has_more, encoded)

    async def unified_stats(self, account_id: str) -> UnifiedStats:
        state = self._state(account_id)
        return UnifiedStats(
            state.unread_comments, state.unread_discussions, state.unread_direct_messages, state.unread_notifications
        )

    async def get_unified(self, account_id: str, item_id: str) -> u.UnifiedMessage:
        kind, entity_id = split_item_key(item_id, field="id")
        return self._owner(account_id, kind, entity_id, "id").unified_view(item_id)

    async def mark_unified_read(self, account_id: str, item_ids: Sequence[str], now_ns: int) -> int:
        # Locate every id before marking any, so a bad id changes nothing.
        owners = []
        for position, item_id in enumerate(item_ids):
            field = f"ids[{position}]"
            kind, entity_id = split_item_key(item_id, field=field)
            owners.append(self._owner(account_id, kind, entity_id, field))
        marked = 0
        for state, item_id in zip(owners, item_ids, strict=True):
            if state.mark_read(item_id, now_ns):
                self._log_reads(state, [item_id], now_ns)
                self._announce_read(state, [item_id])
                marked += 1
        return marked
