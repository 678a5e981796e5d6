"""Hostile text and API keys in the console, on the demo's processes in Chromium.

Customers on the platform write whatever they like. Comments holding a script, an image
whose onerror runs code, 100 KB of text, a right-to-left override and a lone surrogate
must be stored, come back intact through the API (the lone surrogate as U+FFFD: protobuf
strings are Unicode), and show as inert text in the console: no script runs and no
request leaves for another host. The console asks for an API key when the master wants
one, and a key of one account shows that account only.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from services.master.auth.api_keys import create_api_key

from . import waiting
from .demo_processes import DemoProcesses
from .test_e2e_console import ARTIFACTS, WIDE, browser  # noqa: F401  (a fixture)

pytestmark = pytest.mark.e2e

HOSTILE = {
    "script": '<script>window.__pwned = "script"</script>',
    "img": "<img src=x onerror=\"window.__pwned = 'img'\">",
    "big": "长" * 33_000 + "x" * 1_000,  # about 100 KB of UTF-8
    "rtl": "\u202eevil.exe\u202c txt",
    "surrogate": "lone \ud800 surrogate",
}


@pytest_asyncio.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[DemoProcesses, str]]:
    """The demo's processes with a master that wants API keys, and a key for shop-0 only."""
    keys = tmp_path / "api-keys.toml"
    key = create_api_key(keys, "shop-0-team", ["shop-0"], ["read", "reply"])
    demo = DemoProcesses(tmp_path, master_args=["--api-keys", str(keys)])
    try:
        await demo.start()
        yield demo, key
    finally:
        await demo.stop()


async def test_hostile_comments_are_stored_intact_and_shown_inert(
    running: tuple[DemoProcesses, str],
    browser: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    demo, key = running
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=demo.base, timeout=30, headers=headers) as http,
        httpx.AsyncClient(base_url=demo.platform, timeout=30) as platform,
    ):
        assert (await http.get("/api/im/accounts", headers={"Authorization": ""})).status_code == 401
        for label, text in HOSTILE.items():
            response = await platform.post(
                "/__sim/customer",
                content=_json_with_escapes({"uid": demo.uids[0], "kind": "comment", "text": f"[{label}] {text}"}),
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 200, response.text

        async def stored() -> dict[str, str] | None:
            found: dict[str, str] = {}
            cursor = ""
            while True:
                data = (
                    await http.get(
                        "/api/im/discussions", params={"account_id": "shop-0", "count": "100", "cursor": cursor}
                    )
                ).json()["data"]
                for comment in data["discussions"]:
                    if (label := re.match(r"\[(\w+)\] ", comment["content"])) is not None:
                        found[label.group(1)] = comment["content"][len(label.group(0)) :]
                if not data["has_more"]:
                    break
                cursor = data["cursor"]
            return found if len(found) == len(HOSTILE) else None

        found = await waiting.eventually(stored, timeout=60, every=0.5, ignoring=(httpx.HTTPError, KeyError))
        for label, text in HOSTILE.items():
            expected = text.replace("\ud800", "\ufffd")
            assert found[label] == expected, label

        # The console: a key is asked for, then only its account is shown.
        stranger_hosts: list[str] = []
        page = await browser.new_page(viewport=WIDE)
        page.on(
            "request", lambda request: None if request.url.startswith(demo.base) else stranger_hosts.append(request.url)
        )
        refused: list[str] = []
        page.on("response", lambda response: refused.append(response.url) if response.status == 401 else None)
        await page.goto(demo.base + "/")
        await page.locator("#api-key").wait_for()
        # Asked once who this is, and nothing more until a key is given: it used to open the
        # event stream too, and ask for it again every 2 s while the key was being typed.
        await page.wait_for_timeout(2500)
        assert [urlsplit(url).path for url in refused] == ["/api/im/me"], refused
        assert await page.locator("#connection").get_attribute("data-state") == "locked"
        await page.locator("#api-key").fill(key)
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#connection[data-state=live]")
        # Live once its event stream is open, which comes before the accounts are listed.
        await page.locator(".account .name").nth(1).wait_for()
        names = await page.locator(".account .name").all_inner_texts()
        assert len(names) == 2 and names[0] == "All accounts", names  # "all" and shop-0 alone

        # The inbox by thread shows them inert, and so does a comment thread opened.
        row = page.locator('#list [role=option][data-kind="comment"]', has_text="[script]").first
        await row.click(timeout=30_000)
        shown_in_thread = page.locator(".thread .comment .text", has_text="[script]").first
        assert await shown_in_thread.inner_text() == f"[script] {HOSTILE['script']}"
        assert await page.locator("#detail img, #list img").count() == 0, "markup stayed text"
        assert await page.evaluate("window.__pwned") is None, "no script ran"

        await page.locator("[role=tab][data-view=inbox]").click()
        await page.get_by_role("button", name="Comments").click()
        for label in HOSTILE:
            await page.locator("#list [role=option]", has_text=f"[{label}]").first.wait_for(timeout=30_000)
        await page.locator("#list [role=option]", has_text="[script]").first.click()
        await page.locator(".comments").wait_for()
        for label, text in HOSTILE.items():
            article = page.locator(".comment", has_text=f"[{label}]").first
            shown = await article.locator(".text").inner_text()
            assert shown == f"[{label}] {text.replace(chr(0xD800), chr(0xFFFD))}", label
        assert await page.locator(".comments img").count() == 0, "markup stayed text"
        assert await page.evaluate("window.__pwned") is None, "no script ran"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "wide-hostile-comments.png"))
        assert not stranger_hosts, stranger_hosts


def _json_with_escapes(payload: dict[str, str]) -> bytes:
    """JSON with a lone surrogate as its \\ud800 escape (Python's own encoder cannot write it as UTF-8)."""
    import json

    return json.dumps(payload, ensure_ascii=True).encode()
