"""Hostile sync messages: whatever a worker sends, the master answers without breaking,
and its state stays whole (lists walk, counters agree, versions never go back)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.master.auth.worker_tokens import WorkerTokens
from services.master.memory.store import MemoryStore
from services.master.model.commands import CommandBook
from services.master.model.errors import PermissionDenied, Unauthenticated
from services.master.sync.hub import SyncConfig, SyncHub
from services.master.sync.session import SyncSession

from .conftest import write_tokens
from .test_store_deltas import observable

# Mostly well-formed, so that messages reach the store; the rest is hostile.
ACCOUNTS = ["a", "a", "a", "b", ""]
ids = st.sampled_from(["1", "2", "3", "4"] * 3 + ["", "x" * 300, "\u202e", "<script>"])
texts = st.text(max_size=40)
seconds = st.sampled_from([1_790_000_000 + n for n in range(8)] + [0, -62_135_596_801, 253_402_300_800, 2**40])


@st.composite
def stamps(draw: st.DrawFn) -> dict[str, int]:
    return {"seconds": draw(seconds), "nanos": draw(st.sampled_from([0] * 6 + [1, 999_999_999, 1_000_000_000]))}


@st.composite
def batches(draw: st.DrawFn) -> sync_pb2.EntityBatch:
    batch = sync_pb2.EntityBatch()
    for _ in range(draw(st.integers(0, 3))):
        batch.messages.add(
            message_id=draw(ids),
            conversation_id=draw(ids),
            content=draw(texts),
            direction=draw(st.sampled_from([0, 1, 2])),
            create_time=draw(stamps()),
            sender=e.User(user_id=draw(ids)),
        )
    for _ in range(draw(st.integers(0, 3))):
        batch.comments.add(
            comment_id=draw(ids),
            content_id=draw(ids),
            parent_comment_id=draw(ids),
            content=draw(texts),
            created_at=draw(stamps()),
            author=e.User(user_id=draw(ids)),
        )
    for _ in range(draw(st.integers(0, 2))):
        batch.conversations.add(conversation_id=draw(ids), update_time=draw(stamps()))
    for _ in range(draw(st.integers(0, 2))):
        batch.contents.add(content_id=draw(ids), publish_time=draw(stamps()))
    return batch


@st.composite
def requests(draw: st.DrawFn) -> sync_pb2.SyncDataRequest:
    kind = draw(st.sampled_from(["snapshot"] * 3 + ["delta"] * 3 + ["hello", "status", "result", "heartbeat", "bytes"]))
    account = draw(st.sampled_from(ACCOUNTS))
    version = draw(st.sampled_from([1, 2, 3, 4, 5, 6] * 2 + [0, 2**63]))
    if kind == "hello":
        return sync_pb2.SyncDataRequest(
            hello=sync_pb2.Hello(
                worker_id=draw(st.sampled_from(["fuzzer", "someone-else"])),
                accounts=[
                    sync_pb2.AccountVersion(account_id=a, version=version)
                    for a in draw(st.lists(st.sampled_from(ACCOUNTS), max_size=3))
                ],
            )
        )
    if kind == "snapshot":
        return sync_pb2.SyncDataRequest(
            snapshot=sync_pb2.Snapshot(
                account_id=account,
                version=version,
                chunk_index=draw(st.sampled_from([0, 0, 0, 1, 2])),
                last=draw(st.sampled_from([True, True, False])),
                entities=draw(batches()),
                # Unknown enum numbers (0, 7) on purpose.
                collections=cast(Any, draw(st.sampled_from([[], [], [], [2], [4, 3], [0], [7]]))),
                account=e.Account(account_id=draw(st.sampled_from([account, "other"])), user_id=draw(ids)),
            )
        )
    if kind == "delta":
        return sync_pb2.SyncDataRequest(
            delta=sync_pb2.Delta(
                account_id=account,
                base_version=draw(st.sampled_from([0, 1, 2, 3, 4, 5])),
                version=version,
                upserts=draw(batches()),
                removals=sync_pb2.Removals(
                    message_ids=draw(st.lists(ids, max_size=2)), comment_ids=draw(st.lists(ids, max_size=2))
                ),
            )
        )
    if kind == "status":
        return sync_pb2.SyncDataRequest(
            account_status=sync_pb2.AccountStatusReport(account_id=account, last_error=draw(texts))
        )
    if kind == "result":
        return sync_pb2.SyncDataRequest(
            command_result=sync_pb2.CommandResult(
                request_id=draw(ids), account_id=account, outcome=cast(Any, draw(st.integers(0, 3)))
            )
        )
    if kind == "heartbeat":
        return sync_pb2.SyncDataRequest(heartbeat=sync_pb2.Heartbeat())
    try:
        return sync_pb2.SyncDataRequest.FromString(draw(st.binary(max_size=64)))
    except DecodeError:
        return sync_pb2.SyncDataRequest()


async def _whole(store: MemoryStore) -> dict[str, int]:
    """Every list walks, every view builds, and the unread counters agree with the lists."""
    versions = {}
    for account_id in store.account_ids():
        await observable(store, account_id)
        unread, cursor = 0, ""
        while True:
            page = await store.list_unified(account_id, types=(), is_read=False, is_new=None, cursor=cursor, count=100)
            unread += len(page.items)
            if not page.has_more:
                break
            cursor = page.cursor
        assert (await store.unified_stats(account_id)).total_unread == unread
        versions[account_id] = (await store.get_account(account_id)).version
    return versions


async def _session(tmp_path: Path) -> tuple[MemoryStore, SyncSession]:
    store = MemoryStore()
    tokens = WorkerTokens(write_tokens(tmp_path / "tokens.toml", ("fuzzer",)))
    hub = SyncHub(store, tokens, CommandBook(), SyncConfig())
    session = SyncSession(hub, "fuzzer", "fuzz")
    hub.sessions[session.id] = session
    # Start as a real stream does most of the time: with a hello.
    await session.handle(
        sync_pb2.SyncDataRequest(
            hello=sync_pb2.Hello(worker_id="fuzzer", accounts=[sync_pb2.AccountVersion(account_id="a")])
        )
    )
    return store, session


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(messages=st.lists(requests(), min_size=1, max_size=25))
def test_no_message_breaks_the_master(tmp_path: Path, messages: list[sync_pb2.SyncDataRequest]) -> None:
    asyncio.run(_no_message_breaks_the_master(tmp_path, messages))


async def _no_message_breaks_the_master(tmp_path: Path, messages: list[sync_pb2.SyncDataRequest]) -> None:
    store, session = await _session(tmp_path)
    before: dict[str, int] = {}
    for message in messages:
        try:
            await session.handle(message, message.SerializeToString())  # as a stream hands it over
        except (Unauthenticated, PermissionDenied):
            break  # the stream ends, as designed (a hello naming another worker)
        after = await _whole(store)
        for account_id, version in before.items():
            assert after.get(account_id, version) >= version, "a version went back"
        before = after
    while not session.outbound.empty():
        answer = session.outbound.get_nowait()
        assert isinstance(answer, sync_pb2.SyncDataResponse), answer  # an Ack, a Nack, a Welcome: no failure


def test_the_fuzzer_reaches_the_store(tmp_path: Path) -> None:
    """Not only refusals: the drawn messages do get applied, so the test above exercises
    the store and not just the validation in front of it."""

    async def applies(messages: list[sync_pb2.SyncDataRequest]) -> bool:
        store, session = await _session(tmp_path)
        for message in messages:
            try:
                await session.handle(message, message.SerializeToString())  # as a stream hands it over
            except (Unauthenticated, PermissionDenied):
                break
        return any(version > 0 for version in (await store.account_versions(["a", "b"])).values())

    settings_ = settings(max_examples=500, database=None, suppress_health_check=list(HealthCheck))
    assert find(
        st.lists(requests(), min_size=1, max_size=25), lambda drawn: asyncio.run(applies(drawn)), settings=settings_
    )
