"""One error boundary (services/master/rpc/boundary.py) for every servicer, over gRPC and
over the in-process channel of the embedded gateway: a store error becomes its status,
anything else INTERNAL naming an incident the master's log holds, never the exception's
text and never gRPC's default UNKNOWN."""

from __future__ import annotations

import logging
import re
from typing import Any

import grpc
import pytest

from imsync.v1 import conversations_pb2_grpc as conv_grpc
from imsync.v1 import events_pb2 as ev
from imsync.v1 import events_pb2_grpc as ev_grpc
from imsync.v1 import unified_messages_pb2 as um
from imsync.v1 import unified_messages_pb2_grpc as um_grpc
from services.master.in_process import InProcessChannel
from services.master.model.errors import NotFound

from .conftest import Master, push_all


def _channel(master: Master, kind: str) -> Any:
    return master.channel if kind == "grpc" else InProcessChannel(master.process.im_servicers, master.process.keys)


@pytest.mark.parametrize("kind", ["grpc", "in-process"])
async def test_a_bug_answers_internal_with_an_incident_the_log_names(
    master: Master, kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals: /var/lib/imsync")

    monkeypatch.setattr(master.process.store, "unified_stats", broken)
    stub = um_grpc.UnifiedMessageServiceStub(_channel(master, kind))
    with caplog.at_level(logging.ERROR, logger="services.master.api"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetUnifiedStats(um.GetUnifiedStatsRequest(account_id="acc-0"))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    details = raised.value.details() or ""
    assert "secret" not in details
    incident = re.search(r"incident ([0-9a-f]{12})", details)
    assert incident, details
    logged = [r for r in caplog.records if incident.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info and "secret internals" in str(logged[0].exc_info[1])


@pytest.mark.parametrize("kind", ["grpc", "in-process"])
async def test_a_store_error_is_answered_with_its_status_and_field(
    master: Master, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def missing(*_: Any, **__: Any) -> Any:
        raise NotFound("no such account", field="account_id")

    monkeypatch.setattr(master.process.store, "unified_stats", missing)
    stub = um_grpc.UnifiedMessageServiceStub(_channel(master, kind))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetUnifiedStats(um.GetUnifiedStatsRequest(account_id="acc-0"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "account_id: no such account"


@pytest.mark.parametrize("kind", ["grpc", "in-process"])
async def test_a_bug_inside_a_stream_ends_it_internal(
    master: Master, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await push_all(master, [])
    bus = master.process.bus

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the bus broke")

    monkeypatch.setattr(bus, "subscribe", broken)
    stub = ev_grpc.EventServiceStub(_channel(master, kind))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        call = stub.StreamEvents(ev.StreamEventsRequest())
        await call.read()
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "incident" in (raised.value.details() or "")


def test_every_im_service_needs_a_scope() -> None:
    """A service the boundary knew no scope for would run unauthorized: every IM service
    (and the gateways' cache watch) has one."""
    from services.gateway.app import im_services
    from services.master.rpc.access import SCOPES

    assert {service.full_name for service in im_services()} <= set(SCOPES)
    assert SCOPES["imsync.v1.CacheService"] == "gateway"
    assert SCOPES["imsync.v1.ReplyService"] == "reply" and SCOPES["imsync.v1.LoginService"] == "login"


async def test_a_servicer_never_runs_before_its_call_is_authorized(tmp_path: Any) -> None:
    """With keys configured, a call without a key is refused by the boundary before the
    servicer (or the store) is reached, over both channels."""
    from services.master.auth.api_keys import create_api_key
    from services.master.server import Master as MasterProcess
    from services.master.server import MasterConfig

    keys = tmp_path / "keys.toml"
    create_api_key(keys, "reader", ["acc-0"], ["read"])
    process = MasterProcess(MasterConfig(listen="127.0.0.1:0", api_keys=keys))
    port = await process.start()
    reached: list[str] = []

    async def spy(*_: Any, **__: Any) -> Any:
        reached.append("store")
        raise NotFound("nothing")

    process.store.unified_stats = spy  # type: ignore[method-assign]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            over: Any
            for over in (channel, InProcessChannel(process.im_servicers, process.keys)):
                stub = um_grpc.UnifiedMessageServiceStub(over)
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.GetUnifiedStats(um.GetUnifiedStatsRequest(account_id="acc-0"))
                assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert reached == []
    finally:
        await process.stop()


# The embedded gateway's page reads (api/encoded.py) are awaited directly, without the
# servicer's call: the same boundary must hold there.
_LIST_CONVERSATIONS = "/imsync.v1.ConversationService/ListConversations"


def _page_read(process: Any) -> Any:
    from services.common.protojson import JsonStyle

    read = InProcessChannel(process.im_servicers, process.keys).encoded_read(_LIST_CONVERSATIONS, JsonStyle.IM)
    assert read is not None
    return read


async def test_a_bug_under_a_page_read_answers_internal_with_an_incident_the_log_names(
    master: Master, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from imsync.v1 import conversations_pb2 as conv

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals: /var/lib/imsync")

    monkeypatch.setattr(master.process.store, "list_conversations", broken)
    with caplog.at_level(logging.ERROR, logger="services.master.api"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await _page_read(master.process)(conv.ListConversationsRequest(account_id="acc-0"), [])
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    details = raised.value.details() or ""
    incident = re.search(r"incident ([0-9a-f]{12})", details)
    assert incident and "secret" not in details, details
    logged = [r for r in caplog.records if incident.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info and "secret internals" in str(logged[0].exc_info[1])


async def test_a_store_error_under_a_page_read_is_answered_with_its_status_and_field(
    master: Master, accounts: list[Any]
) -> None:
    from imsync.v1 import conversations_pb2 as conv

    await push_all(master, accounts)
    read = _page_read(master.process)
    page = await read(conv.ListConversationsRequest(account_id=accounts[0].account_id, count=2), [])
    assert page.items is not None and len(page.items) == 2 and page.response.has_more
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await read(conv.ListConversationsRequest(account_id="nobody"), [])
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await read(conv.ListConversationsRequest(), [])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("account_id: ")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await read(conv.ListConversationsRequest(account_id=accounts[0].account_id, cursor="not a cursor"), [])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("cursor: ")


async def test_a_page_read_is_authorized_before_the_store_is_reached(tmp_path: Any) -> None:
    """No key, an unknown key, a key without the read scope, a key for another account:
    each refused as the gRPC server refuses it, the store never asked."""
    from imsync.v1 import conversations_pb2 as conv
    from services.master.auth.api_keys import create_api_key
    from services.master.server import Master as MasterProcess
    from services.master.server import MasterConfig

    keys = tmp_path / "keys.toml"
    reader = create_api_key(keys, "reader", ["acc-0"], ["read"])
    replier = create_api_key(keys, "replier", ["acc-0"], ["reply"])
    process = MasterProcess(MasterConfig(listen="127.0.0.1:0", api_keys=keys))
    port = await process.start()
    reached: list[str] = []

    async def spy(account_id: str, **__: Any) -> Any:
        reached.append(account_id)
        raise NotFound("nothing", field="account_id")

    process.store.list_conversations = spy  # type: ignore[method-assign]
    read = _page_read(process)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = conv_grpc.ConversationServiceStub(channel)
            for key, account, code in (
                (None, "acc-0", grpc.StatusCode.UNAUTHENTICATED),
                ("not-a-key", "acc-0", grpc.StatusCode.UNAUTHENTICATED),
                (replier, "acc-0", grpc.StatusCode.PERMISSION_DENIED),
                (reader, "acc-1", grpc.StatusCode.PERMISSION_DENIED),
            ):
                metadata = [] if key is None else [("authorization", f"Bearer {key}")]
                request = conv.ListConversationsRequest(account_id=account)
                with pytest.raises(grpc.aio.AioRpcError) as direct:
                    await read(request, metadata)
                with pytest.raises(grpc.aio.AioRpcError) as called:
                    await stub.ListConversations(request, metadata=metadata)
                assert direct.value.code() == called.value.code() == code
                assert direct.value.details() == called.value.details()
            assert reached == []
            # The key that may: the store is reached, and its error answered.
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await read(conv.ListConversationsRequest(account_id="acc-0"), [("authorization", f"Bearer {reader}")])
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND and reached == ["acc-0"]
    finally:
        await process.stop()
