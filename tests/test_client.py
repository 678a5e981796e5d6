"""The typed client covers every query RPC, and its calls reach a real master."""

from __future__ import annotations

import inspect
import re

import grpc
import pytest

from imsync.v1 import conversations_pb2 as conv
from imsync_client import ImClient
from services.gateway.app import im_services

from .conftest import Master


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_query_rpc_has_a_typed_wrapper() -> None:
    for service in im_services():
        for method in service.methods:
            wrapper = getattr(ImClient, snake(method.name), None)
            assert wrapper is not None, f"ImClient lacks {snake(method.name)} for {method.full_name}"
            hints = inspect.signature(wrapper)
            assert list(hints.parameters)[:2] == ["self", "request"]
            assert {"timeout", "metadata"} <= set(hints.parameters)
            assert method.input_type.name in str(hints.parameters["request"].annotation)
            assert method.output_type.name in str(hints.return_annotation)


async def test_calls_carry_timeout_and_status(master: Master) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await master.im.list_conversations(conv.ListConversationsRequest(account_id="nobody"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
