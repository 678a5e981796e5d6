"""The worker's sync engine against a real master over loopback gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import code_pb2

from imsync.v1 import entities_pb2 as e
from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import sync_pb2, sync_pb2_grpc
from imsync_client import SyncRefused
from services.common.rpc_errors import field_of, reason_of
from services.common.sample import SampleAccount
from services.master.model.commands import CommandState
from services.master.model.errors import AlreadyExists, NotFound
from services.master.sync.hub import SyncConfig
from services.worker.engine_config import EngineConfig
from services.worker.sync_engine import SyncEngine

from .conftest import NOW, token_for
from .sync_harness import MasterHandle, crawl_of, engine_for, master_copy, running, view_copy
from .waiting import eventually

FAST = SyncConfig(heartbeat_interval=0.3, lease_duration=1.0)


@pytest_asyncio.fixture
async def master(tmp_path: Path) -> AsyncIterator[MasterHandle]:
    handle = MasterHandle(tmp_path, FAST)
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


def sample(account_id: str = "acc", seed: int = 1, **size: int) -> SampleAccount:
    account = SampleAccount(account_id, seed=seed, now=NOW)
    account.fill(
        **({"conversations": 10, "messages_per_conversation": 5, "contents": 4, "comments_per_content": 5} | size)
    )
    return account


view_of = crawl_of


async def test_first_crawl_goes_as_a_snapshot_then_changes_as_deltas(master: MasterHandle) -> None:
    account = sample()
    async with running(engine_for(master, ["acc"])) as engine:
        engine.publish("acc", view_of(account))
        await engine.wait_synced()
        assert await master_copy(master.store, "acc") == view_copy(view_of(account), "acc")
        snapshot_bytes = engine.bytes_sent["snapshot"]
        account.grow(NOW + 10)
        del account.batch.messages[0]
        engine.publish("acc", view_of(account))
        await engine.wait_synced()
        assert engine.bytes_sent["snapshot"] == snapshot_bytes, "a change is sent as a delta"
        assert engine.bytes_sent["delta"] > 0
        assert await master_copy(master.store, "acc") == view_copy(view_of(account), "acc")


async def test_a_one_percent_change_costs_at_most_two_percent_of_a_snapshot(master: MasterHandle) -> None:
    account = sample(conversations=200, messages_per_conversation=45, contents=20, comments_per_content=45)
    total = sum(len(getattr(account.batch, name)) for name in ("messages", "comments", "conversations", "contents"))
    assert total >= 10_000
    async with running(engine_for(master, ["acc"])) as engine:
        engine.publish("acc", view_of(account))
        await engine.wait_synced()
        snapshot_bytes = engine.bytes_sent["snapshot"]
        # 1% of the entities change: new likes on comments, edited messages.
        changes = total // 100
        for index in range(changes):
            if index % 2:
                account.batch.comments[index].like_count += 1
            else:
                account.batch.messages[index].status = e.MESSAGE_STATUS_READ
        engine.publish("acc", view_of(account))
        await engine.wait_synced()
        delta_bytes = engine.bytes_sent["delta"]
        assert delta_bytes <= 0.02 * snapshot_bytes, (delta_bytes, snapshot_bytes)
        assert await master_copy(master.store, "acc") == view_copy(view_of(account), "acc")


async def test_crawls_past_the_window_are_coalesced(master: MasterHandle) -> None:
    account = sample()
    async with running(engine_for(master, ["acc"], window=1)) as engine:
        engine.publish("acc", view_of(account))
        await engine.wait_synced()
        sync = engine.accounts["acc"]
        first_version = sync.last_version
        most_in_flight = 0
        for step in range(30):
            account.grow(NOW + step)
            engine.publish("acc", view_of(account))
            most_in_flight = max(most_in_flight, len(sync.inflight))
            await asyncio.sleep(0)
        await engine.wait_synced()
        assert most_in_flight <= 1
        assert sync.last_version - first_version < 30, "thirty crawls, fewer versions"
        assert await master_copy(master.store, "acc") == view_copy(view_of(account), "acc")


async def test_a_base_the_master_does_not_have_falls_back_to_a_snapshot(master: MasterHandle) -> None:
    account = sample()
    async with running(engine_for(master, ["acc"])) as engine:
        engine.publish("acc", view_of(account))
        await engine.wait_synced()
        # Behind the worker's back the master moves on (an operator restored another copy).
        other = sample(seed=2)
        from services.master.model.store import SnapshotData

        await master.store.apply_snapshot(SnapshotData("acc", 40, frozenset(), other.account, other.batch))
        snapshots = engine.bytes_sent["snapshot"]
        account.grow(NOW + 99)
        engine.publish("acc", view_of(account))
        await engine.wait_synced()
        assert engine.bytes_sent["snapshot"] > snapshots
        assert (await master.store.get_account("acc")).version > 40
        assert await master_copy(master.store, "acc") == view_copy(view_of(account), "acc")


async def test_the_worker_resumes_by_itself_after_a_master_restart(master: MasterHandle) -> None:
    account = sample()
    async with running(engine_for(master, ["acc"])) as engine:
        engine.publish("acc", view_of(account))
        await engine.wait_synced()
        sessions, snapshots = engine.sessions, engine.bytes_sent["snapshot"]
        await master.restart()  # the store survives, as a durable one does
        account.grow(NOW + 50)
        engine.publish("acc", view_of(account))
        await engine.wait_synced(timeout=20)
        assert engine.sessions > sessions
        assert engine.bytes_sent["snapshot"] == snapshots, "resumed with a delta, no full resync"
        assert await master_copy(master.store, "acc") == view_copy(view_of(account), "acc")
        await master.restart(lose_state=True)  # a master that lost everything gets a snapshot
        await asyncio.sleep(0.5)
        await engine.wait_synced(timeout=20)
        assert engine.bytes_sent["snapshot"] > snapshots
        assert await master_copy(master.store, "acc") == view_copy(view_of(account), "acc")


async def test_account_status_shows_in_the_accounts_api(master: MasterHandle) -> None:
    async with running(engine_for(master, ["acc"])) as engine:
        report = sync_pb2.AccountStatusReport(
            account_id="acc", login_state=e.LOGIN_STATE_LOGGED_OUT, last_error="the login page replaced the works page"
        )
        engine.report_status(report)

        async def reported() -> bool:
            return (await master.store.get_account("acc")).last_error == report.last_error

        await eventually(reported, timeout=10, ignoring=(NotFound,))
        view = await master.store.get_account("acc")
        assert view.login_state == e.LOGIN_STATE_LOGGED_OUT
        assert (view.worker_id, view.online) == ("test-worker", True)

    async def offline() -> bool:
        return not (await master.store.get_account("acc")).online

    await eventually(offline, timeout=10)


async def test_commands_reach_the_owner_once_and_results_come_back(master: MasterHandle) -> None:
    performed: list[str] = []

    async def perform(command: sync_pb2.Command) -> sync_pb2.CommandResult:
        performed.append(command.request_id)
        return sync_pb2.CommandResult(outcome=sync_pb2.COMMAND_OUTCOME_SENT, created_id="c-1")

    assert master.process is not None
    book = master.process.book
    command = sync_pb2.Command(
        request_id="r-1", account_id="acc", reply_to_comment=sync_pb2.ReplyToComment(comment_id="7", text="谢谢！")
    )
    # Submitted while the worker is away: it waits.
    record = await book.submit(command)
    assert record.state is CommandState.PENDING
    async with running(engine_for(master, ["acc"], on_command=perform)):
        async with asyncio.timeout(10):
            while record.state is CommandState.PENDING:
                await asyncio.sleep(0.05)
    assert record.state is CommandState.SENT and record.result is not None
    assert record.result.created_id == "c-1"
    assert performed == ["r-1"]
    # The same request id again is the same command; with other content it is refused.
    assert await book.submit(command) is record
    other = sync_pb2.Command()
    other.CopyFrom(command)
    other.reply_to_comment.text = "另一条"
    with pytest.raises(AlreadyExists):
        await book.submit(other)


async def test_a_command_delivered_again_is_answered_without_performing_it_twice(master: MasterHandle) -> None:
    performed: list[str] = []
    release = asyncio.Event()

    async def perform(command: sync_pb2.Command) -> sync_pb2.CommandResult:
        performed.append(command.request_id)
        await release.wait()
        return sync_pb2.CommandResult(outcome=sync_pb2.COMMAND_OUTCOME_SENT)

    assert master.process is not None
    record = await master.process.book.submit(
        sync_pb2.Command(
            request_id="r-2", account_id="acc", send_message=sync_pb2.SendMessage(conversation_id="x", text="hi")
        )
    )
    async with running(engine_for(master, ["acc"], on_command=perform)) as engine:
        async with asyncio.timeout(10):
            while not performed:
                await asyncio.sleep(0.02)
        await master.restart()  # the stream breaks mid-command; the new master's book is empty
        await master.process.book.submit(record.command)  # ... and gets the command again
        await asyncio.sleep(0.5)
        release.set()
        async with asyncio.timeout(10):
            while (
                current := await master.process.book.get("acc", "r-2")
            ) is None or current.state is CommandState.PENDING:
                await asyncio.sleep(0.05)
        assert performed == ["r-2"]
        assert engine.sessions >= 2


async def _answered(master: MasterHandle, request_id: str) -> sync_pb2.CommandResult:
    assert master.process is not None
    async with asyncio.timeout(10):
        while (
            current := await master.process.book.get("acc", request_id)
        ) is None or current.state is CommandState.PENDING:
            await asyncio.sleep(0.05)
    assert current.result is not None
    return current.result


async def test_a_restarted_worker_answers_from_its_command_log_without_performing_again(
    master: MasterHandle, tmp_path: Path
) -> None:
    log_file = tmp_path / "worker" / "commands.sqlite3"
    performed: list[str] = []

    async def perform(command: sync_pb2.Command) -> sync_pb2.CommandResult:
        performed.append(command.request_id)
        return sync_pb2.CommandResult(outcome=sync_pb2.COMMAND_OUTCOME_SENT, created_id=f"sent-{len(performed)}")

    assert master.process is not None
    command = sync_pb2.Command(
        request_id="r-5", account_id="acc", send_message=sync_pb2.SendMessage(conversation_id="x", text="hi")
    )
    await master.process.book.submit(command)
    async with running(engine_for(master, ["acc"], on_command=perform, command_log=log_file)):
        assert (await _answered(master, "r-5")).created_id == "sent-1"
    # A new worker process over the same file; a master that lost the result (its data
    # directory gone) delivers the command again.
    await master.restart(lose_state=True)
    assert master.process is not None
    await master.process.book.submit(command)
    async with running(engine_for(master, ["acc"], on_command=perform, command_log=log_file)):
        again = await _answered(master, "r-5")
    assert (again.outcome, again.created_id) == (sync_pb2.COMMAND_OUTCOME_SENT, "sent-1")
    assert performed == ["r-5"]


async def test_a_reply_the_worker_stopped_while_performing_is_not_performed_again(
    master: MasterHandle, tmp_path: Path
) -> None:
    log_file = tmp_path / "commands.sqlite3"
    started = asyncio.Event()
    performed: list[str] = []

    async def hangs(command: sync_pb2.Command) -> sync_pb2.CommandResult:
        performed.append(command.request_id)
        started.set()
        await asyncio.Event().wait()  # the click may have happened; the worker never learns
        raise AssertionError("unreachable")

    assert master.process is not None
    command = sync_pb2.Command(
        request_id="r-6", account_id="acc", send_message=sync_pb2.SendMessage(conversation_id="x", text="hi")
    )
    await master.process.book.submit(command)
    first = engine_for(master, ["acc"], on_command=hangs, command_log=log_file)
    async with running(first):
        await asyncio.wait_for(started.wait(), 10)
    for task in first.commands.running.values():
        task.cancel()  # as the process dying does
    async with running(engine_for(master, ["acc"], on_command=hangs, command_log=log_file)):
        result = await _answered(master, "r-6")
    assert result.outcome == sync_pb2.COMMAND_OUTCOME_FAILED
    assert result.reason == e.FAILURE_REASON_OUTCOME_UNKNOWN and "restarted" in result.message
    assert performed == ["r-6"]


async def test_commands_for_an_absent_worker_expire_visibly(master: MasterHandle) -> None:
    assert master.process is not None
    book = master.process.book
    book.ttl = 0.2
    record = await book.submit(
        sync_pb2.Command(
            request_id="r-3",
            account_id="nobody-runs-this",
            send_message=sync_pb2.SendMessage(conversation_id="c", text="t"),
        )
    )
    async with asyncio.timeout(5):
        while record.state is CommandState.PENDING:
            await asyncio.sleep(0.05)
    assert record.state is CommandState.FAILED and record.result is not None
    assert record.result.reason == e.FAILURE_REASON_EXPIRED


def raw_stream(master: MasterHandle, token: str | None) -> Any:
    channel = grpc.aio.insecure_channel(master.address)
    stub: Any = sync_pb2_grpc.SyncServiceStub(channel)
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    return channel, stub.SyncData(metadata=metadata)


def hello(worker_id: str, *accounts: str) -> sync_pb2.SyncDataRequest:
    return sync_pb2.SyncDataRequest(
        hello=sync_pb2.Hello(worker_id=worker_id, accounts=[sync_pb2.AccountVersion(account_id=a) for a in accounts])
    )


async def refused(call: Any, request: sync_pb2.SyncDataRequest) -> grpc.aio.AioRpcError:
    """The error a stream the master refuses ends with. The refusal may come before the
    request is written (the write then finds the call over: InvalidStateError, as under
    load) or after it."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        with contextlib.suppress(asyncio.InvalidStateError):
            await call.write(request)
        await call.read()
    return raised.value


