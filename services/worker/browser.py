"""How imsync runs Chromium through Playwright: one browser per worker process, a context
per account with its storage state (cookies, local storage) in a file of its own.

A context costs a few megabytes where a browser of its own costs a hundred or more (the
worker's benchmark, `bench/worker_memory.py`); accounts stay apart as separate browser
profiles would, since contexts share nothing. Pages are opened for a task and closed after
it. A browser that crashes or disconnects is started again on next use, and every
context with it, from the storage states on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Without the networking flags Chromium keeps calling home, and on a closed network it
# fails loudly doing so.
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """IMSYNC_CHROMIUM, else Debian's /usr/bin/chromium, else None (Playwright's own build)."""
    wanted = os.environ.get("IMSYNC_CHROMIUM")
    if wanted:
        return wanted
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def launch_options(*, headless: bool = True) -> dict[str, Any]:
    options: dict[str, Any] = {"headless": headless, "args": list(CHROMIUM_FLAGS)}
    path = chromium_path()
    if path is not None:
        options["executable_path"] = path
    return options


# How long Chromium may take over a step of its own (a context, a page, closing, saving a
# session): Playwright bounds navigations, not these, and a call in flight when the browser
# dies may never be answered. A step over it fails like any browser error, and the
# account's next step starts again (with a new browser when this one is gone).
STEP_SECONDS = 30.0


async def _bounded(step: Awaitable[T], what: str, seconds: float = STEP_SECONDS) -> T:
    try:
        async with asyncio.timeout(seconds):
            return await step
    except TimeoutError:
        raise PlaywrightError(f"Chromium did not {what} within {seconds:g} s") from None


async def new_page(context: BrowserContext) -> Page:
    return await _bounded(context.new_page(), "open a page")


async def close_page(page: Page) -> None:
    with contextlib.suppress(PlaywrightError):
        await _bounded(page.close(), "close a page")


class BrowserPool:
    """The worker's one Chromium and its accounts' contexts."""

    def __init__(self, *, headless: bool = True, page_timeout: float = 20.0) -> None:
        self.headless = headless
        self.page_timeout = page_timeout
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._contexts: dict[str, tuple[BrowserContext, Path]] = {}
        self._starting = asyncio.Lock()
        self.launches = 0
        self._closing = False
        # Told each time an account's session is written to its file (a scheduled worker
        # uploads it to the master: worker/fleet.py).
        self.on_saved: Callable[[str, Path], None] | None = None

    async def browser(self) -> Browser:
        async with self._starting:
            if self._browser is None or not self._browser.is_connected():
                if self._playwright is None:
                    self._playwright = await async_playwright().start()
                self._contexts.clear()  # they went with the browser
                self._browser = await self._playwright.chromium.launch(**launch_options(headless=self.headless))
                self._browser.on("disconnected", self._disconnected)
                self.launches += 1
            return self._browser

    def _disconnected(self, browser: Browser) -> None:
        if browser is self._browser:
            # Ctrl-C reaches Chromium (same process group) as soon as the worker: news only
            # if the worker is not stopping a moment later.
            asyncio.get_running_loop().call_later(1.0, self._report_gone)

    def _report_gone(self) -> None:
        if not self._closing:
            log.warning("Chromium went away; it starts again on next use")

    async def context(self, account_id: str, storage: Path) -> BrowserContext:
        """The account's context, made from its storage state on disk when it has none."""
        browser = await self.browser()
        held = self._contexts.get(account_id)
        if held is not None and held[0].browser is browser:
            return held[0]
        context = await _bounded(
            browser.new_context(
                storage_state=str(storage) if storage.is_file() else None,  # noqa: ASYNC240 (one stat of a local file)
                locale="zh-CN",
                viewport={"width": 1280, "height": 900},
            ),
            "make a context",
        )
        context.set_default_timeout(self.page_timeout * 1000)
        context.on("close", lambda _: self._forget(account_id, context))
        self._contexts[account_id] = (context, storage)
        return context

    def _forget(self, account_id: str, context: BrowserContext) -> None:
        held = self._contexts.get(account_id)
        if held is not None and held[0] is context:
            del self._contexts[account_id]

    async def save(self, account_id: str) -> None:
        """Writes the account's storage state to its file (whole or not at all), readable
        by this user only: it holds the platform session."""
        held = self._contexts.get(account_id)
        if held is None:
            return
        context, storage = held
        if context.browser is None or not context.browser.is_connected():
            return  # Chromium went first (Ctrl-C reaches its process group too): the file stays as it was
        storage.parent.mkdir(parents=True, exist_ok=True)
        partial = storage.with_name(storage.name + ".partial")
        try:
            await _bounded(context.storage_state(path=str(partial)), "save the session")
        except PlaywrightError as error:
            said = str(error).splitlines()[0]
            if "has been closed" in said:
                # Chromium closed between the check above and the save (a stop reaching
                # its process group): the file stays as it was, which is no failure.
                log.info("the session of %s was not saved again: Chromium had closed", account_id)
            else:
                log.warning("could not save the session of %s: %s", account_id, said)
            return
        os.chmod(partial, 0o600)
        os.replace(partial, storage)
        if self.on_saved is not None:
            self.on_saved(account_id, storage)

    async def discard(self, account_id: str) -> None:
        """Closes the account's context (its next one starts from the file)."""
        held = self._contexts.pop(account_id, None)
        if held is not None:
            with contextlib.suppress(PlaywrightError):
                await _bounded(held[0].close(), "close a context")

    async def close(self) -> None:
        self._closing = True
        for account_id in list(self._contexts):
            await self.discard(account_id)
        browser, self._browser = self._browser, None
        if browser is not None:
            with contextlib.suppress(PlaywrightError):
                await _bounded(browser.close(), "close")
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None
