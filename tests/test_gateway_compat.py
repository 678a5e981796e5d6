"""grpc-gateway compatibility, rule by rule, against a service made to exercise each one.

Written from grpc-gateway's documented behaviour (the google.api.http mapping rules, the
default JSONPb marshaler with EmitUnpopulated, runtime.HTTPStatusFromCode, the default
header matcher, server-stream framing); its code is not copied.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import orjson
import pytest
import pytest_asyncio
from google.api import httpbody_pb2

from imsync.testing.v1 import compat_pb2 as c
from imsync.testing.v1 import compat_pb2_grpc
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import entities_pb2 as e
from services.common.addresses import free_port
from services.common.protojson import EncodedReply
from services.gateway.app import create_app
from services.gateway.marshalers import GRPC_GATEWAY, IM, Profile, ProfileRegistry


class EchoServicer(compat_pb2_grpc.CompatServiceServicer):
    async def Echo(self, request: c.EchoRequest, context: Any) -> c.EchoResponse:
        await context.send_initial_metadata((("x-echo", "yes"),))
        metadata = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
        remaining = context.time_remaining()
        return c.EchoResponse(echoed=request, metadata=metadata, deadline_seconds=remaining or 0)

    async def EchoPayload(self, request: c.EchoPayloadRequest, context: Any) -> c.EchoPayloadResponse:
        return c.EchoPayloadResponse(payload=c.Nested(label=request.id, amount=7), ignored="not in the body")

    async def Fail(self, request: c.FailRequest, context: Any) -> c.FailResponse:
        code = next(code for code in grpc.StatusCode if code.value[0] == request.code)
        await context.abort(code, request.message or f"failed with {code.name}")
        raise AssertionError("unreachable")

    async def Download(self, request: c.DownloadRequest, context: Any) -> httpbody_pb2.HttpBody:
        return httpbody_pb2.HttpBody(content_type="image/png", data=b"\x89PNG" + request.name.encode())

    async def Upload(self, request: c.UploadRequest, context: Any) -> c.UploadResponse:
        data = request.data
        return c.UploadResponse(
            name=request.name,
            content_type=data.content_type,
            size=len(data.data),
            text=data.data.decode(errors="replace"),
        )

    async def UpdateBook(self, request: c.UpdateBookRequest, context: Any) -> c.UpdateBookResponse:
        return c.UpdateBookResponse(received=request)

    async def Count(self, request: c.CountRequest, context: Any) -> AsyncIterator[c.CountResponse]:
        for index in range(request.count):
            yield c.CountResponse(index=index)
        if request.then_fail:
            code = next(code for code in grpc.StatusCode if code.value[0] == request.then_fail)
            await context.abort(code, "stopped on purpose")


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    server = grpc.aio.server()
    compat_pb2_grpc.add_CompatServiceServicer_to_server(EchoServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    app = create_app(
        channel=channel, services=c.DESCRIPTOR.services_by_name.values(), profiles=ProfileRegistry(by_prefix=())
    )
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            yield client
    finally:
        await channel.close(grace=None)
        await server.stop(None)


def echoed(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["echoed"]
    return body


# (method, path, query, json body, expected subset of the echoed request)
BINDINGS: list[tuple[str, str, str, Any, dict[str, Any]]] = [
    ("GET", "/v1/echo/abc", "", None, {"id": "abc"}),
    ("GET", "/v1/echo/%E4%BD%A0%2F1", "", None, {"id": "你/1"}),
    (
        "GET",
        "/v1/echo/a",
        "name=x&big=9007199254740993&small=7&flag=true&ratio=0.5",
        None,
        {"name": "x", "big": "9007199254740993", "small": 7, "flag": True, "ratio": 0.5},
    ),
    ("GET", "/v1/echo/a", "flag=1", None, {"flag": True}),
    (
        "GET",
        "/v1/echo/a",
        "nested.label=L&nested.amount=3&nested.color=COLOR_BLUE",
        None,
        {"nested": {"label": "L", "amount": 3, "color": "COLOR_BLUE"}},
    ),
    (
        "GET",
        "/v1/echo/a",
        "tags=a&tags=b&colors=COLOR_RED&colors=2&numbers=1&numbers=-2",
        None,
        {"tags": ["a", "b"], "colors": ["COLOR_RED", "COLOR_BLUE"], "numbers": [1, -2]},
    ),
    ("GET", "/v1/echo/a", "tags=a,b", None, {"tags": ["a,b"]}),
    ("GET", "/v1/echo/a", "color=2", None, {"color": "COLOR_BLUE"}),
    (
        "GET",
        "/v1/echo/a",
        "when=2026-01-02T03:04:05Z&maybe=5&blob=aGk%3D&opt=",
        None,
        {"when": "2026-01-02T03:04:05Z", "maybe": 5, "blob": "aGk=", "opt": ""},
    ),
    ("GET", "/v1/echo/a", "zzz=1&nested.zzz=2", None, {"id": "a"}),
    (
        "POST",
        "/v1/echo",
        "name=from-query",
        {"id": "b", "nested": {"label": "n"}, "unknownField": 1},
        {"id": "b", "name": "", "nested": {"label": "n", "amount": 0, "color": "COLOR_UNSPECIFIED"}},
    ),
    (
        "PUT",
        "/v1/echo/abc",
        "name=q",
        {"label": "p", "amount": 2},
        {"id": "abc", "name": "q", "payload": {"label": "p", "amount": 2, "color": "COLOR_UNSPECIFIED"}},
    ),
    ("GET", "/v1/shelves/s1/books/b2", "", None, {"name": "shelves/s1/books/b2"}),
    ("POST", "/v1/shelves/s1:archive", "", {}, {"name": "shelves/s1"}),
    ("DELETE", "/v1/echo/L1/nested", "", None, {"nested": {"label": "L1", "amount": 0, "color": "COLOR_UNSPECIFIED"}}),
    ("PATCH", "/v1/files/a/b/c", "", None, {"name": "a/b/c"}),
]


@pytest.mark.parametrize(("method", "path", "query", "body", "expected"), BINDINGS)
async def test_request_binding(
    http: httpx.AsyncClient, method: str, path: str, query: str, body: Any, expected: dict[str, Any]
) -> None:
    url = f"{path}?{query}" if query else path
    response = await http.request(method, url, json=body) if body is not None else await http.request(method, url)
    got = echoed(response)
    assert {key: got[key] for key in expected} == expected


async def test_every_field_is_emitted_in_lower_camel_case_with_64_bit_integers_as_strings(
    http: httpx.AsyncClient,
) -> None:
    body = (await http.get("/v1/echo/a")).json()
    assert set(body) == {"echoed", "metadata", "deadlineSeconds"}
    got = body["echoed"]
    assert got["big"] == "0" and got["small"] == 0 and got["tags"] == [] and got["nested"] is None
    assert got["color"] == "COLOR_UNSPECIFIED" and got["when"] is None
    assert "opt" not in got, "an unset optional (a oneof member) is not emitted"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("big=1.5", "big"),
        ("small=-1", "small"),
        ("flag=yes", "flag"),
        ("color=GREEN", "color"),
        ("ratio=half", "ratio"),
        ("when=yesterday", "when"),
        ("name=a&name=b", "name"),
        ("nested=x", "nested"),
    ],
)
async def test_bad_query_values_are_400_naming_the_field(http: httpx.AsyncClient, query: str, field: str) -> None:
    response = await http.get(f"/v1/echo/a?{query}")
    assert response.status_code == 400
    status = response.json()
    assert status["code"] == 3 and status["message"].startswith(f"{field}:")
    assert status["details"][0]["fieldViolations"][0]["field"] == field


async def test_response_body_selects_one_field(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/payload/x")).json() == {"label": "x", "amount": 7, "color": "COLOR_UNSPECIFIED"}


# grpc-gateway's runtime.HTTPStatusFromCode.
STATUS_TABLE = [
    (1, 499),
    (2, 500),
    (3, 400),
    (4, 504),
    (5, 404),
    (6, 409),
    (7, 403),
    (8, 429),
    (9, 400),
    (10, 409),
    (11, 400),
    (12, 501),
    (13, 500),
    (14, 503),
    (15, 500),
    (16, 401),
]


@pytest.mark.parametrize(("code", "http_status"), STATUS_TABLE)
async def test_error_status_table_and_body(http: httpx.AsyncClient, code: int, http_status: int) -> None:
    response = await http.get(f"/v1/fail/{code}", params={"message": "why"})
    assert response.status_code == http_status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": code, "message": "why", "details": []}


async def test_unknown_paths_and_methods(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/nope")
    assert missing.status_code == 404 and missing.json()["code"] == 5
    wrong = await http.post("/v1/echo/abc")
    assert wrong.status_code == 405 and wrong.json() == {"code": 12, "message": "Method Not Allowed", "details": []}


async def test_bodies_that_are_not_json(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/echo", content=b"{nope")
    assert response.status_code == 400 and response.json()["message"].startswith("body:")
    response = await http.post("/v1/echo", content=b"[1, 2]")
    assert response.status_code == 400
    empty = await http.post("/v1/echo", content=b"")
    assert empty.status_code == 200, "an empty body is an empty message"


async def test_metadata_authorization_and_timeout(http: httpx.AsyncClient) -> None:
    response = await http.get(
        "/v1/echo/a",
        headers={"Grpc-Metadata-Tenant": "t1", "Authorization": "Bearer k", "Grpc-Timeout": "2S", "X-Other": "no"},
    )
    body = response.json()
    assert body["metadata"]["tenant"] == "t1"
    assert body["metadata"]["authorization"] == "Bearer k"
    assert "x-other" not in body["metadata"], "only Grpc-Metadata-* and Authorization go through"
    assert 0 < body["deadlineSeconds"] < 3, "Grpc-Timeout: 2S became the call's deadline"
    assert response.headers["Grpc-Metadata-x-echo"] == "yes"
    untimed = (await http.get("/v1/echo/a")).json()
    assert untimed["deadlineSeconds"] == 0


async def test_server_streams_are_newline_delimited_results_then_the_error(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/count/3")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines == [{"result": {"index": i}} for i in range(3)]
    failing = await http.get("/v1/count/2", params={"then_fail": 9})
    lines = [json.loads(line) for line in failing.text.splitlines()]
    assert lines[:2] == [{"result": {"index": 0}}, {"result": {"index": 1}}]
    assert lines[2]["error"]["code"] == 9 and lines[2]["error"]["message"] == "stopped on purpose"
    refused = await http.get("/v1/count/0", params={"then_fail": 7})
    assert refused.status_code == 403, "a stream refused before its first message is an HTTP error"


# ---------------------------------------------------------------- more of grpc-gateway's rules


async def test_an_http_body_answer_is_raw_bytes_of_its_own_type(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/download/qr")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == b"\x89PNGqr"


async def test_a_body_bound_to_an_http_body_field_is_taken_raw_with_its_type(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/upload/notes", content="plain text, not JSON", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "name": "notes",
        "contentType": "text/plain",
        "size": "20",
        "text": "plain text, not JSON",
    }


@pytest.mark.parametrize(
    ("query", "body", "mask"),
    [
        ("", {"title": "New"}, ["title"]),
        ("", {"title": "New", "details": {"label": "L", "amount": 2}}, ["title", "details.label", "details.amount"]),
        ("", {"title": "New", "details": {}}, ["title", "details"]),
        ("update_mask=author", {"title": "New"}, ["author"]),  # the client's own mask wins
    ],
)
async def test_a_patch_fills_an_empty_update_mask_from_its_body(
    http: httpx.AsyncClient, query: str, body: dict[str, Any], mask: list[str]
) -> None:
    url = "/v1/shelves/s1/books/b1" + (f"?{query}" if query else "")
    received = (await http.patch(url, json=body)).json()["received"]
    assert received["book"]["name"] == "shelves/s1/books/b1" and received["book"]["title"] == "New"
    assert received["updateMask"].split(",") == mask
    put_like = (await http.put("/v1/echo/abc", json={"label": "p"})).json()["echoed"]
    assert put_like["payload"]["label"] == "p", "only PATCH fills a mask"


async def test_a_weak_etag_in_if_none_match_matches(http: httpx.AsyncClient) -> None:
    first = await http.get("/v1/payload/x")
    etag = first.headers["etag"]
    for sent in (etag, f"W/{etag}", f'"other", W/{etag}', "*"):
        again = await http.get("/v1/payload/x", headers={"If-None-Match": sent})
        assert again.status_code == 304, sent
    assert (await http.get("/v1/payload/x", headers={"If-None-Match": 'W/"other"'})).status_code == 200


async def test_an_answer_nobody_keeps_is_the_kept_answer_sent() -> None:
    """A page read without a cache (answers.fresh_answer) sends the status, headers and
    body a kept answer of the same bytes sends, 304 for the same If-None-Match."""
    from services.gateway.answers import _answer, etag_of, fresh_answer, read_answer

    async def sent(answer: Any) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []

        async def send(message: Any) -> None:
            messages.append(message)

        await answer.send_to(send)
        return messages

    body = b'{"data":{"conversations":[],"cursor":"","has_more":false}}'
    etag = etag_of(body)
    for if_none_match in (None, etag, f"W/{etag}", f'"other", {etag}', "*", '"other"'):
        kept = await sent(_answer(read_answer(body, {}, "/x"), if_none_match))
        assert await sent(fresh_answer(body, if_none_match)) == kept, if_none_match
        assert kept[0]["status"] == (200 if if_none_match in (None, '"other"') else 304)


async def test_unknown_query_parameters_are_ignored_in_the_grpc_gateway_profile(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/echo/a", params={"work_id": "x"})).status_code == 200


@pytest_asyncio.fixture
async def im_http() -> AsyncIterator[httpx.AsyncClient]:
    """The same service in the IM profile (the IM envelope, strict binding)."""
    server = grpc.aio.server()
    compat_pb2_grpc.add_CompatServiceServicer_to_server(EchoServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        async with im_client(channel) as client:
            yield client
    finally:
        await channel.close(grace=None)
        await server.stop(None)


def im_client(channel: grpc.aio.Channel) -> httpx.AsyncClient:
    """An HTTP client of a gateway over `channel` answering the compat service in the IM profile."""
    app = create_app(
        channel=channel,
        services=c.DESCRIPTOR.services_by_name.values(),
        profiles=ProfileRegistry(by_prefix=(("/v1/", IM),)),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "field"),
    [
        ("GET", "/v1/echo/a", "work_id=x", None, "work_id"),
        ("GET", "/v1/echo/a", "nested.zzz=2", None, "nested.zzz"),
        ("POST", "/v1/echo", "", {"id": "b", "unknown_field": 1}, "unknown_field"),
        ("POST", "/v1/echo", "", {"id": "b", "nested": {"labl": "typo"}}, "nested.labl"),
        ("PUT", "/v1/echo/abc", "", {"label": "p", "colour": 1}, "payload.colour"),
    ],
)
async def test_the_im_profile_refuses_what_it_does_not_know_naming_it(
    im_http: httpx.AsyncClient, method: str, path: str, query: str, body: Any, field: str
) -> None:
    url = f"{path}?{query}" if query else path
    response = await im_http.request(method, url, json=body) if body is not None else await im_http.request(method, url)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["data"] is None and answer["status_code"] == 3 and answer["status_msg"].startswith(f"{field}:")
    assert answer["details"][0]["field_violations"][0]["field"] == field


async def test_im_errors_keep_their_details_in_the_envelope(im_http: httpx.AsyncClient) -> None:
    bad = (await im_http.get("/v1/echo/a", params={"flag": "maybe"})).json()
    assert bad["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "field_violations": [{"field": "flag", "description": "invalid value 'maybe' for bool", "reason": ""}],
        }
    ]
    failed = (await im_http.get("/v1/fail/8", params={"message": "slow down"})).json()
    assert failed == {"data": None, "status_code": 8, "status_msg": "slow down", "details": []}


async def test_a_master_out_of_reach_is_503_without_its_address(caplog: pytest.LogCaptureFixture) -> None:
    """The channel's own UNAVAILABLE (nothing listens at the master's address) names the
    address; a client is told only that the master cannot be reached, when to try again,
    and the gateway's log keeps the address. A server's own UNAVAILABLE keeps its words
    (test_error_status_table_and_body)."""
    address = f"127.0.0.1:{free_port()}"
    channel = grpc.aio.insecure_channel(address)
    try:
        async with im_client(channel) as client:
            response = await client.get("/v1/echo/a")
    finally:
        await channel.close(grace=None)
    assert response.status_code == 503, response.text
    answer = response.json()
    assert answer["status_msg"] == "the master cannot be reached; try again"
    assert address not in response.text and address.rpartition(":")[2] not in response.text
    assert answer["details"] == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retry_delay": "1s"}]
    assert address in caplog.text


@pytest.mark.parametrize("profile", [GRPC_GATEWAY, IM], ids=lambda profile: profile.name)
def test_a_page_joined_from_encoded_items_is_the_page_encoded_whole(profile: Profile) -> None:
    """encoded_body (the embedded gateway's pages: items the master kept as JSON) writes the
    bytes response_body writes of the response holding those items, whatever its other
    fields, for a field of items first in its message and for one that is not."""
    conversations = [
        e.Conversation(conversation_id=f"c{n}", account_id="a", unread_count=n, participant=e.User(user_name='"é"'))
        for n in range(3)
    ]
    for count in (0, 1, 3):
        for cursor, has_more in (("", False), ('next"\\page', True)):
            whole = conv.ListConversationsResponse(
                conversations=conversations[:count], cursor=cursor, has_more=has_more
            )
            reply = EncodedReply(
                conv.ListConversationsResponse(cursor=cursor, has_more=has_more),
                "conversations",
                [orjson.dumps(profile.json(item)) for item in conversations[:count]],
            )
            assert profile.encoded_body(reply) == profile.response_body(whole)
    # Items after other fields: the same bytes the other way.
    echo = c.EchoRequest(id="x", tags=["a", '"b"', "é"])
    reply = EncodedReply(c.EchoRequest(id="x"), "tags", [orjson.dumps(tag) for tag in echo.tags])
    assert profile.encoded_body(reply) == profile.response_body(echo)
