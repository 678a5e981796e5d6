"""Logging an account in on the creator center's login page, relaying it to an operator.

The page shows a QR code (its answer from the platform carries the PNG and when it
expires) and polls whether it was scanned. The worker relays the code to the console
through its account status; when the code expires it asks the page for a new one, a
bounded number of times, then gives up saying why. After the scan the platform may ask for
a code sent by SMS: the prompt is relayed, the code an operator types comes back as a
command and is typed into the page; a wrong one is relayed back with the tries the
platform still allows, and too many make the platform start over with a new QR code.

The simulator's password form is a shortcut used only where a password is configured.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from google.protobuf.timestamp_pb2 import Timestamp
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from imsync.v1 import entities_pb2 as e

from ..adapter import LoginFailed, LoginOperator
from .capture import Capture
from .pages import CHECK_QRCODE, GET_QRCODE, LOGIN_PAGE, SMS_VERIFY, WORKS_PAGE, goto, on_login_page

EXPIRED, VERIFY = "5", "verify"
TOO_MANY_TRIES = 1203


@dataclass(frozen=True)
class LoginOptions:
    base_url: str
    # The simulator's password form (a shortcut); empty: log in by QR code.
    login_uid: str = ""
    login_password: str = ""
    # New QR codes asked for after the first expires, before giving up.
    qr_refreshes: int = 3
    # How long an operator may take to type a code sent by SMS.
    code_wait: float = 300.0
    page_timeout: float = 20.0


def _stamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _now() -> Timestamp:
    return _stamp(time.time())


async def password_login(page: Page, options: LoginOptions) -> None:
    await page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
    await page.select_option("select[name=uid]", options.login_uid)
    await page.fill("input[name=password]", options.login_password)
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_load_state()
    if on_login_page(page):
        raise LoginFailed("the login form refused the credentials")


async def log_in(page: Page, options: LoginOptions, operator: LoginOperator) -> None:
    """Logs the page's context in; returns once the page has left the login page."""
    flow = _QrFlow(page, options, operator)
    flow.capture.attach(page)  # before the login page loads: it asks for its code at once
    try:
        await goto(page, options.base_url.rstrip("/") + WORKS_PAGE)
        if not on_login_page(page):
            return  # the session is still good
        if options.login_uid:
            await password_login(page, options)
            return
        try:
            await flow.run()
        finally:
            operator.challenge(None)
    finally:
        flow.capture.detach(page)


class _QrFlow:
    def __init__(self, page: Page, options: LoginOptions, operator: LoginOperator) -> None:
        self.page = page
        self.options = options
        self.operator = operator
        self.capture = Capture()
        self.codes_shown = 0

    async def run(self) -> None:
        while True:
            qr = await self._next_qr()
            if qr is None:
                return  # logged in meanwhile
            token, png, expires = qr
            self.codes_shown += 1
            challenge = e.LoginChallenge(
                kind=e.LOGIN_CHALLENGE_KIND_QR_CODE,
                qr_png=png,
                expire_time=_stamp(expires),
                refreshes_left=max(0, self.options.qr_refreshes + 1 - self.codes_shown),
                update_time=_now(),
            )
            self.operator.challenge(challenge)
            outcome = await self._wait_for_scan(token, challenge)
            if outcome == "in":
                return
            if self.codes_shown > self.options.qr_refreshes:
                raise LoginFailed(
                    f"the QR code expired {self.codes_shown} times without being scanned; ask for a new login",
                    reason="LOGIN_EXPIRED",
                )
            if outcome == "expired":
                await self.page.locator(".qr-expired .refresh").click()
            # "restarted": the platform shows a new code by itself (too many wrong codes)

    async def _next_qr(self) -> tuple[str, bytes, float] | None:
        """The token, PNG and expiry of the next code the page was given (the page asks
        for its first one as it loads, and another after a refresh); None once logged in."""
        deadline = time.monotonic() + self.options.page_timeout
        while True:
            await self.capture.settle()
            answers = self.capture.bodies(GET_QRCODE)
            if len(answers) > self.codes_shown:
                data = answers[-1].get("data") or {}
                try:
                    return str(data["token"]), base64.b64decode(str(data["qrcode"])), float(data["expire_time"])
                except (KeyError, ValueError, TypeError):
                    raise LoginFailed("the login page's QR code could not be read") from None
            if not on_login_page(self.page):
                return None
            if time.monotonic() > deadline:
                raise LoginFailed("the login page showed no QR code")
            await asyncio.sleep(0.1)

    async def _wait_for_scan(self, token: str, challenge: e.LoginChallenge) -> str:
        """ "in" once logged in, "expired" when the code expired, "restarted" when the
        platform started over after wrong codes."""
        while True:
            if not on_login_page(self.page):
                await self.page.wait_for_load_state()
                return "in"
            await self.capture.settle()
            checks = self.capture.bodies(CHECK_QRCODE, token=token)
            data = (checks[-1].get("data") or {}) if checks else {}
            status = str(data.get("status", ""))
            if status == EXPIRED:
                return "expired"
            if status == "2" and not challenge.scanned:
                challenge.scanned = True
                challenge.update_time.CopyFrom(_now())
                self.operator.challenge(challenge)
            if status == VERIFY:
                return await self._sms_step(data)
            await asyncio.sleep(0.1)

    async def _left_login_page(self) -> bool:
        try:
            await self.page.wait_for_url(lambda url: LOGIN_PAGE not in url, timeout=self.options.page_timeout * 1000)
        except PlaywrightError:
            return False
        return True

    async def _sms_step(self, data: dict[str, object]) -> str:
        form = self.page.locator("#sms")
        await form.wait_for(state="visible")
        prompt = (
            await form.locator(".sms-prompt").text_content() or ""
        ).strip() or f"a code was sent to {data.get('mobile', '')}"
        tries = int(str(data.get("tries_left") or 0))
        error = ""
        while True:
            self.operator.challenge(
                e.LoginChallenge(
                    kind=e.LOGIN_CHALLENGE_KIND_SMS_CODE,
                    prompt=prompt,
                    tries_left=tries,
                    error=error,
                    expire_time=_stamp(time.time() + self.options.code_wait),
                    update_time=_now(),
                )
            )
            try:
                code = await self.operator.next_code(self.options.code_wait)
            except TimeoutError:
                raise LoginFailed(
                    f"nobody typed the code sent by SMS within {self.options.code_wait:g} s", reason="LOGIN_EXPIRED"
                ) from None
            await form.locator("input[name=code]").fill(code)
            async with self.page.expect_response(lambda r: urlparse(r.url).path == SMS_VERIFY) as verified:
                await form.locator("button[type=submit]").click()
            try:
                answer = await (await verified.value).json()
            except (PlaywrightError, ValueError):
                # Taken, most likely: the page went on at once, and its answer with it.
                answer = {"message": "success"} if await self._left_login_page() else {}
            if not isinstance(answer, dict):
                answer = {}
            if answer.get("message") == "success":
                self.operator.code_answered(True, "the platform took the code")
                await self.page.wait_for_url(
                    lambda url: LOGIN_PAGE not in url, timeout=self.options.page_timeout * 1000
                )
                return "in"
            detail = answer.get("data") or {}
            assert isinstance(detail, dict)
            error = str(detail.get("description") or "the platform refused the code")
            tries = int(detail.get("tries_left") or 0)
            self.operator.code_answered(False, error)
            if int(detail.get("error_code") or 0) == TOO_MANY_TRIES or tries <= 0:
                return "restarted"
