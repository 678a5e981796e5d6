"""A page served from another origin, in Chromium, calls the gateway through CORS: it reads
the API (a preflighted call with a JSON Content-Type, and a PUT), reads the headers worth
reading, and follows events over SSE. A page of an origin not allowed gets nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import async_playwright
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from services.common.http_server import serve_asgi
from services.common.sample import SampleAccount
from services.gateway.app import create_app
from services.worker.browser import launch_options

from .conftest import NOW, Master, push_all

pytestmark = pytest.mark.e2e

PAGE = """<!doctype html><meta charset="utf-8"><title>another app</title>
<script>
window.events = [];
window.read = async (base, account) => {
  const out = {};
  try {
    const listed = await fetch(`${base}/api/im/conversations?account_id=${account}`, {
      headers: {"Content-Type": "application/json", "X-Request-Id": "from-another-origin"},
    });
    out.status = listed.status;
    out.count = (await listed.json()).data.conversations.length;
    out.etag = listed.headers.get("ETag");
    out.requestId = listed.headers.get("X-Request-Id");
    const id = (await (await fetch(`${base}/api/im/conversations?account_id=${account}`)).json()).data.conversations[0].conversation_id;
    const marked = await fetch(`${base}/api/im/conversations/${id}/read`, {
      method: "PUT", headers: {"Content-Type": "application/json"}, body: JSON.stringify({account_id: account}),
    });
    out.marked = marked.status;
  } catch (error) {
    out.error = String(error);
  }
  return out;
};
window.follow = (base) => {
  const source = new EventSource(`${base}/api/im/events?types=new_message`);
  source.onmessage = (message) => window.events.push(JSON.parse(message.data));
  source.onerror = () => window.events.push({error: source.readyState});
};
</script>"""


async def _serve(app: Any, stop: asyncio.Event) -> tuple[str, asyncio.Task[None]]:
    bound: list[str] = []

    def announce(address: str) -> str:
        bound.append(address)
        return f"serving on {address}"

    task = asyncio.create_task(serve_asgi(app, "127.0.0.1:0", announce, lifespan="off", stop=stop))
    while not bound:
        await asyncio.sleep(0.01)
    return f"http://{bound[0]}", task


class Origins:
    def __init__(self, gateway: str, allowed: str, other: str) -> None:
        self.gateway, self.allowed, self.other = gateway, allowed, other


@pytest_asyncio.fixture
async def origins(master: Master) -> AsyncIterator[Origins]:
    stop = asyncio.Event()

    async def page(_request: Any) -> HTMLResponse:
        return HTMLResponse(PAGE)

    pages = Starlette(routes=[Route("/", page)])
    allowed, allowed_task = await _serve(pages, stop)
    other, other_task = await _serve(pages, stop)
    gateway_app = create_app(channel=master.channel, cors_origins=[allowed])
    gateway, gateway_task = await _serve(gateway_app, stop)
    try:
        yield Origins(gateway, allowed, other)
    finally:
        stop.set()
        await asyncio.gather(allowed_task, other_task, gateway_task)


async def test_a_page_of_an_allowed_origin_reads_and_follows_events_and_another_gets_nothing(
    master: Master, origins: Origins, accounts: list[SampleAccount]
) -> None:
    sync = await push_all(master, accounts)
    account = accounts[0]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(**launch_options())
        try:
            page = await browser.new_page()
            await page.goto(origins.allowed)
            read = await page.evaluate(
                "([base, account]) => window.read(base, account)", [origins.gateway, account.account_id]
            )
            assert read.get("error") is None, read
            assert read["status"] == 200 and read["count"] == len(account.batch.conversations)
            assert read["etag"] and read["requestId"] == "from-another-origin", "exposed headers are readable"
            assert read["marked"] == 200, "a PUT with a JSON body passes its preflight"

            await page.evaluate("(base) => window.follow(base)", origins.gateway)
            await asyncio.sleep(0.5)  # the stream is open before the message arrives
            account.grow(NOW + 60)
            assert await sync.push_snapshot(account.account_id, 2, account.account, account.batch) == 2
            await page.wait_for_function(
                "window.events.some((e) => e.event && e.event.type === 'new_message')", timeout=15_000
            )

            stranger = await browser.new_page()
            await stranger.goto(origins.other)
            refused = await stranger.evaluate(
                "([base, account]) => window.read(base, account)", [origins.gateway, account.account_id]
            )
            assert "Failed to fetch" in refused.get("error", ""), refused
            await stranger.evaluate("(base) => window.follow(base)", origins.gateway)
            await stranger.wait_for_function("window.events.length > 0", timeout=15_000)
            assert await stranger.evaluate("window.events.every((e) => e.error !== undefined)")
        finally:
            await browser.close()
            await sync.close()


async def test_preflights_say_what_is_allowed(master: Master, origins: Origins) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=origins.gateway) as http:
        ok = await http.options(
            "/api/im/conversations",
            headers={
                "Origin": origins.allowed,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type, authorization, grpc-metadata-tenant",
            },
        )
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == origins.allowed
        assert "PUT" in ok.headers["access-control-allow-methods"]
        assert ok.headers["access-control-allow-headers"] == "content-type, authorization, grpc-metadata-tenant"
        assert ok.headers["access-control-max-age"] == "600" and ok.headers["vary"] == "Origin"
        stranger = await http.options(
            "/api/im/conversations", headers={"Origin": origins.other, "Access-Control-Request-Method": "GET"}
        )
        assert stranger.status_code == 403 and "access-control-allow-origin" not in stranger.headers
        odd = await http.options(
            "/api/im/conversations",
            headers={
                "Origin": origins.allowed,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-evil",
            },
        )
        assert odd.status_code == 403
        plain = await http.get("/api/im/accounts", headers={"Origin": origins.other})
        assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
