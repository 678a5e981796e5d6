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

from imsync.v1 import events_pb2 as ev
from imsync.v1 import events_pb2_grpc as ev_grpc
from imsync.v1 import unified_messages_pb2 as um
from imsync.v1 import unified_messages_pb2_grpc as um_grpc
from services.master.in_process import InProcessChannel
from services.master.model.errors import NotFound

from .conftest import Master, push_all


def _channel(master: Master, kind: str) -> Any:
    return master.channel if kind == "grpc" else InProcessChannel(master.process.im_servicers)


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