@pytest.mark.parametrize(
    ("token", "code"), [(None, grpc.StatusCode.UNAUTHENTICATED), ("forged", grpc.StatusCode.UNAUTHENTICATED)]
)
async def test_workers_without_a_valid_token_are_refused(
    master: MasterHandle, token: str | None, code: grpc.StatusCode
) -> None:
    channel, call = raw_stream(master, token)
    async with channel:
        assert (await refused(call, hello("test-worker", "acc"))).code() == code
    assert await master.store.account_versions(["acc"]) == {"acc": 0}


async def test_a_token_speaks_for_one_worker_only(master: MasterHandle) -> None:
    channel, call = raw_stream(master, token_for("worker-a"))
    async with channel:
        error = await refused(call, hello("worker-b", "acc"))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "worker-a" in (error.details() or "")


async def test_tokens_are_rotated_without_a_restart(master: MasterHandle) -> None:
    from services.master.auth.worker_tokens import add_worker_token

    new_token = add_worker_token(master.tokens, "test-worker", ["*"])
    old_channel, old_call = raw_stream(master, token_for("test-worker"))
    async with old_channel:
        assert (await refused(old_call, hello("test-worker", "acc"))).code() == grpc.StatusCode.UNAUTHENTICATED
    channel, call = raw_stream(master, new_token)
    async with channel:
        await call.write(hello("test-worker", "acc"))
        assert (await call.read()).WhichOneof("kind") == "welcome"


