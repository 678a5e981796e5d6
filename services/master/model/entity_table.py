"""An account's messages or comments by id, most of them held where they were parsed.

A protobuf entity reached through Python is a wrapper object (about 140 bytes with its
entry in upb's object cache, and one more object for the cyclic collector to walk). A
snapshot's entities are parsed into their chunks' repeated fields already; a table keeps,
for each of those, only its place there (part and index, one int), and makes the wrapper
when the entity is asked for: a page asks for twenty. Entities that arrive one by one (a
delta's) are kept as they came. Stored entities are never changed in place, so either
form gives the same entity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, KeysView, Mapping, MutableMapping, Sequence
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")

# A place is part << _SHIFT | index.
_SHIFT = 32
_INDEX = (1 << _SHIFT) - 1
_MISSING = object()


class EntityTable(MutableMapping[str, T], Generic[T]):
    def __init__(self) -> None:
        # Id -> place (an int) or the entity itself.
        self.where: dict[str, int | T] = {}
        self._parts: list[Sequence[T]] = []

    def add_part(self, entities: Sequence[T]) -> int:
        """Registers a chunk's repeated field; returns the place of its first entity (the
        place of the i-th is that plus i)."""
        self._parts.append(entities)
        return (len(self._parts) - 1) << _SHIFT

    def __getitem__(self, entity_id: str) -> T:
        found = self.where[entity_id]
        if type(found) is int:
            return self._parts[found >> _SHIFT][found & _INDEX]
        return cast(T, found)

    def get(self, entity_id: str, default: T | None = None) -> T | None:  # type: ignore[override]
        found = self.where.get(entity_id)
        if found is None:
            return default
        if type(found) is int:
            return self._parts[found >> _SHIFT][found & _INDEX]
        return cast(T, found)

    def __setitem__(self, entity_id: str, entity: T) -> None:
        self.where[entity_id] = entity

    def __delitem__(self, entity_id: str) -> None:
        del self.where[entity_id]

    def pop(self, entity_id: str, default: object = _MISSING) -> Any:
        if entity_id not in self.where:
            if default is _MISSING:
                raise KeyError(entity_id)
            return default
        found = self[entity_id]
        del self.where[entity_id]
        return found

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self.where

    def __iter__(self) -> Iterator[str]:
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)

    def keys(self) -> KeysView[str]:
        return self.where.keys()

    def values_later(self) -> Callable[[], list[T]]:
        """The entities as they are now, made into a list when the returned function is
        called (on another thread, say): only the places are copied here."""
        where, parts = dict(self.where), list(self._parts)

        def values() -> list[T]:
            return [parts[at >> _SHIFT][at & _INDEX] if type(at) is int else cast(T, at) for at in where.values()]

        return values


def places_of(table: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[Sequence[Any]] | None]:
    """A table as the page loops in C (_pages.c) read it: id -> entity or its place (part
    << 32 | index) and the parts; a table that is not an EntityTable, as it is and None."""
    if isinstance(table, EntityTable):
        return table.where, table._parts
    return table, None
