"""Logins through the console, on the demo's processes with one account the worker logs in
by QR code: the console shows the code, a phone (the test, reading the image as a phone
would) scans it, and the account syncs without a restart of the worker; the same with the
platform's SMS step, the code typed into the console (a wrong one first); an expired code
is refreshed, and after the refresh limit the account says why it is not logged in, until
an operator asks for a new login. A partial crawl shows too. Screenshots go to
test-artifacts/console/."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import zxingcpp
from PIL import Image

from . import waiting
from .demo_processes import DemoProcesses

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts" / "console"
WIDE = {"width": 1366, "height": 800}
NARROW = {"width": 420, "height": 860}


async def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    return await waiting.eventually(check, timeout=timeout, every=0.3, ignoring=(httpx.HTTPError, KeyError, IndexError))


@pytest_asyncio.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoProcesses]:
    running = DemoProcesses(tmp_path, by_qr=frozenset({"shop-1"}))
    try:
        await running.start()
        yield running
    finally:
        await running.stop()


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    from services.worker.browser import launch_options

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(**launch_options())
        try:
            yield launched
        finally:
            await launched.close()


async def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def token_in(png: bytes) -> str:
    """What the account's phone reads off the QR code the console shows."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert found, "the console shows no readable QR code"
    return str(found[0].text).split("token=")[1]


async def test_logins_through_the_console(demo: DemoProcesses, browser: Any) -> None:
    uid = demo.uid_of("shop-1")
    async with (
        httpx.AsyncClient(base_url=demo.base, timeout=30) as http,
        httpx.AsyncClient(base_url=demo.platform, timeout=10) as platform,
    ):

        async def account() -> dict[str, Any]:
            user: dict[str, Any] = (await http.get("/api/im/accounts/shop-1")).json()["data"]["user"]
            return user

        async def synced() -> bool:
            user = await account()
            return int(user["version"]) > 0 and user["login_state"] == "logged_in" and user["crawl_state"] == "whole"

        page = await browser.new_page(viewport=WIDE)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(demo.base + "/")
        entry = page.locator('.account[data-account="shop-1"]')
        await entry.locator(".health", has_text="Log in waiting").wait_for(timeout=60_000)
        await entry.click()

        # 1. The QR code, shown in the console, scanned by the phone: the account syncs.
        qr = page.locator("img.qr-code")
        await qr.wait_for(timeout=30_000)
        await page.locator(".login-panel .expiry", has_text="expires in").wait_for()
        await shoot(page, "login-qr")
        png = base64.b64decode((await qr.get_attribute("src") or "").split(",", 1)[1])
        assert (await platform.post("/__sim/scan", json={"token": token_in(png), "uid": uid})).status_code == 200
        await eventually(synced)
        await page.locator(".detail .health-line", has_text="Healthy").wait_for(timeout=30_000)
        await entry.locator(".health", has_text="Healthy").wait_for()
        truth = (await platform.get("/__sim/truth", params={"uid": uid})).json()
        listed = (await http.get("/api/im/messages", params={"account_id": "shop-1", "count": "100"})).json()["data"][
            "messages"
        ]
        assert {m["message_id"] for m in listed} == {m["server_id"] for m in truth["messages"]}
        await shoot(page, "account-healthy")

        # 2. Logged out again; this time the platform asks for a code sent by SMS after the scan.
        await platform.post("/__sim/login", json={"sms_uids": [uid], "sms_tries": 3})
        await platform.post("/__sim/faults", json={"expire_sessions": True})
        await qr.wait_for(timeout=60_000)
        png = base64.b64decode((await qr.get_attribute("src") or "").split(",", 1)[1])
        await platform.post("/__sim/scan", json={"token": token_in(png), "uid": uid})
        code_box = page.locator(".code-form input[name=code]")
        await code_box.wait_for(timeout=30_000)
        await shoot(page, "login-sms")
        # Half typed when the panel is drawn again (here by a change of language; an event
        # of the account does the same): the digits stay.
        await code_box.press_sequentially("00")
        await page.locator("#language").select_option("zh-CN")
        await page.locator("#language").select_option("en")
        await page.locator(".code-form button", has_text="Send").wait_for()
        assert await code_box.input_value() == "00"
        await code_box.fill("000001")
        await page.locator(".code-form button").click()
        await page.locator(".login-panel .login-error", has_text="验证码错误").wait_for(timeout=30_000)
        await page.locator(".login-panel", has_text="2 tries left").wait_for()
        await shoot(page, "login-sms-wrong-code")
        code = (await platform.get("/__sim/sms", params={"uid": uid})).json()["codes"][-1]
        assert code != "000001"
        await page.locator(".code-form input[name=code]").fill(code)
        await page.locator(".code-form button").click()
        await eventually(synced)
        await page.locator(".detail .health-line", has_text="Healthy").wait_for(timeout=30_000)

        # 3. Nobody scans: each code expires, the worker asks for new ones a bounded number of
        #    times, then says why the account is not logged in; an operator asks for a new one.
        await platform.post("/__sim/login", json={"sms_uids": [], "qr_ttl_s": 1.0})
        await platform.post("/__sim/faults", json={"expire_sessions": True})

        async def gave_up() -> bool:
            user = await account()
            return (
                user["login_state"] == "logged_out"
                and user["last_error_reason"] == "LOGIN_EXPIRED"
                and "expired" in user["last_error"]
            )

        await eventually(gave_up)
        await entry.locator(".health", has_text="Logged out").wait_for()
        await page.locator(".login-panel", has_text="expired 4 times").wait_for(timeout=30_000)
        await shoot(page, "login-gave-up")
        narrow = await browser.new_page(viewport=NARROW)
        await narrow.goto(demo.base + "/")
        await narrow.locator('.account[data-account="shop-1"]').click()
        await narrow.locator(".account-alert", has_text="Logged out").wait_for(timeout=30_000)
        await shoot(narrow, "login-gave-up-narrow")
        await narrow.close()
        await platform.post("/__sim/login", json={"qr_ttl_s": 120})
        await page.locator(".login-panel button", has_text="Ask for a new QR code").click()
        await qr.wait_for(timeout=60_000)
        png = base64.b64decode((await qr.get_attribute("src") or "").split(",", 1)[1])
        await platform.post("/__sim/scan", json={"token": token_in(png), "uid": uid})
        await eventually(synced)

        # 4. A partial crawl is never shown as healthy.
        await platform.post("/__sim/faults", json={"broken": "/aweme/v1/web/notice/"})

        async def partial() -> bool:
            user = await account()
            return user["crawl_state"] == "partial" and any(c["missed"] for c in user["collections"])

        await eventually(partial)
        await entry.locator(".health", has_text="Partial crawl").wait_for(timeout=30_000)
        await page.locator(".collections tr.missed", has_text="Notifications").wait_for(timeout=30_000)
        await shoot(page, "account-partial-crawl")
        await platform.post("/__sim/faults", json={"broken": ""})
        await eventually(synced)
        assert not errors, errors