async def test_a_worker_syncs_only_the_accounts_assigned_to_it(master: MasterHandle) -> None:
    from services.master.auth.worker_tokens import add_worker_token

    account = sample()
    token = add_worker_token(master.tokens, "worker-a", ["other-account"])  # not "acc"
    channel, call = raw_stream(master, token)
    async with channel:
        await call.write(hello("worker-a", "acc", "other-account"))
        welcome = (await call.read()).welcome
        assert [a.account_id for a in welcome.accounts] == ["other-account"]
        refusal = welcome.refused[0]
        assert refusal.account_id == "acc" and refusal.status.code == code_pb2.PERMISSION_DENIED
        assert reason_of(refusal.status) == "ACCOUNT_NOT_ASSIGNED"
        await call.write(
            sync_pb2.SyncDataRequest(
                snapshot=sync_pb2.Snapshot(
                    account_id="acc", version=1, last=True, account=account.account, entities=account.batch
                )
            )
        )
        nack = (await call.read()).nack
        assert reason_of(nack.status) == "ACCOUNT_NOT_ASSIGNED"
    assert await master.store.account_versions(["acc"]) == {"acc": 0}, "nothing stored"


async def test_a_token_revoked_mid_stream_ends_the_stream_and_stores_nothing_more(master: MasterHandle) -> None:
    from services.master.auth.worker_tokens import add_worker_token

    account = sample()
    token = add_worker_token(master.tokens, "worker-a", ["*"])
    channel, call = raw_stream(master, token)
    async with channel:
        await call.write(hello("worker-a", "acc"))
        assert (await call.read()).WhichOneof("kind") == "welcome"
        add_worker_token(master.tokens, "worker-a", ["*"])  # rotated: the old token is revoked
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.write(
                sync_pb2.SyncDataRequest(
                    snapshot=sync_pb2.Snapshot(
                        account_id="acc", version=1, last=True, account=account.account, entities=account.batch
                    )
                )
            )
            await call.read()
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (ended.value.details() or "")
    assert await master.store.account_versions(["acc"]) == {"acc": 0}


