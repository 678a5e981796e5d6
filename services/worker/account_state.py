"""What a worker knows of one account: its profile and entities, keyed by platform id.

An `AccountView` is never changed once made (crawls make new ones), so the sync engine can
keep the views it sent without copying them. Its entities must not be changed afterwards
either: whoever keeps changing protos (the sample adapter) hands over copies. `diff` gives the delta between two views;
unchanged entities are not part of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2

# (EntityBatch field, key field, Removals field, Collection)
COLLECTIONS: tuple[tuple[str, str, str, int], ...] = (
    ("contents", "content_id", "content_ids", sync_pb2.COLLECTION_CONTENTS),
    ("comments", "comment_id", "comment_ids", sync_pb2.COLLECTION_COMMENTS),
    ("conversations", "conversation_id", "conversation_ids", sync_pb2.COLLECTION_CONVERSATIONS),
    ("messages", "message_id", "message_ids", sync_pb2.COLLECTION_MESSAGES),
    ("notifications", "notification_id", "notification_ids", sync_pb2.COLLECTION_NOTIFICATIONS),
)
COLLECTION_NAMES = tuple(name for name, _, _, _ in COLLECTIONS)

Entities = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class AccountView:
    account: e.Account
    # Collection name ("messages", ...) -> platform id -> entity.
    entities: Entities

    @classmethod
    def from_batch(cls, account: e.Account, batch: sync_pb2.EntityBatch) -> AccountView:
        return cls(
            account,
            {name: {getattr(x, key): x for x in getattr(batch, name)} for name, key, _, _ in COLLECTIONS},
        )

    def to_batch(self) -> sync_pb2.EntityBatch:
        batch = sync_pb2.EntityBatch()
        for name in COLLECTION_NAMES:
            getattr(batch, name).extend(self.entities.get(name, {}).values())
        return batch

    def count(self) -> int:
        return sum(len(self.entities.get(name, {})) for name in COLLECTION_NAMES)

    def merged_with(self, crawl: AccountView, complete: Iterable[str]) -> AccountView:
        """This view updated by a crawl: collections the crawl saw completely are replaced;
        of the others only what it saw is updated, so a partial crawl deletes nothing."""
        whole = set(complete)
        entities = {}
        for name in COLLECTION_NAMES:
            seen = crawl.entities.get(name, {})
            entities[name] = dict(seen) if name in whole else {**self.entities.get(name, {}), **seen}
        return AccountView(crawl.account, entities)

    def diff(self, newer: AccountView) -> tuple[e.Account | None, sync_pb2.EntityBatch, sync_pb2.Removals]:
        """What turns this view into `newer`: the profile if it changed, upserts, removals."""
        upserts, removals = sync_pb2.EntityBatch(), sync_pb2.Removals()
        for name, _, removal_field, _ in COLLECTIONS:
            old, new = self.entities.get(name, {}), newer.entities.get(name, {})
            changed = [entity for key, entity in new.items() if old.get(key) != entity]
            if changed:
                getattr(upserts, name).extend(changed)
            gone = [key for key in old if key not in new]
            if gone:
                getattr(removals, removal_field).extend(gone)
        account = newer.account if newer.account != self.account else None
        return account, upserts, removals


EMPTY = AccountView(e.Account(), {name: {} for name in COLLECTION_NAMES})
