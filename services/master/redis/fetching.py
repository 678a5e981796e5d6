"""The Redis store's reads: walking an order and fetching its items, checked against the
account's rev so a page never mixes two versions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from imsync.journal.v1 import journal_pb2 as jpb
from imsync.v1 import entities_pb2 as e
from services.master.model import cursor as cursors
from services.master.model import filters
from services.master.model import store as model_store
from services.master.model.account_state import AccountState
from services.master.model.errors import InvalidArgument, NotFound, Unavailable
from services.master.model.keys import comment_key, message_key, notification_key
from services.master.model.store import Page, page_size
from services.master.redis.base import (
    _ATTEMPTS,
    _PARSERS,
    RedisBase,
    T,
    _entities,
    _Meta,
    _text,
    _view_state,
    index_account,
)
from services.master.redis.layout import WIDTH, AccountKeys, id_of, key_of, member_of

if TYPE_CHECKING:
    from services.master.model.json_views import JsonViews


class Fetching(RedisBase):
    """The Redis store's reads: walking an order and fetching its items, checked against the"""

    # ------------------------------------------------------------------ reading

    async def _walk(
        self,
        order_key: str,
        index: str,
        shape: Sequence[type],
        cursor: str,
        count: int,
        build: Callable[[list[str], str | None], Awaitable[list[T | None] | None]],
        *,
        meta_key: str | None = None,
        stop: Callable[[cursors.SortKey], bool] | None = None,
        fetch: Callable[[str, int], Awaitable[tuple[list[str], list[T | None]]]] | None = None,
    ) -> Page[T]:
        """A page of an order after the cursor's key: `build` turns members into items (None
        skips one) or returns None when the account moved on since the members were read.
        `fetch` (instead of both): the members from a first one and at most how many, with
        their items, read at one instant (_paged)."""
        limit = page_size(count)
        after = cursors.decode(cursor, index, shape)
        start = "-" if after is None else "(" + member_of(after)
        items: list[T] = []
        last: cursors.SortKey | None = None
        batch = limit + 1
        attempts = 0
        # At most store.SCAN members looked at, as the memory store's pages (_collect).
        looked, bound = 0, model_store.SCAN
        seen: cursors.SortKey = ()

        def done(has_more: bool) -> Page[T]:
            return Page(items, cursors.encode(index, last) if last is not None else "", has_more)

        while True:
            if fetch is not None:
                members, views = await fetch(start, batch)
            else:
                pipe = self.redis.pipeline(transaction=False)
                if meta_key is not None:
                    pipe.hget(meta_key, "rev")
                pipe.zrangebylex(order_key, start, "+", 0, batch)
                results = await pipe.execute()
                rev = None
                if meta_key is not None:
                    if results[0] is None:
                        raise NotFound(f"account {index_account(meta_key)!r} not found")
                    rev = _text(results[0])
                members = [m.decode() for m in results[-1]]
                built = await build(members, rev) if members else []
                if built is None:
                    attempts += 1
                    if attempts > _ATTEMPTS:
                        raise Unavailable("the account changes too fast to read; try again", retry_after=0.1)
                    continue
                views = built
            for member, view in zip(members, views, strict=True):
                key = key_of(member, shape)
                if stop is not None and stop(key):
                    return done(False)
                if looked == bound:
                    return Page(items, cursors.encode(index, seen), True)
                looked += 1
                seen = key
                if view is None:
                    continue
                if len(items) == limit:
                    return done(True)
                items.append(view)
                last = key
            if len(members) < batch:
                return done(False)
            start = "(" + members[-1]
            batch = min(batch * 2, 1000, bound - looked + 1)

    def _conversations_page(
        self, keys: AccountKeys, asked: tuple[int, bool | None, bool | None, str | None, int], as_json: JsonViews | None
    ) -> Callable[[str, int], Awaitable[tuple[list[str], list[Any]]]]:
        """_walk's fetch of a page of conversations: views, or their JSON (`as_json`);
        `asked`: list_conversations' filter (status, is_pinned, is_muted, assignee,
        thread_state)."""
        wanted = filters.conversations(*asked)
        unfiltered = asked == (0, None, None, None, 0)
        lookups = [
            (keys.entities["conversations"], "HMGET", ""),
            (keys.counters["conversation_unread"], "HMGET", ""),
            (keys.sets["pinned"], "SMISMEMBER", ""),
            (keys.sets["muted"], "SMISMEMBER", ""),
            (keys.threads, "HMGET", ""),
        ]

        async def fetch(start: str, batch: int) -> tuple[list[str], list[Any]]:
            order = keys.orders["conversations"]
            meta, members, _, found = await self._paged(
                keys, order, start, batch, ints=2, newest=False, lookups=lookups
            )
            ids = [id_of(m, 2, newest=False) for m in members]
            raw = found[0] if members else []
            state = _conversations_view(keys.account_id, meta, ids, found if members else [[]] * 5)
            may_pass = state.conversations_before_view(*asked)
            items: list[Any] = []
            for cid, encoded in zip(ids, raw, strict=True):
                if encoded is None:  # gone between the order and its hash: not possible in one script
                    raise Unavailable("the account changed while it was read; try again", retry_after=0.1)
                if may_pass is not None and not may_pass(cid):
                    items.append(None)  # refused before its view is built
                    continue
                view = None if unfiltered and as_json is not None else state.conversation_view(cid)
                if view is not None and not wanted(view):
                    items.append(None)
                elif as_json is not None:
                    items.append(as_json.conversation(state, cid, raw=encoded))
                else:
                    items.append(view)
            return members, items

        return fetch

    def _messages_page(
        self,
        keys: AccountKeys,
        order: str,
        owner: tuple[str, str],
        wanted: Callable[[e.Message], bool],
        as_json: JsonViews | None,
    ) -> Callable[[str, int], Awaitable[tuple[list[str], list[Any]]]]:
        """_walk's fetch of a page of messages (of `order`: all, or a conversation's, the
        `owner`): views, or their JSON (`as_json`)."""
        lookups = [
            (keys.entities["messages"], "HMGET", ""),
            (keys.read, "HMGET", message_key("")),
            (keys.sets["new"], "SMISMEMBER", message_key("")),
        ]

        async def fetch(start: str, batch: int) -> tuple[list[str], list[Any]]:
            meta, members, present, found = await self._paged(
                keys, order, start, batch, ints=1, newest=True, lookups=lookups, owner=owner
            )
            if not present:
                raise NotFound(f"conversation {owner[1]!r} not found")
            ids = [id_of(m, 1) for m in members]
            raw, read, new = found if members else ([], [], [])
            items_read = [message_key(m) for m in ids]
            state = _view_state(keys.account_id, meta)
            state.messages = _entities(raw, ids, e.Message.FromString)
            state.handling.read_at = {i: int(v) for i, v in zip(items_read, read, strict=True) if v is not None}
            state.handling.new_items = {i for i, flag in zip(items_read, new, strict=True) if flag}
            items: list[Any] = []
            for message_id, encoded in zip(ids, raw, strict=True):
                message = state.messages.get(message_id)
                if message is None:  # gone between the order and its hash: not possible in one script
                    raise Unavailable("the account changed while it was read; try again", retry_after=0.1)
                if not wanted(message):
                    items.append(None)
                elif as_json is not None:
                    items.append(as_json.message(state, message, raw=encoded))
                else:
                    items.append(state.message_view(message))
            return members, items

        return fetch

    def _unified_page(
        self,
        keys: AccountKeys,
        asked: tuple[Collection[int], bool | None, bool | None],
        as_json: JsonViews | None,
    ) -> Callable[[str, int], Awaitable[tuple[list[str], list[Any]]]]:
        """_walk's fetch of a page of the unified inbox: views, or their JSON (`as_json`);
        `asked`: list_unified's filter (types, is_read, is_new)."""
        wanted = filters.unified(*asked)
        unfiltered = not asked[0] and asked[1] is None and asked[2] is None
        kinds = (("message", "messages"), ("comment", "comments"), ("notification", "notifications"))
        lookups = [(keys.entities[name], "HMGET", f"-{kind}:") for kind, name in kinds]
        lookups += [(keys.read, "HMGET", ""), (keys.sets["new"], "SMISMEMBER", "")]

        async def fetch(start: str, batch: int) -> tuple[list[str], list[Any]]:
            order = keys.orders["inbox"]
            meta, members, _, found = await self._paged(keys, order, start, batch, ints=1, newest=True, lookups=lookups)
            items = [id_of(m, 1) for m in members]
            if not members:
                return members, []
            *entities, read, new = found
            state = _view_state(keys.account_id, meta)
            raws: list[bytes | None] = [None] * len(items)
            for (kind, name), raw in zip(kinds, entities, strict=True):
                parse = _PARSERS[name]
                table = getattr(state, name)
                for at, (item, encoded) in enumerate(zip(items, raw, strict=True)):
                    if encoded is not None:
                        table[item[len(kind) + 1 :]] = parse(encoded)
                        raws[at] = encoded
            state.handling.read_at = {i: int(v) for i, v in zip(items, read, strict=True) if v is not None}
            state.handling.new_items = {i for i, flag in zip(items, new, strict=True) if flag}
            may_pass = state.inbox_before_view(*asked)
            views: list[Any] = []
            for item, encoded in zip(items, raws, strict=True):
                if encoded is None:  # gone between the order and its hash: not possible in one script
                    raise Unavailable("the account changed while it was read; try again", retry_after=0.1)
                kind, _, entity_id = item.partition(":")
                if may_pass is not None and not may_pass(kind, entity_id):
                    views.append(None)  # refused before its view is built
                    continue
                view = None if unfiltered and as_json is not None else state.unified_view(item)
                if view is not None and not wanted(view):
                    views.append(None)
                elif as_json is not None:
                    views.append(as_json.inbox_item(state, kind, entity_id, raw=encoded))
                else:
                    views.append(view)
            return members, views

        return fetch

    async def _paged(
        self,
        keys: AccountKeys,
        order_key: str,
        start: str,
        batch: int,
        *,
        ints: int,
        newest: bool,
        lookups: Sequence[tuple[str, str, str]],
        owner: tuple[str, str] = ("", ""),
    ) -> tuple[_Meta, list[str], bool, list[Any]]:
        """Members of an order from `start`, at most `batch`, with what `lookups` find for
        their ids (each a key, HMGET or SMISMEMBER, and the prefix of the fields), in one
        round trip (layout.PAGE); and whether the order or its `owner` (a hash and a field)
        exists."""
        names = [key for key, _, _ in lookups]
        args: list[str | int] = [start, batch, ints * WIDTH, "1" if newest else "0", owner[1]]
        for _, command, prefix in lookups:
            args += [command, prefix]
        found = await self._run(self._page, [keys.meta, order_key, owner[0] or keys.meta, *names], args)
        if found is None:
            raise NotFound(f"account {keys.account_id!r} not found")
        raw_meta, members, present, *results = found
        meta = _Meta(dict(zip(raw_meta[::2], raw_meta[1::2], strict=True)))
        return meta, [m.decode() for m in members], bool(present), results

    async def _fetch(
        self, keys: AccountKeys, rev: str | None, calls: Callable[[Any], None]
    ) -> tuple[_Meta, list[Any]] | None:
        """The account's meta and what `calls` asks for, in one round trip; None when the
        account's rev is no longer `rev` (a change came between two steps of a read)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.meta)
        calls(pipe)
        raw_meta, *results = await pipe.execute()
        if not raw_meta:
            raise NotFound(f"account {keys.account_id!r} not found")
        meta = _Meta(raw_meta)
        if rev is not None and meta.rev != rev:
            return None
        return meta, results

    def _account_keys(self, account_id: str) -> AccountKeys:
        if not account_id:
            raise InvalidArgument("required", field="account_id")
        return self.keys(account_id)

    async def _items_state(
        self,
        keys: AccountKeys,
        rev: str | None,
        *,
        messages: Sequence[str] = (),
        comments: Sequence[str] = (),
        notifications: Sequence[str] = (),
    ) -> AccountState | None:
        """A view state holding these messages, comments and notifications with their read
        marks and news."""
        items = (
            [message_key(m) for m in messages]
            + [comment_key(c) for c in comments]
            + [notification_key(n) for n in notifications]
        )
        wanted = (("messages", messages), ("comments", comments), ("notifications", notifications))

        def calls(pipe: Any) -> None:
            for name, ids in wanted:
                # A keyed placeholder (a Cluster pipeline takes keyed commands only).
                pipe.hmget(keys.entities[name], list(ids)) if ids else pipe.exists(keys.meta)
            if items:
                pipe.hmget(keys.read, items)
                pipe.smismember(keys.sets["new"], items)

        fetched = await self._fetch(keys, rev, calls)
        if fetched is None:
            return None
        meta, results = fetched
        state = _view_state(keys.account_id, meta)
        for at, (name, ids) in enumerate(wanted):
            if ids:
                setattr(state, name, _entities(results[at], ids, _PARSERS[name]))
        if items:
            state.handling.read_at = {i: int(v) for i, v in zip(items, results[3], strict=True) if v is not None}
            state.handling.new_items = {i for i, flag in zip(items, results[4], strict=True) if flag}
        return state

    async def _conversations_state(self, keys: AccountKeys, rev: str | None, ids: Sequence[str]) -> AccountState | None:
        def calls(pipe: Any) -> None:
            pipe.hmget(keys.entities["conversations"], list(ids))
            pipe.hmget(keys.counters["conversation_unread"], list(ids))
            pipe.smismember(keys.sets["pinned"], list(ids))
            pipe.smismember(keys.sets["muted"], list(ids))
            pipe.hmget(keys.threads, list(ids))

        fetched = await self._fetch(keys, rev, calls)
        if fetched is None:
            return None
        meta, found = fetched
        return _conversations_view(keys.account_id, meta, ids, found)

    async def _contents_state(self, keys: AccountKeys, rev: str | None, ids: Sequence[str]) -> AccountState | None:
        def calls(pipe: Any) -> None:
            pipe.hmget(keys.entities["contents"], list(ids))
            pipe.hmget(keys.counters["content_unread"], list(ids))
            pipe.hmget(keys.counters["content_new"], list(ids))
            pipe.smismember(keys.sets["newc"], list(ids))

        fetched = await self._fetch(keys, rev, calls)
        if fetched is None:
            return None
        meta, (found, unread, new, newc) = fetched
        state = _view_state(keys.account_id, meta)
        state.contents = _entities(found, ids, e.Content.FromString)
        state.unread_by_content.update({cid: int(n) for cid, n in zip(ids, unread, strict=True) if n is not None})
        state.new_by_content.update({cid: int(n) for cid, n in zip(ids, new, strict=True) if n is not None})
        state.handling.new_contents = {cid for cid, flag in zip(ids, newc, strict=True) if flag}
        return state


def _conversations_view(account_id: str, meta: _Meta, ids: Sequence[str], found: Sequence[Any]) -> AccountState:
    """A view state of these conversations, from what was read of them: their entities,
    unread counts, pins, mutes and handlings, each a list in the order of `ids`."""
    raw, unread, pinned, muted, handled = found
    state = _view_state(account_id, meta)
    state.conversations = _entities(raw, ids, e.Conversation.FromString)
    state.unread_by_conversation.update({cid: int(n) for cid, n in zip(ids, unread, strict=True) if n is not None})
    state.handling.pinned = {cid for cid, flag in zip(ids, pinned, strict=True) if flag}
    state.handling.muted = {cid for cid, flag in zip(ids, muted, strict=True) if flag}
    state.handling.threads = _entities(handled, ids, jpb.ThreadHandling.FromString)
    return state


async def no_build(members: list[str], rev: str | None) -> list[Any] | None:
    """_walk's `build` where a `fetch` builds the items."""
    raise AssertionError("a page fetched by a script builds its items")  # pragma: no cover