async def test_a_silent_owner_loses_its_lease_and_is_fenced(master: MasterHandle) -> None:
    account = sample()
    silent_channel, silent = raw_stream(master, token_for("worker-a"))
    async with silent_channel:
        await silent.write(hello("worker-a", "acc"))
        assert (await silent.read()).welcome.accounts[0].lease_epoch == 1
        # worker-b is refused while worker-a's lease runs ...
        async with running(engine_for(master, ["acc"], worker_id="worker-b")) as engine:
            engine.publish("acc", view_of(account))
            async with asyncio.timeout(5):
                while "acc" not in engine.refused:
                    await asyncio.sleep(0.02)
            assert engine.refused["acc"].owner_worker_id == "worker-a"
            # ... and takes over once worker-a has been silent for a lease.
            await engine.wait_synced(timeout=10)
        assert (await master.store.get_account("acc")).version >= 1
        # worker-a's late snapshot is refused: it is fenced.
        late = sync_pb2.Snapshot(account_id="acc", version=99, last=True)
        await silent.write(sync_pb2.SyncDataRequest(snapshot=late))
        reply = await silent.read()
        while reply.WhichOneof("kind") == "heartbeat":
            reply = await silent.read()
        assert reason_of(reply.nack.status) == "NOT_OWNER"
        assert (await master.store.get_account("acc")).version < 99


