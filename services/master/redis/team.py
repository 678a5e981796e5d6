"""The Redis store's share of the team's handling of threads (model/threads.py): one
record per thread in the account's `h:threads` hash (by thread key), changed in one commit."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from imsync.journal.v1 import journal_pb2 as jpb
from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from services.master.model import threads
from services.master.model.account_state import AccountState
from services.master.model.errors import InvalidArgument, NotFound
from services.master.redis.base import _KINDS, _entities, _redis_errors, _strings
from services.master.redis.changes import Changes
from services.master.redis.layout import AccountKeys, Writes


class Team(Changes):
    """Where an entity is, and the team's handling of threads."""

    @_redis_errors
    async def accounts_holding(self, kind: str, entity_id: str) -> list[str]:
        ids = _strings(await self.redis.zrange(self.accounts_key, 0, -1))
        pipe = self.redis.pipeline(transaction=False)
        for account_id in ids:
            pipe.hexists(self.keys(account_id).entities[_KINDS[kind]], entity_id)
        return [account_id for account_id, held in zip(ids, await pipe.execute(), strict=True) if held]

    async def _owner(self, account_id: str, kind: str, entity_id: str, field: str) -> AccountKeys:
        """The account holding an entity: the one named, or else the only one that has it."""
        if account_id:
            keys = self.keys(account_id)
            pipe = self.redis.pipeline(transaction=False)
            pipe.exists(keys.meta)
            pipe.hexists(keys.entities[_KINDS[kind]], entity_id)
            exists, held = await pipe.execute()
            if not exists:
                raise NotFound(f"account {account_id!r} not found")
            owners = [account_id] if held else []
        else:
            owners = await self.accounts_holding(kind, entity_id)
        if not entity_id:
            raise InvalidArgument("required", field=field)
        if not owners:
            raise NotFound(f"{kind} {entity_id!r} not found")
        if len(owners) > 1:
            raise InvalidArgument(f"{kind} {entity_id!r} is in several accounts; name one", field="account_id")
        return self.keys(owners[0])

    async def _conversation(self, keys: AccountKeys, conversation_id: str) -> e.Conversation:
        state = await self._conversations_state(keys, None, [conversation_id])
        assert state is not None
        if conversation_id not in state.conversations:
            raise NotFound(f"conversation {conversation_id!r} not found")
        return state.conversation_view(conversation_id)

    @_redis_errors
    async def handle_conversation(
        self, account_id: str, conversation_id: str, change: threads.Change, now_ns: int
    ) -> e.Conversation:
        keys = await self._owner(account_id, "conversation", conversation_id, "conversation_id")
        await self._handle(keys, conversation_id, change, now_ns)
        return await self._conversation(keys, conversation_id)

    @_redis_errors
    async def handle_comment_thread(
        self, account_id: str, comment_id: str, change: threads.Change, now_ns: int
    ) -> tuple[str, str]:
        keys = await self._owner(account_id, "comment", comment_id, "comment_id")
        raw: Any = await self.redis.hget(keys.entities["comments"], comment_id)
        if raw is None:
            raise NotFound(f"comment {comment_id!r} not found")
        root = e.Comment.FromString(raw).parent_comment_id or comment_id
        await self._handle(keys, threads.comment_thread(root), change, now_ns, ("comments", comment_id))
        return keys.account_id, root

    @_redis_errors
    async def thread_handlings(self, account_id: str, thread_keys: Iterable[str]) -> dict[str, jpb.ThreadHandling]:
        wanted = list(thread_keys)
        if not wanted:
            return {}
        raw: list[Any] = await self.redis.hmget(self.keys(account_id).threads, wanted)
        return _entities(raw, wanted, _handling)

    async def _handle(
        self,
        keys: AccountKeys,
        thread_key: str,
        change: threads.Change,
        now_ns: int,
        held: tuple[str, str] | None = None,
    ) -> bool:
        """Applies a change in one commit over the handling it was computed from: a claim
        racing another on any master computes again over the winner's, and is refused.
        `held`: the entity (collection, id) that must still be there; the conversation
        by default."""

        def handle(state: AccountState, writes: Writes) -> bool:
            after, changed = threads.apply(state.handling.threads.get(thread_key), change, now_ns)
            if changed:
                state.handling.threads[thread_key] = after
                self._announce(writes, keys, threads.event_of(keys.account_id, thread_key, after))
            return changed

        return await self._change_thread(keys, thread_key, handle, held or ("conversations", thread_key))

    async def _change_conversation(
        self, keys: AccountKeys, conversation_id: str, change: Callable[[AccountState, Writes], bool]
    ) -> bool:
        return await self._change_thread(keys, conversation_id, change, ("conversations", conversation_id))

    async def _change_thread(
        self,
        keys: AccountKeys,
        thread_key: str,
        change: Callable[[AccountState, Writes], bool],
        held: tuple[str, str],
    ) -> bool:
        """Runs `change` over the thread as loaded (with its handling, and a conversation's
        pin) and commits what it recorded, again until no other change came between; False
        when `change` said there was nothing to do. NotFound once `held` is gone."""
        collection, entity_id = held

        async def attempt() -> bool | None:
            writes = Writes()
            loaded = await self._load(keys, writes, entities={collection: [entity_id]}, pinned=[thread_key])
            if loaded is None:
                raise NotFound(f"account {keys.account_id!r} not found")
            rev, state = loaded
            if entity_id not in getattr(state, collection):
                raise NotFound(f"{collection[:-1]} {entity_id!r} not found")
            if not change(state, writes):
                return False
            return True if await self._commit_writes(keys, rev, writes) else None

        return await self._change(keys.account_id, attempt)

    @_redis_errors
    async def conversation_notes(self, account_id: str, conversation_id: str) -> list[e.Note]:
        keys = await self._owner(account_id, "conversation", conversation_id, "conversation_id")
        raw: Any = await self.redis.hget(keys.threads, conversation_id)
        found = _entities([raw], [conversation_id], _handling)
        return list(found[conversation_id].notes) if found else []

    @_redis_errors
    async def announce(self, event: ev.Event) -> None:
        await self.publish(event)

    @_redis_errors
    async def snoozed(self) -> list[tuple[int, str, str]]:
        found: list[tuple[int, str, str]] = []
        for account_id in _strings(await self.redis.zrange(self.accounts_key, 0, -1)):
            raw: dict[Any, Any] = await self.redis.hgetall(self.keys(account_id).threads)
            handlings = {k.decode(): _handling(v) for k, v in raw.items()}
            found += threads.snoozes(account_id, handlings)
        return found


_handling = jpb.ThreadHandling.FromString
