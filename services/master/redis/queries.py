"""The Redis store's IM reads and marks: accounts, conversations, messages, contents,
discussions and the unified inbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from imsync.v1 import entities_pb2 as e
from imsync.v1 import unified_messages_pb2 as u
from services.master.model import filters, search, threads
from services.master.model.account_state import AccountState
from services.master.model.cursor import Newest
from services.master.model.errors import NotFound
from services.master.model.keys import comment_key, message_key, split_item_key
from services.master.model.store import Page, UnifiedStats
from services.master.redis import search as searching
from services.master.redis.base import (
    _UNREAD_TOTALS,
    _constant,
    _Meta,
    _redis_errors,
    _split,
    _strings,
    _view_state,
)
from services.master.redis.fetching import no_build
from services.master.redis.fleet import Fleet
from services.master.redis.layout import AccountKeys, Writes, id_of
from services.master.redis.recording import record_counters

if TYPE_CHECKING:
    from services.master.model.json_views import JsonViews


class Queries(Fleet):
    """The Redis store's IM reads and marks: accounts, conversations, messages, contents,"""

    # ---------------------------------------------------------------- accounts

    @_redis_errors
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

        async def build(members: list[str], rev: str | None) -> list[e.Account | None]:
            pipe = self.redis.pipeline(transaction=False)
            for account_id in members:
                pipe.hgetall(self.keys(account_id).meta)
            views: list[e.Account | None] = []
            for account_id, raw in zip(members, await pipe.execute(), strict=True):
                if not raw or (only is not None and account_id not in only):
                    views.append(None)
                    continue
                view = _view_state(account_id, _Meta(raw)).account_view()
                views.append(view if wanted(view) else None)
            return views

        return await self._walk(self.accounts_key, "accounts", (str,), cursor, count, build)

    @_redis_errors
    async def get_account(self, account_id: str) -> e.Account:
        keys = self._account_keys(account_id)
        fetched = await self._fetch(keys, None, lambda pipe: None)
        assert fetched is not None
        return _view_state(account_id, fetched[0]).account_view()

    # ----------------------------------------------------------- conversations

    @_redis_errors
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
        keys = self._account_keys(account_id)
        fetch = self._conversations_page(keys, (status, is_pinned, is_muted, assignee, thread_state), as_json)
        page: Page[Any] = await self._walk("", "conversations", (int, int, str), cursor, count, no_build, fetch=fetch)
        return page.as_encoded(as_json is not None)

    @_redis_errors
    async def get_conversation(self, account_id: str, conversation_id: str) -> e.Conversation:
        keys = await self._owner(account_id, "conversation", conversation_id, "conversation_id")
        return await self._conversation(keys, conversation_id)

    @_redis_errors
    async def mark_conversation_read(
        self, account_id: str, conversation_id: str, now_ns: int
    ) -> tuple[int, e.Conversation]:
        keys = await self._owner(account_id, "conversation", conversation_id, "conversation_id")
        marked = await self._mark(keys, lambda: self._group_items(keys, "mbc", conversation_id, message_key), now_ns)
        conversation = await self._conversation(keys, conversation_id)
        if conversation.is_marked_unread and await self._handle(keys, conversation_id, threads.read, now_ns):
            conversation = await self._conversation(keys, conversation_id)
        return marked, conversation

    async def _group_items(self, keys: AccountKeys, group: str, group_id: str, item: Callable[[str], str]) -> list[str]:
        return [item(id_of(m, 1)) for m in _strings(await self.redis.zrange(keys.group(group, group_id), 0, -1))]

    async def _mark(
        self, keys: AccountKeys, find: Callable[[], Awaitable[list[str]]], now_ns: int, seen_content_id: str = ""
    ) -> int:
        """Marks inbox items read in one commit; returns how many were unread."""

        async def attempt() -> int | None:
            items = await find()
            split = list(map(_split, items))
            entities = {
                name: [entity for kind, entity in split if kind == item_kind]
                for item_kind, name in (
                    ("message", "messages"),
                    ("comment", "comments"),
                    ("notification", "notifications"),
                )
            }
            writes = Writes()
            loaded = await self._load(keys, writes, entities=entities, items=items)
            if loaded is None:
                raise NotFound(f"account {keys.account_id!r} not found")
            rev, state = loaded
            marked = [item for item in items if state.mark_read(item, now_ns)]
            if seen_content_id:
                state.handling.new_contents.discard(seen_content_id)
            if not marked and not seen_content_id:
                return 0
            self._announce_read(writes, keys, marked)
            record_counters(state, keys, writes)
            return len(marked) if await self._commit_writes(keys, rev, writes) else None

        return await self._change(keys.account_id, attempt)

    async def _flag(
        self, keys: AccountKeys, conversation_id: str, change: Callable[[AccountState], None]
    ) -> e.Conversation:
        def flag(state: AccountState, writes: Writes) -> bool:
            change(state)
            return True

        await self._change_conversation(keys, conversation_id, flag)
        return await self._conversation(keys, conversation_id)

    @_redis_errors
    async def set_pinned(self, account_id: str, conversation_id: str, pinned: bool) -> e.Conversation:
        keys = await self._owner(account_id, "conversation", conversation_id, "conversation_id")
        return await self._flag(keys, conversation_id, lambda state: state.set_pinned(conversation_id, pinned))

    @_redis_errors
    async def set_muted(self, account_id: str, conversation_id: str, muted: bool) -> e.Conversation:
        keys = await self._owner(account_id, "conversation", conversation_id, "conversation_id")

        def change(state: AccountState) -> None:
            if muted:
                state.handling.muted.add(conversation_id)
            else:
                state.handling.muted.discard(conversation_id)

        return await self._flag(keys, conversation_id, change)

    # ---------------------------------------------------------------- messages

    @_redis_errors
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
        keys = self._account_keys(account_id)
        wanted = filters.messages(sender_id, receiver_id, status, message_type)
        order = keys.group("mbc", conversation_id) if conversation_id else keys.orders["messages"]
        owner = (keys.entities["conversations"], conversation_id) if conversation_id else ("", "")
        fetch = self._messages_page(keys, order, owner, wanted, as_json)
        # Newest first: once a message is older than since_time, so are all after it.
        stop = None if since_ns is None else (lambda key: -int(key[0]) < since_ns)
        page: Page[Any] = await self._walk(
            "", "messages", (int, Newest), cursor, count, no_build, stop=stop, fetch=fetch
        )
        return page.as_encoded(as_json is not None)

    @_redis_errors
    async def get_message(self, account_id: str, message_id: str) -> e.Message:
        keys = await self._owner(account_id, "message", message_id, "message_id")
        return await self._message(keys, message_id)

    async def _message(self, keys: AccountKeys, message_id: str) -> e.Message:
        state = await self._items_state(keys, None, messages=[message_id])
        assert state is not None
        if message_id not in state.messages:
            raise NotFound(f"message {message_id!r} not found")
        return state.message_view(state.messages[message_id])

    @_redis_errors
    async def mark_message_read(self, account_id: str, message_id: str, now_ns: int) -> e.Message:
        keys = await self._owner(account_id, "message", message_id, "message_id")
        await self._mark(keys, _constant([message_key(message_id)]), now_ns)
        return await self._message(keys, message_id)

    # ---------------------------------------------------------------- contents

    @_redis_errors
    async def list_contents(
        self,
        account_id: str,
        *,
        content_type: int,
        is_new: bool | None,
        cursor: str,
        count: int,
    ) -> Page[e.Content]:
        keys = self._account_keys(account_id)
        wanted = filters.contents(content_type, is_new)

        async def build(members: list[str], rev: str | None) -> list[e.Content | None] | None:
            ids = [id_of(m, 1, newest=False) for m in members]
            state = await self._contents_state(keys, rev, ids)
            if state is None:
                return None
            views: list[e.Content | None] = []
            for content_id in ids:
                if content_id not in state.contents:
                    return None
                view = state.content_view(content_id)
                views.append(view if wanted(view) else None)
            return views

        return await self._walk(
            keys.orders["contents"], "contents", (int, str), cursor, count, build, meta_key=keys.meta
        )

    async def _content(self, keys: AccountKeys, content_id: str) -> e.Content:
        state = await self._contents_state(keys, None, [content_id])
        assert state is not None
        if content_id not in state.contents:
            raise NotFound(f"content {content_id!r} not found")
        return state.content_view(content_id)

    @_redis_errors
    async def get_content(self, account_id: str, content_id: str) -> e.Content:
        keys = await self._owner(account_id, "content", content_id, "content_id")
        return await self._content(keys, content_id)

    @_redis_errors
    async def mark_content_read(self, account_id: str, content_id: str, now_ns: int) -> tuple[int, e.Content]:
        keys = await self._owner(account_id, "content", content_id, "content_id")
        seen = content_id if await self.redis.sismember(keys.sets["newc"], content_id) else ""
        marked = await self._mark(keys, lambda: self._group_items(keys, "cbc", content_id, comment_key), now_ns, seen)
        return marked, await self._content(keys, content_id)

    # ------------------------------------------------------------- discussions

    @_redis_errors
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
        keys = self._account_keys(account_id)
        wanted = filters.discussions(content_id, is_read, is_new)
        if parent_comment_id:
            order = keys.group("rbp", parent_comment_id)
        elif content_id:
            order = keys.group("cbc", content_id)
        else:
            order = keys.orders["comments"]

        async def build(members: list[str], rev: str | None) -> list[e.Comment | None] | None:
            ids = [id_of(m, 1) for m in members]
            state = await self._items_state(keys, rev, comments=ids)
            if state is None:
                return None
            views: list[e.Comment | None] = []
            for comment_id in ids:
                comment = state.comments.get(comment_id)
                if comment is None:
                    return None
                view = state.comment_view(comment)
                views.append(view if wanted(view) else None)
            return views

        return await self._walk(order, "discussions", (int, Newest), cursor, count, build, meta_key=keys.meta)

    async def _comment(self, keys: AccountKeys, comment_id: str) -> e.Comment:
        state = await self._items_state(keys, None, comments=[comment_id])
        assert state is not None
        if comment_id not in state.comments:
            raise NotFound(f"comment {comment_id!r} not found")
        return state.comment_view(state.comments[comment_id])

    @_redis_errors
    async def get_discussion(self, account_id: str, comment_id: str) -> e.Comment:
        keys = await self._owner(account_id, "comment", comment_id, "comment_id")
        return await self._comment(keys, comment_id)

    @_redis_errors
    async def mark_discussion_read(self, account_id: str, comment_id: str, now_ns: int) -> e.Comment:
        keys = await self._owner(account_id, "comment", comment_id, "comment_id")
        await self._mark(keys, _constant([comment_key(comment_id)]), now_ns)
        return await self._comment(keys, comment_id)

    # ----------------------------------------------------------- unified inbox

    @_redis_errors
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
        keys = self._account_keys(account_id)
        fetch = self._unified_page(keys, (types, is_read, is_new), as_json)
        # Newest first: once an item is older than since_time, so are all after it.
        stop = None if since_ns is None else (lambda key: -int(key[0]) < since_ns)
        page: Page[Any] = await self._walk(
            "", "unified", (int, Newest), cursor, count, no_build, stop=stop, fetch=fetch
        )
        return page.as_encoded(as_json is not None)

    async def _unified_state(self, keys: AccountKeys, rev: str | None, items: Sequence[str]) -> AccountState | None:
        split = [split_item_key(item, field="id") for item in items]
        return await self._items_state(
            keys,
            rev,
            messages=[entity for kind, entity in split if kind == "message"],
            comments=[entity for kind, entity in split if kind == "comment"],
            notifications=[entity for kind, entity in split if kind == "notification"],
        )

    @_redis_errors
    async def unified_stats(self, account_id: str) -> UnifiedStats:
        keys = self._account_keys(account_id)
        fetched = await self._fetch(keys, None, lambda pipe: None)
        assert fetched is not None
        totals = fetched[0].totals
        return UnifiedStats(*(totals[name] for name in _UNREAD_TOTALS))

    @_redis_errors
    async def get_unified(self, account_id: str, item_id: str) -> u.UnifiedMessage:
        kind, entity_id = split_item_key(item_id, field="id")
        keys = await self._owner(account_id, kind, entity_id, "id")
        state = await self._unified_state(keys, None, [item_id])
        assert state is not None
        if entity_id not in state.collection(kind):
            raise NotFound(f"{kind} {entity_id!r} not found")
        return state.unified_view(item_id)

    @_redis_errors
    async def mark_unified_read(self, account_id: str, item_ids: Sequence[str], now_ns: int) -> int:
        # Locate every id before marking any, so a bad id changes nothing.
        owners: dict[str, list[str]] = {}
        for position, item_id in enumerate(item_ids):
            field = f"ids[{position}]"
            kind, entity_id = split_item_key(item_id, field=field)
            keys = await self._owner(account_id, kind, entity_id, field)
            owners.setdefault(keys.account_id, []).append(item_id)
        marked = 0
        for owner, items in owners.items():
            marked += await self._mark(self.keys(owner), _constant(items), now_ns)
        return marked

    # ----------------------------------------------------------------- search

    @_redis_errors
    async def search(
        self, account_id: str, wanted: str, kinds: Collection[str], after: bytes, count: int
    ) -> tuple[list[search.Hit], bytes]:
        keys = self._account_keys(account_id)
        streams = [
            found
            for kind in kinds
            if (found := await searching.candidates_of(self.redis, keys, kind, wanted, after)) is not None
        ]
        hits, last = await searching.page(streams, wanted, count)
        # The views as the lists show them: with read marks, news, and works' counts.
        state = await self._items_state(
            keys,
            None,
            messages=[hit.view.message_id for hit in hits if hit.kind == "m"],
            comments=[hit.view.comment_id for hit in hits if hit.kind == "c"],
        )
        assert state is not None
        for hit in hits:
            if hit.kind == "w":
                hit.view = await self._content(keys, hit.view.content_id)
            elif hit.kind == "m":
                hit.view = state.message_view(state.messages.get(hit.view.message_id, hit.view))
            else:
                hit.view = state.comment_view(state.comments.get(hit.view.comment_id, hit.view))
        return hits, last