async def test_bad_messages_leave_the_stream_and_other_accounts_unharmed(master: MasterHandle) -> None:
    from imsync_client import SyncClient

    channel = grpc.aio.insecure_channel(master.address)
    async with channel:
        client = SyncClient(channel, "test-worker", token=token_for("test-worker"))
        good, other = sample("good", seed=3), sample("other", seed=4)
        await client.open({"good": 0, "other": 0})
        assert await client.push_snapshot("good", 1, good.account, good.batch) == 1
        before = await master_copy(master.store, "good")

        async def refused(request: sync_pb2.SyncDataRequest) -> tuple[int, str, str]:
            with pytest.raises(SyncRefused) as caught:
                await client.send([request])
            return caught.value.status.code, field_of(caught.value.status), reason_of(caught.value.status)

        # A delta for an account this stream does not hold.
        stranger = sync_pb2.Delta(account_id="stranger", base_version=0, version=1)
        assert await refused(sync_pb2.SyncDataRequest(delta=stranger)) == (
            code_pb2.FAILED_PRECONDITION,
            "delta.account_id",
            "NOT_OWNER",
        )
        # An entity with an empty key.
        bad = sync_pb2.Delta(account_id="good", base_version=1, version=2)
        bad.upserts.messages.add(conversation_id="c")
        assert await refused(sync_pb2.SyncDataRequest(delta=bad)) == (
            code_pb2.INVALID_ARGUMENT,
            "delta.upserts.messages[0].message_id",
            "",
        )
        # A delta against a base the master does not have.
        stale = sync_pb2.Delta(account_id="good", base_version=7, version=8)
        assert (await refused(sync_pb2.SyncDataRequest(delta=stale)))[2] == "BASE_VERSION_MISMATCH"
        # A message over the protocol's size limit.
        huge = sync_pb2.Delta(account_id="good", base_version=1, version=2)
        huge.upserts.messages.add(message_id="m", conversation_id="c", content="字" * (2 * 1024 * 1024))
        code, field, _ = await refused(sync_pb2.SyncDataRequest(delta=huge))
        assert (code, field) == (code_pb2.RESOURCE_EXHAUSTED, "delta")
        # The stream still works, for this account and the other; nothing refused was stored.
        assert await master_copy(master.store, "good") == before
        assert await client.push_snapshot("other", 1, other.account, other.batch) == 1
        assert await master_copy(master.store, "other") == view_copy(view_of(other), "other")
        await client.close()


