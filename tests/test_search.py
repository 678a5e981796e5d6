"""Search, on both store backends: every page equals what a scan of the crawl finds, newest
first; Chinese matches on any part of two characters or more, by text, customer name and
work title; the index follows deltas, edits, removals and snapshots; the matched part is
marked; bad queries and cursors are refused naming the field."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from imsync.v1 import entities_pb2 as e
from imsync.v1 import search_pb2 as srch
from imsync.v1 import sync_pb2
from services.common.sample import SampleAccount
from services.master.model import search
from services.master.model.errors import InvalidArgument
from services.master.model.store import DeltaData, SnapshotData, Store

from .conftest import NOW, StoreFactory
from .test_store_deltas import copy
from .test_team_api import Team, team

__all__ = ["team"]  # the fixture


@pytest.fixture
def account() -> SampleAccount:
    sample = SampleAccount("shop", seed=31, now=NOW)
    sample.fill(conversations=30, messages_per_conversation=8, contents=4, comments_per_content=12)
    return sample


@pytest.fixture
async def store(account: SampleAccount, new_store: StoreFactory) -> Store:
    store = new_store()
    assert await store.apply_snapshot(SnapshotData("shop", 1, frozenset(), account.account, copy(account.batch)))
    return store


def _expected(batch: sync_pb2.EntityBatch, query: str, kinds: str = "mcw") -> list[bytes]:
    """What a plain scan finds: the keys of the items holding `query`, newest first."""
    wanted = search.check_query(query)
    found = []
    for kind, items in (("m", batch.messages), ("c", batch.comments), ("w", batch.contents)):
        if kind in kinds:
            found += [search.key_of(kind, item) for item in items if search.match(kind, item, wanted)]
    return sorted(found)


async def _all(store: Store, query: str, kinds: str = "mcw", count: int = 7) -> list[search.Hit]:
    wanted = search.check_query(query)
    hits: list[search.Hit] = []
    after = b""
    while True:
        page, after = await store.search("shop", wanted, list(kinds), after, count)
        assert len(page) <= count
        hits += page
        if not after:
            return hits


def _common_pair(batch: sync_pb2.EntityBatch) -> str:
    """A pair of characters many messages share (the sample's phrases repeat)."""
    counts: dict[str, int] = {}
    for message in batch.messages:
        for pair in search.bigrams_of(message.content.casefold()):
            counts[pair] = counts.get(pair, 0) + 1
    return max(sorted(counts), key=lambda pair: counts[pair])


async def test_every_page_is_what_a_scan_finds_newest_first(store: Store, account: SampleAccount) -> None:
    pair = _common_pair(account.batch)
    hits = await _all(store, pair)
    assert [hit.key for hit in hits] == _expected(account.batch, pair)
    assert len(hits) > 20, "the query is common: several pages"
    message = next(hit for hit in hits if hit.kind == "m")
    assert message.matched.casefold() == pair and message.field in ("content", "customer_name")
    assert isinstance(message.view, e.Message) and message.view.account_id == "shop"


async def test_a_longer_part_a_customer_name_and_a_work_title(store: Store, account: SampleAccount) -> None:
    longer = account.batch.messages[5].content[:4]
    assert [h.key for h in await _all(store, longer)] == _expected(account.batch, longer)
    customer = account.batch.conversations[3].participant.user_name
    by_name = await _all(store, customer[-2:], kinds="m")
    assert by_name and [h.key for h in by_name] == _expected(account.batch, customer[-2:], "m")
    assert any(h.field == "customer_name" for h in by_name)
    title = account.batch.contents[1].title
    works = await _all(store, title[:3], kinds="w")
    assert account.batch.contents[1].content_id in {h.view.content_id for h in works}
    assert all(h.field in ("title", "description") for h in works)


async def test_the_index_follows_deltas_edits_removals_and_snapshots(store: Store, account: SampleAccount) -> None:
    assert await _all(store, "独一无二") == []  # the index is built now, then kept
    conversation = account.batch.conversations[0]
    fresh = account.add_message(conversation, NOW + 100, inbound=True)
    fresh.content = "这是独一无二的留言 Hello World"
    delta = DeltaData("shop", 1, 2, None, sync_pb2.EntityBatch(messages=[fresh]), sync_pb2.Removals())
    assert await store.apply_delta(delta)
    found = await _all(store, "一无二")
    assert [h.view.message_id for h in found] == [fresh.message_id]
    assert (found[0].before, found[0].matched) == ("这是独", "一无二")
    assert [h.view.message_id for h in await _all(store, "hello w")] == [fresh.message_id], "any case"

    edited = e.Message()
    edited.CopyFrom(fresh)
    edited.content = "改过的内容"
    delta = DeltaData("shop", 2, 3, None, sync_pb2.EntityBatch(messages=[edited]), sync_pb2.Removals())
    assert await store.apply_delta(delta)
    assert await _all(store, "一无二") == []
    assert [h.view.message_id for h in await _all(store, "改过")] == [edited.message_id]

    removal = DeltaData("shop", 3, 4, None, sync_pb2.EntityBatch(), sync_pb2.Removals(message_ids=[fresh.message_id]))
    assert await store.apply_delta(removal)
    assert await _all(store, "改过") == []

    # A snapshot without an item: it is no longer found; with a new one, it is.
    batch = copy(account.batch)
    batch.messages.remove(next(m for m in batch.messages if m.message_id == fresh.message_id))
    gone = batch.messages.pop(0)
    newer = batch.messages.add()
    newer.CopyFrom(gone)
    newer.message_id = "new-in-snapshot"
    newer.content = "快照里的新词语"
    assert await store.apply_snapshot(SnapshotData("shop", 9, frozenset(), account.account, batch))
    assert [h.view.message_id for h in await _all(store, "新词")] == ["new-in-snapshot"]
    pair = _common_pair(batch)
    assert [h.key for h in await _all(store, pair)] == _expected(batch, pair)


async def test_hits_show_what_the_lists_show(store: Store, account: SampleAccount) -> None:
    inbound = next(m for m in account.batch.messages if m.direction == e.DIRECTION_INBOUND)
    await store.mark_message_read("shop", inbound.message_id, NOW * 10**9)
    wanted = search.check_query(inbound.content[:3])
    hits, _ = await store.search("shop", wanted, ["m"], b"", 100)
    hit = next(h for h in hits if h.view.message_id == inbound.message_id)
    assert hit.view == await store.get_message("shop", inbound.message_id)
    assert hit.view.is_read


@pytest.mark.parametrize("query", ["", " ", "好", "a ", " b", "x" * 101, "a b"])
def test_a_query_too_short_or_too_long_is_refused(query: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        search.check_query(query)
    assert refused.value.field == "query"


async def test_search_through_the_api(team: Team) -> None:
    sample = team.account
    pair = _common_pair(sample.batch)
    seen: list[dict[str, Any]] = []
    cursor = ""
    while True:
        params = {"query": pair, "count": "10", **({"cursor": cursor} if cursor else {})}
        answer = await team.http.get("/api/im/search", params=params, headers=team.as_("reader"))
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        seen += data["hits"]
        if not data.get("has_more"):
            break
        cursor = data["cursor"]
    expected = _expected(sample.batch, pair)
    assert len(seen) == len(expected)
    first = seen[0]
    assert first["account_id"] == "shop" and first["matched"].casefold() == pair
    assert first["kind"] in ("message", "comment", "content")
    only_messages = await team.http.get(
        "/api/im/search", params={"query": pair, "kinds": "SEARCH_KIND_MESSAGE"}, headers=team.as_("reader")
    )
    assert {hit["kind"] for hit in only_messages.json()["data"]["hits"]} == {"message"}
    for params, field in (
        ({"query": "好"}, "query"),
        ({"query": pair, "cursor": "!!"}, "cursor"),
        ({"query": pair, "count": "-1"}, "count"),
    ):
        refused = await team.http.get("/api/im/search", params=params, headers=team.as_("reader"))
        assert refused.status_code == 400, refused.text
        assert refused.json()["details"][0]["field_violations"][0]["field"] == field


def test_every_kind_of_the_api_is_one_the_stores_search() -> None:
    from services.master.api.search import KIND_CODES

    assert set(KIND_CODES) == set(srch.SearchKind.values()) - {srch.SEARCH_KIND_UNSPECIFIED}
    assert sorted(KIND_CODES.values()) == sorted(search.KINDS)


async def test_an_index_built_while_the_account_changes_misses_nothing(new_store: StoreFactory) -> None:
    """A big account's index is built a slice at a time; deltas applied between the slices
    (a new message, an edit, a removal) are all in it once it is ready."""
    sample = SampleAccount("shop", seed=32, now=NOW)
    sample.fill(conversations=240, messages_per_conversation=50, contents=1, comments_per_content=1)
    store = new_store()
    assert await store.apply_snapshot(SnapshotData("shop", 1, frozenset(), sample.account, copy(sample.batch)))
    wanted = search.check_query("独一无二")
    first = asyncio.create_task(store.search("shop", wanted, ["m"], b"", 20))
    await asyncio.sleep(0)  # the build has begun
    conversation = sample.batch.conversations[7]
    fresh = sample.add_message(conversation, NOW + 50, inbound=True)
    fresh.content = "独一无二的新消息"
    edited = e.Message()
    edited.CopyFrom(sample.batch.messages[-3])
    edited.content = "独一无二的改动"
    removed = sample.batch.messages[-9]
    removed.content = "独一无二但删了"
    deltas = [
        sync_pb2.EntityBatch(messages=[fresh, removed]),
        sync_pb2.EntityBatch(messages=[edited]),
    ]
    for version, batch in enumerate(deltas, start=2):
        assert await store.apply_delta(DeltaData("shop", version - 1, version, None, batch, sync_pb2.Removals()))
        await asyncio.sleep(0)
    gone = sync_pb2.Removals(message_ids=[removed.message_id])
    assert await store.apply_delta(DeltaData("shop", 3, 4, None, sync_pb2.EntityBatch(), gone))
    await first
    hits, _ = await store.search("shop", wanted, ["m"], b"", 20)
    assert {hit.view.message_id for hit in hits} == {fresh.message_id, edited.message_id}
