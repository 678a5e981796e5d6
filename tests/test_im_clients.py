"""Clients nobody here wrote: the IM clients of the system imsync replaces (their names, their
times in milliseconds, their read-many body, /health and /version), strict parameters in
the IM profile, event streams kept open through proxies, and headers checked on a cache hit
as on a miss."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.common.http_server import serve_asgi
from services.common.sample import SampleAccount
from services.gateway.app import create_app

from .conftest import Master, push_all


@pytest_asyncio.fixture(params=["asked per request", "gateway flag"])
async def old_client(
    master: Master, accounts: list[SampleAccount], request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """An old IM client: asking for the old names on each request, or served by a gateway
    started with --im-legacy-names."""
    await push_all(master, accounts)
    flag = request.param == "gateway flag"
    app = create_app(channel=master.channel, legacy_names=flag)
    params = {} if flag else {"legacy_names": "true"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", params=params) as http:
        yield http


def keys_anywhere(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for item in value.values() for k in keys_anywhere(item)}
    if isinstance(value, list):
        return {k for item in value for k in keys_anywhere(item)}
    return set()


async def test_an_old_im_client_reads_marks_and_pages_in_its_own_words(
    old_client: httpx.AsyncClient, accounts: list[SampleAccount]
) -> None:
    account = accounts[0]
    account_id = account.account_id
    conversation = account.batch.conversations[0].conversation_id

    # A conversation's thread: every message with its old id beside today's.
    thread = (
        await old_client.get(
            f"/api/im/conversations/{conversation}/messages", params={"account_id": account_id, "count": 100}
        )
    ).json()["data"]["messages"]
    assert thread and all(m["msg_id"] == m["message_id"] for m in thread)

    # Comments: discussion_id, and the author as author_id / author_name.
    comments = (await old_client.get("/api/im/discussions", params={"account_id": account_id})).json()["data"]
    first = comments["discussions"][0]
    assert first["discussion_id"] == first["comment_id"]
    assert first["author"]["author_id"] == first["author"]["user_id"]
    assert first["author"]["author_name"] == first["author"]["user_name"]

    # A mark-read answers the message in the old words too.
    marked = (await old_client.put(f"/api/im/messages/{thread[0]['message_id']}/read", json={})).json()["data"]
    assert marked["message"]["msg_id"] == thread[0]["message_id"] and marked["message"]["is_read"]

    # read-many with the old body: message_ids and their business_type.
    unread = [m["message_id"] for m in thread if not m["is_read"] and m["direction"] == "inbound"]
    assert unread
    many = await old_client.put(
        "/api/im/unified-messages/read-many",
        json={"account_id": account_id, "message_ids": unread, "business_type": "direct_message"},
    )
    assert many.status_code == 200, many.text
    assert many.json()["data"]["marked_count"] == len(unread)
    refused = await old_client.put(
        "/api/im/unified-messages/read-many",
        json={"account_id": account_id, "message_ids": unread, "business_type": "fax"},
    )
    assert (
        refused.status_code == 400 and refused.json()["details"][0]["field_violations"][0]["field"] == "business_type"
    )

    # The inbox since a time in epoch milliseconds: only what came since, in the old words.
    everything = (
        await old_client.get("/api/im/unified-messages", params={"account_id": account_id, "count": 100})
    ).json()["data"]["messages"]
    times = sorted(item["create_time"] for item in everything)
    middle = times[len(times) // 2]
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromJsonString(middle)
    since = (
        await old_client.get(
            "/api/im/unified-messages",
            params={"account_id": account_id, "since_time": str(stamp.ToMilliseconds()), "count": 100},
        )
    ).json()["data"]
    assert since["messages"] and all(item["create_time"] >= middle for item in since["messages"])
    assert len(since["messages"]) == sum(1 for t in times if t >= middle)
    assert any(item.get("message", {}).get("msg_id") for item in since["messages"])
    messages_since = (
        await old_client.get(
            "/api/im/messages",
            params={"account_id": account_id, "since_time": str(stamp.ToMilliseconds()), "count": 100},
        )
    ).json()["data"]
    assert all(m["create_time"] >= middle for m in messages_since["messages"])


async def test_todays_clients_see_todays_names_only(master: Master, accounts: list[SampleAccount]) -> None:
    await push_all(master, accounts)
    app = create_app(channel=master.channel)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        account_id = accounts[0].account_id
        for path in ("/api/im/messages", "/api/im/discussions", "/api/im/unified-messages"):
            body = (await http.get(path, params={"account_id": account_id})).json()
            assert not keys_anywhere(body) & {"msg_id", "discussion_id", "author_id", "author_name"}, path


async def test_the_im_profile_refuses_unknown_parameters_and_missing_accounts(
    master: Master, accounts: list[SampleAccount]
) -> None:
    await push_all(master, accounts)
    app = create_app(channel=master.channel)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        account_id = accounts[0].account_id
        typo = await http.get("/api/im/discussions", params={"account_id": account_id, "work_id": "x"})
        assert typo.status_code == 400
        assert typo.json()["status_msg"] == "work_id: unknown query parameter"
        body = await http.put("/api/im/unified-messages/read-many", json={"account_id": account_id, "idz": ["x"]})
        assert body.status_code == 400 and body.json()["status_msg"].startswith("idz:")
        for path in ("/api/im/conversations", "/api/im/messages", "/api/im/unified-messages/stats"):
            missing = await http.get(path)
            assert missing.status_code == 400, path
            assert missing.json()["details"][0]["field_violations"][0]["field"] == "account_id"
        # grpc-gateway's own profile keeps grpc-gateway's rule: unknown parameters are ignored.
        # (No route of the IM services is outside /api/im; see test_gateway_compat.)


async def test_health_and_version_as_the_old_api_had_them(master: Master) -> None:
    app = create_app(channel=master.channel)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        health = await http.get("/api/im/health")
        assert health.status_code == 200 and health.json() == {
            "data": {"status": "ok"},
            "status_code": 0,
            "status_msg": "",
        }
        version = (await http.get("/api/im/version")).json()
        assert version["status_code"] == 0 and version["data"]["api"] == "imsync.v1" and version["data"]["version"]
    await master.process.stop()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        down = await http.get("/api/im/health")
        assert down.status_code == 503 and down.json()["status_code"] == 14


async def test_an_idle_event_stream_gets_keep_alive_comments_and_no_proxy_buffering(master: Master) -> None:
    app = create_app(channel=master.channel, sse_keepalive=0.2)
    bound: list[str] = []
    stop = asyncio.Event()

    def announce(address: str) -> str:
        bound.append(address)
        return f"test gateway on {address}"

    server = asyncio.create_task(serve_asgi(app, "127.0.0.1:0", announce, lifespan="off", stop=stop))
    try:
        while not bound:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://{bound[0]}", timeout=10) as http:
            async with http.stream("GET", "/api/im/events", headers={"Accept": "text/event-stream"}) as stream:
                assert stream.headers["x-accel-buffering"] == "no"
                assert stream.headers["content-type"].startswith("text/event-stream")
                comments: list[str] = []
                async with asyncio.timeout(5):
                    async for line in stream.aiter_lines():
                        if line.startswith(":"):
                            comments.append(line)
                        if len(comments) == 4:
                            break
                assert comments[0] == ": stream open" and comments[1:] == [": keep-alive"] * 3
    finally:
        stop.set()
        await server