class _ScriptedMaster(sync_pb2_grpc.SyncServiceServicer):
    """A SyncData server saying, on each stream, what `script` gives for its number
    (messages and pauses), then nothing more while the stream lasts."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.streams = 0
        self.received: list[sync_pb2.SyncDataRequest] = []

    async def SyncData(self, request_iterator: Any, context: Any) -> AsyncIterator[sync_pb2.SyncDataResponse]:
        self.streams += 1

        async def read() -> None:
            async for request in request_iterator:
                self.received.append(request)

        reading = asyncio.create_task(read())
        try:
            for item in self.script(self.streams):
                if isinstance(item, float):
                    await asyncio.sleep(item)
                else:
                    yield item
            await reading
        finally:
            reading.cancel()


async def _scripted(script: Any) -> tuple[grpc.aio.Server, _ScriptedMaster, str]:
    server = grpc.aio.server()
    fake = _ScriptedMaster(script)
    sync_pb2_grpc.add_SyncServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, fake, f"127.0.0.1:{port}"


def _beat() -> sync_pb2.SyncDataResponse:
    return sync_pb2.SyncDataResponse(heartbeat=sync_pb2.Heartbeat())


def _welcome() -> sync_pb2.SyncDataResponse:
    return sync_pb2.SyncDataResponse(
        welcome=sync_pb2.Welcome(accounts=[sync_pb2.AccountVersion(account_id="acc", version=0)])
    )


async def _streams_until_welcomed(script: Any) -> int:
    """How many streams a worker opened to a master saying `script` until one was welcomed
    (within 5 s); the worker has learned a heartbeat interval of 0.2 s from an earlier
    Welcome, so silence ends a stream at 0.6 s."""
    server, fake, address = await _scripted(script)
    try:
        config = EngineConfig(master=address, worker_id="w", token="t", backoff_initial=0.05, backoff_max=0.1)
        engine = SyncEngine(config, ["acc"])
        engine.heartbeat_interval = 0.2
        async with running(engine):
            async with asyncio.timeout(5):
                while engine.sessions < 1:
                    await asyncio.sleep(0.02)
        return fake.streams
    finally:
        await server.stop(None)


async def test_a_stream_silent_before_its_welcome_is_left_for_another_within_the_liveness_timeout() -> None:
    """A stream that reached nothing (a master stopping as it was opened) says nothing; the
    worker connects again after the stream's liveness timeout, not after 30 s."""
    assert await _streams_until_welcomed(lambda n: [_welcome()] if n >= 2 else []) == 2


async def test_heartbeats_before_the_welcome_are_waited_through() -> None:
    """A master busy with a Hello (over Redis, many accounts) sends heartbeats until its
    Welcome: the stream is kept, beyond the liveness timeout in all, and not begun again."""
    assert await _streams_until_welcomed(lambda n: [0.15, _beat()] * 6 + [_welcome()]) == 1


