"""SyncData over a real gRPC loopback connection to an in-process master."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import code_pb2

from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2, sync_pb2_grpc
from imsync_client import SyncClient, SyncRefused, split_batch
from services.common import rpc_errors
from services.common.rpc_errors import reason_of
from services.common.sample import SampleAccount

from .conftest import NOW, Master, WireReads, push_all, token_for


def field_of(refused: SyncRefused) -> str:
    return rpc_errors.field_of(refused.status)


async def test_snapshot_is_applied_and_acknowledged(master: Master, accounts: list[SampleAccount]) -> None:
    await push_all(master, accounts)
    reply = await master.im.list_conversations(
        conv.ListConversationsRequest(account_id=accounts[0].account_id, count=100)
    )
    assert {c.conversation_id for c in reply.conversations} == {
        c.conversation_id for c in accounts[0].batch.conversations
    }


async def test_welcome_reports_the_versions_the_master_really_has(
    master: Master, accounts: list[SampleAccount]
) -> None:
    first = await push_all(master, accounts, version=3)
    await first.close()
    # The same worker reconnecting takes its accounts back at once.
    again = master.sync("test-worker")
    versions = await again.open({accounts[0].account_id: 99, "never-seen": 4})
    assert versions == {accounts[0].account_id: 3, "never-seen": 0}


async def test_a_second_worker_is_told_who_owns_the_account(master: Master, accounts: list[SampleAccount]) -> None:
    owner = await push_all(master, accounts)
    intruder = master.sync("worker-2")
    versions = await intruder.open({accounts[0].account_id: 0, "free-account": 0})
    assert versions == {"free-account": 0}
    refusal = intruder.refused[accounts[0].account_id]
    assert refusal.owner_worker_id == "test-worker"
    assert refusal.status.code == code_pb2.FAILED_PRECONDITION
    assert "test-worker" in refusal.status.message
    assert reason_of(refusal.status) == "ACCOUNT_OWNED"
    # Its data for the account is refused: nothing of it is stored.
    with pytest.raises(SyncRefused) as refused:
        await intruder.push_snapshot(accounts[0].account_id, 9, accounts[0].account, sync_pb2.EntityBatch())
    assert reason_of(refused.value.status) == "NOT_OWNER"
    assert (await master.store.get_account(accounts[0].account_id)).version == 1
    await owner.close()


async def test_empty_key_is_refused_and_the_stream_stays_open(master: Master, accounts: list[SampleAccount]) -> None:
    account = accounts[0]
    sync = master.sync()
    await sync.open({account.account_id: 0})
    bad = sync_pb2.EntityBatch()
    bad.CopyFrom(account.batch)
    bad.messages[3].message_id = ""
    with pytest.raises(SyncRefused) as refused:
        await sync.push_snapshot(account.account_id, 1, account.account, bad)
    assert refused.value.status.code == code_pb2.INVALID_ARGUMENT
    assert field_of(refused.value) == "snapshot.entities.messages[3].message_id"
    assert "message_id" in refused.value.status.message
    # Nothing of it was stored (the account shows, owned and empty, at version 0) ...
    listed = await master.im.list_conversations(conv.ListConversationsRequest(account_id=account.account_id))
    assert not listed.conversations
    assert (await master.store.get_account(account.account_id)).version == 0
    # ... and the same stream takes the next, valid snapshot.
    assert await sync.push_snapshot(account.account_id, 1, account.account, account.batch) == 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda b: setattr(b.conversations[0], "conversation_id", ""),
            "snapshot.entities.conversations[0].conversation_id",
        ),
        (lambda b: setattr(b.messages[0], "conversation_id", ""), "snapshot.entities.messages[0].conversation_id"),
        (lambda b: setattr(b.comments[0], "account_id", "someone-else"), "snapshot.entities.comments[0].account_id"),
        (lambda b: setattr(b.messages[1].create_time, "seconds", 10**12), "snapshot.entities.messages[1].create_time"),
        (lambda b: setattr(b.contents[0], "content_id", ""), "snapshot.entities.contents[0].content_id"),
    ],
)
async def test_bad_entities_are_refused_naming_the_field(
    master: Master, accounts: list[SampleAccount], mutate: object, field: str
) -> None:
    account = accounts[0]
    sync = master.sync()
    await sync.open({account.account_id: 0})
    bad = sync_pb2.EntityBatch()
    bad.CopyFrom(account.batch)
    mutate(bad)  # type: ignore[operator]
    with pytest.raises(SyncRefused) as refused:
        await sync.push_snapshot(account.account_id, 1, account.account, bad)
    assert field_of(refused.value) == field


async def test_master_owned_fields_sent_by_a_worker_are_ignored(master: Master, accounts: list[SampleAccount]) -> None:
    account = accounts[0]
    for message in account.batch.messages:
        message.is_read = True
    account.batch.conversations[0].is_pinned = True
    await push_all(master, [account])
    stats = await master.store.unified_stats(account.account_id)
    assert stats.unread_direct_messages > 0
    assert not (
        await master.store.get_conversation(account.account_id, account.batch.conversations[0].conversation_id)
    ).is_pinned


async def test_snapshots_over_the_wire_are_read_off_their_bytes(
    master: Master, accounts: list[SampleAccount], wire_reads: WireReads
) -> None:
    """SyncData hands each request's bytes on: the compiled reader takes the messages."""
    if not wire_reads.compiled:
        pytest.skip("the compiled reader is off (IMSYNC_WIRE_READER=python)")
    await push_all(master, accounts)
    assert wire_reads.all_compiled()
    for account in accounts:
        stats = await master.store.unified_stats(account.account_id)
        assert stats.unread_direct_messages == sum(
            1 for m in account.batch.messages if m.direction == e.DIRECTION_INBOUND
        )


