"""Clients others generate: openapi-python-client builds a Python package from /openapi.json,
which then lists conversations, meets a 404 and sends a reply through the gateway; and the
operation ids it names its functions after stay put when routes are added."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest_asyncio
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from imsync.testing.v1 import compat_pb2
from services.gateway.app import create_app, im_services
from services.gateway.marshalers import ProfileRegistry
from services.gateway.openapi import openapi_document
from services.gateway.routes import routes_of

from .conftest import Master, push_all


async def document_of(app: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        document: dict[str, Any] = (await http.get("/openapi.json")).json()
        return document


@pytest_asyncio.fixture
async def generated(tmp_path: Path) -> AsyncIterator[Any]:
    """The package openapi-python-client generates from the gateway's document, imported."""
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(await document_of(create_app(channel=grpc.aio.insecure_channel("127.0.0.1:1")))))
    config = tmp_path / "config.yml"
    config.write_text("post_hooks: []\npackage_name_override: imsync_rest\n")
    command = [
        str(Path(sys.executable).with_name("openapi-python-client")),
        "generate",
        "--path",
        str(spec),
        "--config",
        str(config),
        "--meta",
        "none",
        "--output-path",
        str(tmp_path / "imsync_rest"),
    ]
    done = await asyncio.to_thread(lambda: subprocess.run(command, capture_output=True, text=True, timeout=120))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("imsync_rest")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == "imsync_rest" or n.startswith("imsync_rest.")]:
            del sys.modules[name]


async def test_a_generated_client_lists_meets_a_404_and_replies(generated: Any, master: Master, accounts: Any) -> None:
    await push_all(master, accounts)
    app = create_app(channel=master.channel)
    client = generated.Client(base_url="http://gw", httpx_args={"transport": httpx.ASGITransport(app=app)})
    api = importlib.import_module("imsync_rest.api.conversation_service.conversation_service_list_conversations")
    account = accounts[0]

    listed = await api.asyncio(client=client, account_id=account.account_id, count=100)
    assert listed.status_code == 0
    assert {c.conversation_id for c in listed.data.conversations} == {
        c.conversation_id for c in account.batch.conversations
    }

    get = importlib.import_module("imsync_rest.api.conversation_service.conversation_service_get_conversation")
    missing = await get.asyncio_detailed("no-such-conversation", client=client, account_id=account.account_id)
    assert missing.status_code == 404
    assert missing.parsed.status_code == 5 and "not found" in missing.parsed.status_msg

    send = importlib.import_module("imsync_rest.api.reply_service.reply_service_send_reply")
    models = importlib.import_module("imsync_rest.models")
    comment = account.batch.comments[0]
    body = models.ImImsyncV1SendReplyRequest(
        request_id="generated-1",
        reply_to_comment=models.ImImsyncV1ReplyToComment(comment_id=comment.comment_id, text="谢谢"),
    )
    sent = await send.asyncio(client=client, body=body)
    assert sent.status_code == 0 and sent.data.reply.request_id == "generated-1"
    assert sent.data.reply.state.value == "pending", "no worker holds the account here: it waits for one"

    invalid = await send.asyncio_detailed(client=client, body=models.ImImsyncV1SendReplyRequest(request_id="x"))
    assert invalid.status_code == 400
    assert invalid.parsed.details[0]["field_violations"][0]["field"] == "target"


def test_operation_ids_are_service_and_method_and_stay_put_when_routes_are_added() -> None:
    profiles = ProfileRegistry(by_prefix=())
    compat = compat_pb2.DESCRIPTOR.services_by_name["CompatService"]
    before = {
        op["operationId"]
        for item in openapi_document(routes_of([compat]), profiles)["paths"].values()
        for op in item.values()
    }
    assert {"CompatService_Echo", "CompatService_Echo_1", "CompatService_Echo_6", "CompatService_Count"} <= before

    # The same service with a method and a binding more, in a pool of its own.
    pool = descriptor_pool.DescriptorPool()
    for dependency in compat_pb2.DESCRIPTOR.dependencies:
        _add_with_dependencies(pool, dependency)
    proto = descriptor_pb2.FileDescriptorProto()
    compat_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = "imsync/testing/v1/compat_grown.proto"
    service = proto.service[0]
    added = service.method.add()
    added.CopyFrom(next(m for m in service.method if m.name == "Fail"))
    added.name = "AlsoFail"
    from google.api import annotations_pb2

    rule = added.options.Extensions[annotations_pb2.http]
    rule.get = "/v1/also-fail/{code}"
    echo = next(m for m in service.method if m.name == "Echo")
    echo.options.Extensions[annotations_pb2.http].additional_bindings.add(get="/v1/echo-again/{id}")
    # The grown service first: its new routes sort before and among the old ones.
    pool.Add(proto)
    message_factory.GetMessages([proto], pool=pool)
    after = {
        op["operationId"]
        for item in openapi_document(routes_of([pool.FindServiceByName("imsync.testing.v1.CompatService")]), profiles)[
            "paths"
        ].values()
        for op in item.values()
    }
    assert before <= after, f"renamed: {before - after}"
    assert after - before == {"CompatService_AlsoFail", "CompatService_Echo_7"}


def _add_with_dependencies(pool: descriptor_pool.DescriptorPool, file: Any) -> None:
    for dependency in file.dependencies:
        _add_with_dependencies(pool, dependency)
    try:
        pool.FindFileByName(file.name)
    except KeyError:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)


def test_the_im_api_operation_ids_are_the_published_ones() -> None:
    """Generated clients name their functions after these: renaming one breaks them."""
    document = openapi_document(routes_of(im_services()), ProfileRegistry())
    ids = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    published = Path(__file__).with_name("openapi_operation_ids.txt").read_text().split()
    assert set(published) <= ids, f"gone: {set(published) - ids}"
    assert ids - set(published) == set(), (
        f"new ids: add them to tests/openapi_operation_ids.txt: {ids - set(published)}"
    )
    for item in document["paths"].values():
        for op in item.values():
            assert op["summary"] and op["description"], op["operationId"]
    listed = document["paths"]["/api/im/conversations"]["get"]
    account_id = next(p for p in listed["parameters"] if p["name"] == "account_id")
    assert account_id["required"] is True and account_id["description"]
    assert {"304", "400", "401", "403", "404", "409", "429"} <= set(listed["responses"])
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