async def test_a_stream_that_never_starts_is_given_up_within_the_connect_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A call the channel never starts sends nothing and hears nothing. gRPC leaves one so
    when the master stops just as the connection to it is made (welcome.py); here, a
    listener that accepts and never speaks HTTP/2, with the channel's connect timeout
    (the engine's backoff_initial) longer than the test. The worker gives the stream up
    after its connect timeout, not after the liveness timeout before a Welcome (15 s)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    config = EngineConfig(master=f"127.0.0.1:{port}", worker_id="w", token="t", backoff_initial=30, connect_timeout=0.5)
    try:
        async with running(SyncEngine(config, ["acc"])):
            await eventually(lambda: "the stream's headers did not go out in 0.5 s" in caplog.text, timeout=5)
        assert held, "the worker reached the listener"
    finally:
        for writer in held:
            writer.close()
        listener.close()
        await listener.wait_closed()


async def test_a_scheduled_worker_names_the_grant_it_lets_go() -> None:
    """Each Released carries the lease epoch of the grant it answers, so that a late answer
    about a lapsed grant cannot free the one given since (fleet.released): an account the
    Welcome grants that the worker no longer runs, and an account assigned, then asked back."""

    def script(n: int) -> list[Any]:
        granted = sync_pb2.AccountVersion(account_id="gone", version=3, lease_epoch=5)
        assigned = sync_pb2.Assign(
            account=fl.ManagedAccount(account_id="s-1", adapter="sample"),
            version=sync_pb2.AccountVersion(account_id="s-1", version=0, lease_epoch=7),
        )
        return [
            sync_pb2.SyncDataResponse(welcome=sync_pb2.Welcome(accounts=[granted])),
            sync_pb2.SyncDataResponse(assign=assigned),
            0.2,
            sync_pb2.SyncDataResponse(release=sync_pb2.Release(account_id="s-1", reason="paused")),
        ]

    server, fake, address = await _scripted(script)
    try:
        config = EngineConfig(master=address, worker_id="w", token="t", capacity=2)
        engine = SyncEngine(config, [])
        async with running(engine):

            def released() -> list[tuple[str, int]]:
                said = [r.released for r in fake.received if r.HasField("released")]
                return [(r.account_id, r.lease_epoch) for r in said]

            assert await eventually(lambda: len(released()) == 2, timeout=5)
            assert released() == [("gone", 5), ("s-1", 7)]
            assert fake.streams == 1
    finally:
        await server.stop(None)


async def test_a_master_without_session_keys_is_said_once_a_stream_not_an_error_per_upload(
    master: MasterHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """A master run without --session-keys refuses every session uploaded (NO_SESSION_KEYS):
    a choice its operator made and its log says, not a failure. The worker says it once, as
    a warning, and sends no more sessions on that stream: not an ERROR in its log and a
    warning in the master's at every upload (three of each at every move of three accounts)."""
    caplog.set_level(logging.INFO, logger="services")
    accounts = {account_id: sample(account_id) for account_id in ("s-1", "s-2", "s-3")}
    async with running(engine_for(master, list(accounts))) as engine:
        for account_id, account in accounts.items():
            engine.publish(account_id, view_of(account))
        await engine.wait_synced()
        engine.upload_session("s-1", b'{"cookies": []}')
        await eventually(lambda: "the master keeps no sessions" in caplog.text, timeout=10)
        for account_id in ("s-2", "s-3"):  # sessions saved later: not sent to this master
            engine.upload_session(account_id, b'{"cookies": []}')
        # Answered in order on the stream: once a later change is acknowledged, every
        # upload before it has been refused.
        accounts["s-1"].grow(NOW + 10)
        engine.publish("s-1", view_of(accounts["s-1"]))
        await engine.wait_synced()
    worker = [r for r in caplog.records if r.name.startswith("services.worker")]
    said = [r for r in worker if "keeps no sessions" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING], said
    assert not [r for r in worker if r.levelno >= logging.ERROR]
    # Nothing sent after the refusal: the master refused (and logged) one upload.
    refused = [
        r for r in caplog.records if r.name.startswith("services.master") and "keeps no sessions" in r.getMessage()
    ]
    assert len(refused) == 1, refused
