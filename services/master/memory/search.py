"""The memory store's search (model/search.py): each account's index built the first time
it is searched, then kept by AccountState as changes are applied."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from services.master.memory.fleet import Fleet
from services.master.model import search
from services.master.model.time_keys import item_of


class Searching(Fleet):
    async def search(
        self, account_id: str, wanted: str, kinds: Collection[str], after: bytes, count: int
    ) -> tuple[list[search.Hit], bytes]:
        state = self._state(account_id)
        index = await state.search_index()
        while (now := self._state(account_id)) is not state:  # a snapshot came meanwhile
            state = now
            index = await state.search_index()
        tables: dict[str, Any] = {"m": state.messages, "c": state.comments, "w": state.contents}
        views: dict[str, Any] = {"m": state.message_view, "c": state.comment_view, "w": state.content_view}

        def entity_of(kind: str, key: bytes) -> Any:
            return tables[kind].get(item_of(key))

        streams = {kind: index.candidates(kind, wanted, after) for kind in kinds}
        hits, last = search.page(streams, entity_of, wanted, count)
        for hit in hits:
            hit.view = views[hit.kind](hit.view if hit.kind != "w" else hit.view.content_id)
        return hits, last
