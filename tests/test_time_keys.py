"""The memory store's packed sort keys order exactly as the cursors' (-ns, Newest(id))."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from services.master.model import time_keys
from services.master.model.cursor import Newest
from services.master.model.errors import InvalidArgument

# Valid Timestamps (year 1 to 9999), and ids sharing prefixes often, beyond ASCII too.
seconds = st.integers(-62_135_596_800, 253_402_300_799)
nanos = st.integers(0, 999_999_999)
ids = st.text(alphabet=st.sampled_from("0a9:zé中\U0001f600"), min_size=1, max_size=6)
items = st.tuples(seconds, nanos, ids)


def _packed(item: tuple[int, int, str]) -> bytes:
    return time_keys.time_key(Timestamp(seconds=item[0], nanos=item[1]), item[2])


def _tuple(item: tuple[int, int, str]) -> tuple[int, Newest]:
    return (-(item[0] * 1_000_000_000 + item[1]), Newest(item[2]))


@given(st.lists(items, min_size=2, max_size=30, unique=True))
def test_packed_keys_sort_as_the_cursor_keys(found: list[tuple[int, int, str]]) -> None:
    assert sorted(found, key=_packed) == sorted(found, key=_tuple)


@given(items)
def test_a_key_gives_back_its_time_and_id_and_comes_back_from_its_cursor(item: tuple[int, int, str]) -> None:
    key = _packed(item)
    assert time_keys.ns_of_key(key) == item[0] * 1_000_000_000 + item[1]
    assert time_keys.item_of(key) == item[2]
    assert time_keys.to_cursor(key) == _tuple(item)
    assert time_keys.from_cursor(time_keys.to_cursor(key)) == key


def test_same_instant_larger_id_first_and_longer_id_first() -> None:
    at = Timestamp(seconds=1_790_000_000)
    keys = [time_keys.time_key(at, i) for i in ("a", "ab", "b")]
    assert sorted(keys) == [keys[2], keys[1], keys[0]]


def test_a_cursor_beyond_any_time_is_refused() -> None:
    with pytest.raises(InvalidArgument) as refused:
        time_keys.from_cursor((-(10**40), "x"))
    assert refused.value.field == "cursor"
