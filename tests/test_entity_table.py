"""EntityTable: entities kept by their place in the chunk they were parsed into."""

from __future__ import annotations

import pytest

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.master.model.entity_table import EntityTable


def _batch(*ids: str) -> sync_pb2.EntityBatch:
    return sync_pb2.EntityBatch(messages=[e.Message(message_id=i, content=f"text of {i}") for i in ids])


def test_a_table_gives_each_entity_by_its_place_or_as_it_was_set() -> None:
    first, second = _batch("a", "b"), _batch("c")
    table: EntityTable[e.Message] = EntityTable()
    for batch in (first, second):
        place = table.add_part(batch.messages)
        for index, message in enumerate(batch.messages):
            table.where[message.message_id] = place + index
    table["d"] = e.Message(message_id="d", content="one by one")
    assert [table[i].content for i in "abcd"] == ["text of a", "text of b", "text of c", "one by one"]
    assert table.get("c") == second.messages[0] and table.get("zz") is None
    assert "b" in table and len(table) == 4 and list(table) == ["a", "b", "c", "d"]
    assert [m.message_id for m in table.values()] == ["a", "b", "c", "d"]
    assert table.pop("b") == first.messages[1] and table.pop("b", None) is None and "b" not in table
    with pytest.raises(KeyError):
        table.pop("b")


def test_values_later_are_the_entities_when_they_were_asked_for() -> None:
    batch = _batch("a", "b")
    table: EntityTable[e.Message] = EntityTable()
    place = table.add_part(batch.messages)
    table.where.update({"a": place, "b": place + 1})
    later = table.values_later()
    table["a"] = e.Message(message_id="a", content="changed after")
    del table["b"]
    assert [m.content for m in later()] == ["text of a", "text of b"]
