"""What workers sent of each entity, encoded as JSON once and kept (json_views.py joins
pages of it): by the entity object, which the entry holds (stored entities are never
changed in place, so what is kept for the object stored now is that object's), or, for a
store that parses its entities anew at each read (Redis), by the bytes they came in."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, cast

import orjson
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from services.common.protojson import JsonStyle, field_json_name, to_json
from services.master.model.intake import COLLECTIONS

# What a kept encoding costs besides its bytes: the entity object it holds alive (a upb
# wrapper, about 140 bytes), the dictionary's entry and the tuple.
_ENTRY_OVERHEAD = 300


class Encodings:
    """What workers sent of each entity, encoded in one style and kept, at most `max_bytes`
    of it; the least recently read goes first."""

    def __init__(self, style: JsonStyle, max_bytes: int) -> None:
        self.style = style
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        # id(entity) -> (entity, its JSON without the closing brace). The entity is held,
        # so its id is not reused while the entry lives.
        self._kept: OrderedDict[Any, tuple[Message | None, bytes]] = OrderedDict()
        self._owned = {name: set(fields) | {"account_id"} for name, (_, fields) in COLLECTIONS.items()}

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def entries(self) -> OrderedDict[Any, tuple[Message | None, bytes]]:
        """What is kept, by id(entity): (entity, its head); for _pages.c's loops, which find
        and touch entries as find() does."""
        return self._kept

    def head(self, entity: Message, account_id: str, collection: str, raw: bytes | None = None) -> bytes:
        """The entity's JSON up to its master-owned fields: an object left open. `raw`:
        the bytes the entity was parsed from, by which it is kept instead (a store that
        parses its entities anew at each read: Redis)."""
        found = self.find(entity, raw, account_id)
        if found is not None:
            return found
        return self.keep(entity, self._head(entity, account_id, collection), raw, account_id)

    def find(self, entity: Message, raw: bytes | None = None, account_id: str = "") -> bytes | None:
        """What is kept for the entity (or for its bytes, `raw`, with its account's id),
        None if nothing is."""
        key: Any = id(entity) if raw is None else (account_id, raw)
        found = self._kept.get(key)
        if found is None or (raw is None and found[0] is not entity):
            return None
        self.hits += 1
        self._kept.move_to_end(key)
        return found[1]

    def keep(self, entity: Message, made: bytes, raw: bytes | None = None, account_id: str = "") -> bytes:
        """Keeps `made` for the entity (or its bytes), in place of what was kept for an
        earlier object at its address; returns it."""
        self.misses += 1
        key: Any = id(entity) if raw is None else (account_id, raw)
        if key in self._kept:
            self._forget(key)
        if self.max_bytes > 0:
            # Kept by its bytes, the entry holds them instead of the entity.
            self._kept[key] = (entity if raw is None else None, made)
            self.bytes += len(made) + _ENTRY_OVERHEAD + (0 if raw is None else len(raw))
            while self.bytes > self.max_bytes and self._kept:
                self._forget(next(iter(self._kept)))
        return made

    def _head(self, entity: Message, account_id: str, collection: str) -> bytes:
        copy = type(entity)()
        copy.CopyFrom(entity)
        copy.account_id = account_id  # type: ignore[attr-defined]
        data = to_json(copy, self.style)
        owned = self._owned[collection]
        for field in cast(Descriptor, copy.DESCRIPTOR).fields:
            if field.name in owned and field.name != "account_id":
                data.pop(field_json_name(field, self.style), None)
        return orjson.dumps(data)[:-1]

    def _forget(self, key: Any) -> None:
        _, head = self._kept.pop(key)
        self.bytes -= len(head) + _ENTRY_OVERHEAD + (0 if isinstance(key, int) else len(key[1]))
