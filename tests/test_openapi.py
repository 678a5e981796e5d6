"""The OpenAPI document, and schemathesis against it over real processes."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from imsync_client import SyncClient
from services.common.sample import sample_accounts
from services.gateway.app import create_app, im_services
from services.gateway.routes import routes_of

from .conftest import NOW, token_for, write_tokens


async def test_every_annotated_route_is_documented_in_its_profile() -> None:
    app = create_app(channel=grpc.aio.insecure_channel("127.0.0.1:1"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        document = (await http.get("/openapi.json")).json()
    operations = [(path, method) for path, item in document["paths"].items() for method in item]
    assert len(operations) == len(routes_of(im_services()))
    listed = document["paths"]["/api/im/conversations"]["get"]
    names = {parameter["name"] for parameter in listed["parameters"]}
    assert {"account_id", "cursor", "count", "is_pinned", "status"} <= names
    ok = listed["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(ok["properties"]) == {"data", "status_code", "status_msg"}
    conversation = document["components"]["schemas"]["im.imsync.v1.Conversation"]["properties"]
    assert conversation["conversation_type"]["enum"] == ["group", "one_on_one", "unspecified"]
    assert conversation["unread_count"]["type"] == "integer"


def _start(args: list[str], wanted: int = 1) -> tuple[subprocess.Popen[str], list[str]]:
    """A process and the first `wanted` addresses it says it listens on."""
    process = subprocess.Popen([sys.executable, "-m", "services.cli", *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    found: list[str] = []
    for line in process.stdout:
        address = re.search(r"listening on (?:http://)?(\S+)", line)
        if address:
            found.append(address.group(1))
            if len(found) == wanted:
                return process, found
    raise RuntimeError(f"{args[0]} did not start")


@pytest.fixture(scope="module")
def api_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A key file with one key, for one of the two accounts the gateway serves."""
    from services.master.auth.api_keys import create_api_key

    keys = Path(tmp_path_factory.mktemp("keys")) / "api-keys.toml"
    return keys, create_api_key(keys, "fuzz", [sample_accounts(2, now=NOW, seed=40)[0].account_id], ["read", "reply"])


@pytest.fixture(scope="module", params=["gateway process", "embedded gateway"])
def gateway_url(
    tmp_path_factory: pytest.TempPathFactory, api_key: tuple[Path, str], request: pytest.FixtureRequest
) -> Iterator[str]:
    tokens = write_tokens(Path(tmp_path_factory.mktemp("tokens")) / "tokens.toml")
    args = [
        "master",
        "--listen",
        "127.0.0.1:0",
        "--retention",
        "none",
        "--worker-tokens",
        str(tokens),
        "--api-keys",
        str(api_key[0]),
        "--rate-limit",
        "0",
    ]
    children = []
    if request.param == "embedded gateway":
        # The embedded gateway says where it listens first, then the master.
        master, (gateway_address, master_address) = _start([*args, "--gateway-listen", "127.0.0.1:0"], 2)
        children.append(master)
    else:
        master, (master_address,) = _start(args)
        children.append(master)
        gateway, (gateway_address,) = _start(["gateway", "--listen", "127.0.0.1:0", "--master", master_address])
        children.append(gateway)

    async def fill() -> None:
        async with grpc.aio.insecure_channel(master_address) as channel:
            sync = SyncClient(channel, "test-worker", token=token_for("test-worker"))
            accounts = sample_accounts(2, now=NOW, seed=40)
            await sync.open({a.account_id: 0 for a in accounts})
            for account in accounts:
                await sync.push_snapshot(account.account_id, 1, account.account, account.batch)

    asyncio.run(fill())
    try:
        yield f"http://{gateway_address}"
    finally:
        for process in reversed(children):
            process.terminate()
            process.wait(10)
            if process.stdout is not None:
                process.stdout.close()


@pytest.mark.e2e
@pytest.mark.timeout(600)
@pytest.mark.parametrize("with_key", [True, False], ids=["with a valid key", "without a key"])
def test_no_server_error_and_every_response_fits_the_document(
    gateway_url: str, api_key: tuple[Path, str], with_key: bool
) -> None:
    headers = {"Authorization": f"Bearer {api_key[1]}"} if with_key else {}
    # The event stream never ends by itself; it has its own tests.
    api = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json").exclude(path="/api/im/events")
    checked = 0
    for result in api.get_all_operations():
        operation = cast(Any, result).ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            response = case.call_and_validate(
                headers=headers, checks=[not_a_server_error, response_schema_conformance, content_type_conformance]
            )
            if not with_key:
                # The master asks who calls before anything else; only a request the gateway
                # cannot even parse is answered 400 without reaching it.
                assert response.status_code in (400, 401), (case.path, response.status_code)

        check()
        checked += 1
    assert checked >= 25
