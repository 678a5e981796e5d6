"""The Redis store's reads: walking an order and fetching its items, checked against the
account's rev so a page never mixes two versions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from imsync.journal.v1 import journal_pb2 as jpb
from imsync.v1 import entities_pb2 as e
from services.master.model import cursor as cursors
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
from services.master.redis.layout import AccountKeys, key_of, member_of


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
    ) -> Page[T]:
        """A page of an order after the cursor's key: `build` turns members into items (None
        skips one) or returns None when the account moved on since the members were read."""
        limit = page_size(count)
        after = cursors.decode(cursor, index, shape)
        start = "-" if after is None else "(" + member_of(after)
        items: list[T] = []
        last: cursors.SortKey | None = None
        batch = limit + 1
        attempts = 0

        def done(has_more: bool) -> Page[T]:
            return Page(items, cursors.encode(index, last) if last is not None else "", has_more)

        while True:
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
            views = await build(members, rev) if members else []
            if views is None:
                attempts += 1
                if attempts > _ATTEMPTS:
                    raise Unavailable("the account changes too fast to read; try again", retry_after=0.1)
                continue
            for member, view in zip(members, views, strict=True):
                key = key_of(member, shape)
                if stop is not None and stop(key):
                    return done(False)
                if view is None:
                    continue
                if len(items) == limit:
                    return done(True)
                items.append(view)
                last = key
            if len(members) < batch:
                return done(False)
            start = "(" + members[-1]
            batch = min(batch * 2, 1000)

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
        meta, (found, unread, pinned, muted, handled) = fetched
        state = _view_state(keys.account_id, meta)
        state.conversations = _entities(found, ids, e.Conversation.FromString)
        state.unread_by_conversation.update({cid: int(n) for cid, n in zip(ids, unread, strict=True) if n is not None})
        state.handling.pinned = {cid for cid, flag in zip(ids, pinned, strict=True) if flag}
        state.handling.muted = {cid for cid, flag in zip(ids, muted, strict=True) if flag}
        state.handling.threads = _entities(handled, ids, jpb.ThreadHandling.FromString)
        return state

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
