"""The gateway's ASGI app in-process, calling a real master over loopback gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import unified_messages_pb2 as uni
from services.common.protojson import JsonStyle, to_json
from services.common.sample import SampleAccount
from services.gateway.app import create_app
from services.gateway.marshalers import ProfileRegistry
from services.master.model.store import MAX_PAGE_SIZE

from .conftest import NOW, Master, push_all


@pytest_asyncio.fixture
async def loaded(master: Master, accounts: list[SampleAccount]) -> Master:
    await push_all(master, accounts)
    return master


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert body["data"] is None and body["status_code"] != 0
    return body


async def test_list_conversations_in_the_im_envelope_and_order(
    loaded: Master, gateway: httpx.AsyncClient, accounts: list[SampleAccount]
) -> None:
    account_id = accounts[0].account_id
    response = await gateway.get("/api/im/conversations", params={"account_id": account_id, "count": 5})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"data", "status_code", "status_msg"} and body["status_code"] == 0
    data = body["data"]
    assert set(data) == {"conversations", "cursor", "has_more"}
    assert data["has_more"] is True and len(data["conversations"]) == 5
    first = data["conversations"][0]
    assert first["conversation_type"] == "one_on_one"
    assert first["last_message"]["create_time"].endswith("Z")
    assert isinstance(first["unread_count"], int)
    times = [c["last_message"]["create_time"] for c in data["conversations"]]
    assert times == sorted(times, reverse=True)


async def test_gateway_and_grpc_stub_answer_identically(
    loaded: Master, gateway: httpx.AsyncClient, accounts: list[SampleAccount]
) -> None:
    account_id = accounts[1].account_id
    over_grpc = await loaded.im.list_conversations(conv.ListConversationsRequest(account_id=account_id, count=7))
    over_http = await gateway.get("/api/im/conversations", params={"account_id": account_id, "count": 7})
    assert over_http.json()["data"] == to_json(over_grpc, JsonStyle.IM)

    stats = await loaded.im.get_unified_stats(uni.GetUnifiedStatsRequest(account_id=account_id))
    over_http = await gateway.get("/api/im/unified-messages/stats", params={"account_id": account_id})
    assert over_http.json()["data"] == to_json(stats, JsonStyle.IM)
    assert over_http.json()["data"]["total_unread"] == stats.total_unread > 0


async def test_walking_pages_returns_each_item_once(
    loaded: Master, gateway: httpx.AsyncClient, accounts: list[SampleAccount]
) -> None:
    account_id = accounts[0].account_id
    seen: list[str] = []
    cursor = "0"
    while True:
        data = (
            await gateway.get("/api/im/messages", params={"account_id": account_id, "cursor": cursor, "count": 9})
        ).json()["data"]
        seen += [m["message_id"] for m in data["messages"]]
        if not data["has_more"]:
            break
        cursor = data["cursor"]
    assert sorted(seen) == sorted(m.message_id for m in accounts[0].batch.messages)


async def test_unknown_account_is_404_with_a_status_body(loaded: Master, gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/im/conversations", params={"account_id": "nobody"})
    assert response.status_code == 404
    body = error_of(response)
    assert body["status_code"] == 5 and "nobody" in body["status_msg"]


async def test_missing_account_id_is_400_naming_the_field(loaded: Master, gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/im/conversations")
    assert response.status_code == 400
    assert error_of(response)["status_msg"].startswith("account_id:")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"count": "abc"}, "count"),
        ({"count": "99999999999"}, "count"),
        ({"count": "-3"}, "count"),
        ({"is_pinned": "maybe"}, "is_pinned"),
        ({"status": "sleepy"}, "status"),
    ],
)
async def test_bad_query_values_are_400_naming_the_parameter(
    loaded: Master, gateway: httpx.AsyncClient, accounts: list[SampleAccount], params: dict[str, str], field: str
) -> None:
    response = await gateway.get("/api/im/conversations", params={"account_id": accounts[0].account_id, **params})
    assert response.status_code == 400
    assert error_of(response)["status_msg"].startswith(f"{field}:")


async def test_count_above_the_maximum_is_clamped(loaded: Master, gateway: httpx.AsyncClient) -> None:
    big = SampleAccount("big", seed=2, now=NOW)
    big.fill(conversations=40, messages_per_conversation=5, contents=0, comments_per_content=0)
    assert len(big.batch.messages) > MAX_PAGE_SIZE
    await push_all(loaded, [big])
    data = (await gateway.get("/api/im/messages", params={"account_id": "big", "count": 1000})).json()["data"]
    assert len(data["messages"]) == MAX_PAGE_SIZE and data["has_more"]


@pytest.mark.parametrize("status", ["active", "ACCOUNT_STATUS_ACTIVE", "1"])
async def test_enums_by_short_name_full_name_or_number(loaded: Master, gateway: httpx.AsyncClient, status: str) -> None:
    data = (await gateway.get("/api/im/accounts", params={"status": status})).json()["data"]
    assert len(data["users"]) == 2 and all(user["status"] == "active" for user in data["users"])


async def test_types_as_a_comma_separated_list(
    loaded: Master, gateway: httpx.AsyncClient, accounts: list[SampleAccount]
) -> None:
    params: dict[str, str | int] = {"account_id": accounts[0].account_id, "types": "comment,discussion", "count": 100}
    data = (await gateway.get("/api/im/unified-messages", params=params)).json()["data"]
    assert data["messages"] and {m["type"] for m in data["messages"]} <= {"comment", "discussion"}
    repeated: list[tuple[str, str | int | float | bool | None]] = [
        ("account_id", accounts[0].account_id),
        ("types", "direct_message"),
        ("types", "comment"),
    ]
    data = (await gateway.get("/api/im/unified-messages", params=repeated)).json()["data"]
    assert {m["type"] for m in data["messages"]} <= {"comment", "direct_message"}


async def test_mark_read_through_rest(
    loaded: Master, gateway: httpx.AsyncClient, accounts: list[SampleAccount]
) -> None:
    account = accounts[0]
    conversation_id = account.batch.conversations[0].conversation_id
    path = f"/api/im/conversations/{conversation_id}/read"
    # As the old IM API did: the item's id alone finds its account.
    response = await gateway.put(path)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["conversation"]["unread_count"] == 0
    # The same with the account in a JSON body.
    again = await gateway.put(path, json={"account_id": account.account_id})
    assert again.json()["data"]["marked_count"] == 0
    item = (await gateway.get("/api/im/unified-messages", params={"account_id": account.account_id, "count": 1})).json()
    item_id = item["data"]["messages"][0]["id"]
    marked = await gateway.put(f"/api/im/unified-messages/{item_id}/read", json={"account_id": account.account_id})
    assert marked.json()["data"]["message"]["is_read"] is True
    many = await gateway.put(
        "/api/im/unified-messages/read-many", json={"account_id": account.account_id, "ids": [item_id]}
    )
    assert many.json()["data"]["marked_count"] == 0

    # At most 1,000 ids a request: more is refused, naming the field, and marks nothing.
    async def first_unread() -> str:
        asked: dict[str, str | int] = {"account_id": account.account_id, "is_read": "false", "count": 1}
        page = await gateway.get("/api/im/unified-messages", params=asked)
        return str(page.json()["data"]["messages"][0]["id"])

    unread = await first_unread()
    too_many = await gateway.put(
        "/api/im/unified-messages/read-many", json={"account_id": account.account_id, "ids": [unread] * 1_001}
    )
    assert too_many.status_code == 400, too_many.text
    assert error_of(too_many)["status_msg"] == "ids: at most 1,000 ids a request"
    assert await first_unread() == unread
    allowed = await gateway.put(
        "/api/im/unified-messages/read-many", json={"account_id": account.account_id, "ids": [unread] * 1_000}
    )
    assert allowed.json()["data"]["marked_count"] == 1


async def test_body_that_is_not_json_is_400(loaded: Master, gateway: httpx.AsyncClient) -> None:
    response = await gateway.put("/api/im/unified-messages/read-many", content=b"{not json")
    assert response.status_code == 400
    assert error_of(response)["status_msg"].startswith("body:")


async def test_unknown_routes_and_wrong_methods(gateway: httpx.AsyncClient) -> None:
    missing = await gateway.get("/api/im/nothing-here")
    assert missing.status_code == 404 and error_of(missing)["status_code"] == 5
    wrong = await gateway.post("/api/im/accounts")
    assert wrong.status_code == 405 and error_of(wrong)["status_code"] == 12


async def test_malformed_grpc_timeout_is_400(loaded: Master, gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/im/accounts", headers={"Grpc-Timeout": "soon"})
    assert response.status_code == 400
    ok = await gateway.get("/api/im/accounts", headers={"Grpc-Timeout": "5S"})
    assert ok.status_code == 200


@pytest_asyncio.fixture
async def plain_gateway(loaded: Master) -> AsyncIterator[httpx.AsyncClient]:
    """The same routes with grpc-gateway's default marshaler everywhere."""
    app = create_app(channel=loaded.channel, profiles=ProfileRegistry(by_prefix=()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as client:
        yield client


async def test_grpc_gateway_profile(plain_gateway: httpx.AsyncClient, accounts: list[SampleAccount]) -> None:
    body = (await plain_gateway.get(f"/api/im/accounts/{accounts[0].account_id}")).json()
    user = body["user"]
    assert user["accountId"] == accounts[0].account_id
    assert user["status"] == "ACCOUNT_STATUS_ACTIVE"
    assert user["followerCount"] == str(accounts[0].account.follower_count), "int64 travels as a string"
    error = await plain_gateway.get("/api/im/conversations")
    assert error.status_code == 400
    status = error.json()
    assert status["code"] == 3 and status["message"].startswith("account_id:")
    assert status["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert status["details"][0]["fieldViolations"][0]["field"] == "account_id"


async def test_get_account_matches_stub(
    loaded: Master, gateway: httpx.AsyncClient, accounts: list[SampleAccount]
) -> None:
    account_id = accounts[0].account_id
    over_grpc = await loaded.im.get_account(acc.GetAccountRequest(account_id=account_id))
    over_http = (await gateway.get(f"/api/im/accounts/{account_id}")).json()["data"]
    assert over_http == to_json(over_grpc, JsonStyle.IM)
    assert over_http["user"]["created_at"] == over_grpc.user.created_at.ToJsonString()


async def test_timestamps_from_the_query(
    loaded: Master, gateway: httpx.AsyncClient, accounts: list[SampleAccount]
) -> None:
    account_id = accounts[0].account_id
    since = "2026-09-15T00:00:00Z"
    data = (
        await gateway.get("/api/im/messages", params={"account_id": account_id, "since_time": since, "count": 100})
    ).json()["data"]
    assert data["messages"] and all(m["create_time"] >= since for m in data["messages"])
    bad = await gateway.get("/api/im/messages", params={"account_id": account_id, "since_time": "yesterday"})
    assert bad.status_code == 400 and error_of(bad)["status_msg"].startswith("since_time:")