async def test_an_account_of_100000_messages_syncs_under_the_default_message_limit(master: Master) -> None:
    account = SampleAccount("big", seed=3, now=NOW)
    account.fill(conversations=2000, messages_per_conversation=50, contents=0, comments_per_content=0)
    assert len(account.batch.messages) == 100_000
    assert account.batch.ByteSize() > 5 * 4 * 1024 * 1024, "far over gRPC's default 4 MiB per message"
    # A client channel with gRPC's defaults: each chunk must fit in 4 MiB.
    async with grpc.aio.insecure_channel(master.address) as channel:
        sync = SyncClient(channel, "test-worker", token=token_for("test-worker"))
        await sync.open({"big": 0})
        assert await sync.push_snapshot("big", 1, account.account, account.batch) == 1
    stats = await master.store.unified_stats("big")
    inbound = sum(1 for m in account.batch.messages if m.direction == e.DIRECTION_INBOUND)
    assert stats.unread_direct_messages == inbound


def test_split_batch_keeps_every_entity_once_within_the_bound() -> None:
    account = SampleAccount("a", seed=1, now=NOW)
    account.fill(conversations=30, messages_per_conversation=10, contents=5, comments_per_content=10)
    chunks = list(split_batch(account.batch, 4096))
    assert len(chunks) > 1
    assert all(chunk.ByteSize() <= 4096 for chunk in chunks)
    joined = sync_pb2.EntityBatch()
    for chunk in chunks:
        joined.MergeFrom(chunk)
    assert joined == account.batch


def chunk_requests(account: SampleAccount, version: int, max_bytes: int) -> list[sync_pb2.SyncDataRequest]:
    chunks = list(split_batch(account.batch, max_bytes))
    return [
        sync_pb2.SyncDataRequest(
            snapshot=sync_pb2.Snapshot(
                account_id=account.account_id, version=version, chunk_index=i, last=i == len(chunks) - 1, entities=c
            )
        )
        for i, c in enumerate(chunks)
    ]


async def test_chunk_out_of_order_is_refused_and_nothing_applies(master: Master, accounts: list[SampleAccount]) -> None:
    account = accounts[0]
    sync = await push_all(master, [account])
    before = await master.store.unified_stats(account.account_id)
    account.grow(NOW + 100)
    requests = chunk_requests(account, 2, 2048)
    assert len(requests) >= 3
    requests[1], requests[2] = requests[2], requests[1]
    with pytest.raises(SyncRefused) as refused:
        await sync.send(requests)
    assert field_of(refused.value) == "snapshot.chunk_index"
    assert (await master.store.get_account(account.account_id)).version == 1
    assert await master.store.unified_stats(account.account_id) == before
    # One Nack for the refused snapshot; the stream goes on with the next.
    assert await sync.send(chunk_requests(account, 2, 2048)) == 2


async def test_a_stream_broken_mid_snapshot_leaves_the_previous_state(
    master: Master, accounts: list[SampleAccount]
) -> None:
    account = accounts[0]
    await push_all(master, [account])
    before = await master.store.unified_stats(account.account_id)
    account.grow(NOW + 100)
    requests = chunk_requests(account, 2, 2048)
    stub: Any = sync_pb2_grpc.SyncServiceStub(master.channel)
    # The same worker, restarted, takes its account over and dies mid-snapshot.
    call = stub.SyncData(metadata=(("authorization", f"Bearer {token_for('test-worker')}"),))
    hello = sync_pb2.Hello(worker_id="test-worker", accounts=[sync_pb2.AccountVersion(account_id=account.account_id)])
    await call.write(sync_pb2.SyncDataRequest(hello=hello))
    welcome = (await call.read()).welcome
    assert [granted.account_id for granted in welcome.accounts] == [account.account_id]
    for request in requests[:-1]:
        await call.write(request)
    call.cancel()  # the worker dies with its snapshot half sent
    # A fresh stream sees the old version, unchanged.
    fresh = master.sync("test-worker")
    assert await fresh.open({account.account_id: 0}) == {account.account_id: 1}
    assert await master.store.unified_stats(account.account_id) == before


async def test_snapshot_before_hello_and_for_unannounced_accounts(
    master: Master, accounts: list[SampleAccount]
) -> None:
    account = accounts[0]
    sync = master.sync()
    await sync.open({"another-account": 0})
    with pytest.raises(SyncRefused) as refused:
        await sync.push_snapshot(account.account_id, 1, account.account, account.batch)
    assert field_of(refused.value) == "snapshot.account_id"
    assert refused.value.status.code == code_pb2.FAILED_PRECONDITION


async def test_versions_delivered_again_are_acknowledged_without_effect_and_older_ones_refused(
    master: Master, accounts: list[SampleAccount]
) -> None:
    account = accounts[0]
    sync = await push_all(master, [account], version=4)
    before = await master.store.unified_stats(account.account_id)
    assert await sync.push_snapshot(account.account_id, 4, account.account, account.batch) == 4
    emptied = sync_pb2.EntityBatch()
    with pytest.raises(SyncRefused) as refused:
        await sync.push_snapshot(account.account_id, 3, account.account, emptied)
    assert reason_of(refused.value.status) == "STALE_VERSION"
    assert (await master.store.get_account(account.account_id)).version == 4
    assert await master.store.unified_stats(account.account_id) == before
