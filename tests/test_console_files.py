"""The gateway serves the web console's files, and only them, with a strict CSP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from services.gateway.app import create_app
from services.gateway.console import CONSOLE_DIR

from .conftest import Master


@pytest_asyncio.fixture
async def console(master: Master) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(channel=master.channel, console=CONSOLE_DIR)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as client:
        yield client


async def test_the_console_is_served_at_the_root_with_a_strict_policy(console: httpx.AsyncClient) -> None:
    index = await console.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    policy = index.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
    # Every script and stylesheet the page names is served, from the gateway itself.
    for path in re.findall(r'(?:src|href)="(/assets/[^"]+)"', index.text):
        asset = await console.get(path)
        assert asset.status_code == 200, path
        assert asset.headers["x-content-type-options"] == "nosniff"
    script = await console.get("/assets/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    # The modules import each other by relative path: all of them are there.
    for module in re.findall(r'from "\./([\w.]+)"', script.text):
        assert (await console.get(f"/assets/{module}")).status_code == 200, module


async def test_nothing_else_is_served_and_the_api_is_untouched(console: httpx.AsyncClient) -> None:
    for path in ("/assets/README.md", "/assets/../pyproject.toml", "/assets/%2e%2e/pyproject.toml", "/assets/nope.js"):
        assert (await console.get(path)).status_code == 404, path
    api = await console.get("/api/im/accounts")
    assert api.status_code == 200 and api.json()["status_code"] == 0
    assert "content-security-policy" not in api.headers
