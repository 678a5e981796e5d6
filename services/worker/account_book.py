"""The worker's newest view of one account, made from its crawls and from what arrives live.

- A live arrival (a message the chat page received) goes in at once.
- A crawl's collection read whole replaces the collection, except what arrived live after
  the crawl began (it could not have seen it) and except an entity missing for the first
  time: a list that changed while it was read can skip an item (a deletion shifts the
  pages), so an entity is taken for deleted only when two whole crawls in a row miss it.
  Without that, a skipped comment would be deleted and come back a crawl later, and the
  team told of it twice.
- A collection not read whole updates what it saw and deletes nothing.
"""

from __future__ import annotations

import math

from imsync.v1 import sync_pb2

from .account_state import COLLECTIONS, EMPTY, AccountView
from .adapter import CrawlResult

Ident = tuple[str, str]  # (collection, platform id)


class AccountBook:
    def __init__(self) -> None:
        self.view: AccountView = EMPTY
        # Entities that arrived live, with when (monotonic seconds).
        self._live: dict[Ident, float] = {}
        # Entities the last whole crawl of their collection did not list.
        self._missing: set[Ident] = set()

    def crawled(self, result: CrawlResult, started: float) -> AccountView:
        """The view after a crawl that began at `started` (monotonic seconds)."""
        old = self.view.entities
        missing: set[Ident] = set()
        entities = {}
        for name, _, _, _ in COLLECTIONS:
            previous = old.get(name, {})
            seen = dict(result.view.entities.get(name, {}))
            if name in result.complete:
                for key, entity in previous.items():
                    if key in seen:
                        continue
                    ident = (name, key)
                    if self._live.get(ident, -math.inf) >= started or ident not in self._missing:
                        seen[key] = entity
                        if self._live.get(ident, -math.inf) < started:
                            missing.add(ident)
            else:
                seen = {**previous, **seen}
            # What arrived live after the crawl began is newer than what the crawl read.
            for (collection, key), at in self._live.items():
                if collection == name and at >= started and key in previous:
                    seen[key] = previous[key]
            entities[name] = seen
        self._missing = missing
        self._live = {ident: at for ident, at in self._live.items() if at >= started}
        self.view = AccountView(result.view.account, entities)
        return self.view

    def arrived(self, batch: sync_pb2.EntityBatch, at: float) -> bool:
        """Takes entities that arrived live; True when the view changed."""
        changed = False
        entities = {name: dict(items) for name, items in self.view.entities.items()}
        for name, key_field, _, _ in COLLECTIONS:
            for entity in getattr(batch, name):
                key = getattr(entity, key_field)
                self._live[(name, key)] = at
                self._missing.discard((name, key))
                if entities.setdefault(name, {}).get(key) != entity:
                    entities[name][key] = entity
                    changed = True
        if changed:
            self.view = AccountView(self.view.account, entities)
        return changed
