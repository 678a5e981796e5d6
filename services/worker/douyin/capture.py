"""The JSON answers a page received, with the query each was asked with, and what went
wrong with them: what a crawl reads, and how it knows a list was read to its end.

A list is read whole when the answer to its last page (the highest `cursor` asked)
says there is no more, and no answer of that list was unreadable or lost. Bodies are read
in tasks as the answers come; `settle()` waits for them, and must come before the page
goes elsewhere: Chromium drops a page's answers once it has navigated away.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlparse

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, Response

NOT_LOGGED_IN = 8
# Only the platform's JSON is kept.
_PREFIXES = ("/aweme/v1/", "/passport/")


@dataclass
class Answer:
    path: str
    params: dict[str, str]
    body: dict[str, Any]

    def matches(self, wanted: dict[str, str]) -> bool:
        return all(self.params.get(key) == value for key, value in wanted.items())


@dataclass
class Trouble:
    path: str
    params: dict[str, str]
    # "unreadable" (not JSON) or "lost" (gone before it was read).
    kind: str


@dataclass
class Capture:
    answers: list[Answer] = field(default_factory=list)
    troubles: list[Trouble] = field(default_factory=list)
    logged_out: bool = False
    pending: set[asyncio.Future[None]] = field(default_factory=set)

    def attach(self, page: Page) -> None:
        page.on("response", self._on_response)

    def detach(self, page: Page) -> None:
        page.remove_listener("response", self._on_response)

    def _on_response(self, response: Response) -> None:
        task = asyncio.ensure_future(self.read(response))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def read(self, response: Response) -> None:
        url = urlparse(response.url)
        if not url.path.startswith(_PREFIXES):
            return
        params = dict(parse_qsl(url.query))
        try:
            raw = await response.body()
        except PlaywrightError:
            # The page navigated away before the answer was read: what it held is unknown.
            self.troubles.append(Trouble(url.path, params, "lost"))
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            self.troubles.append(Trouble(url.path, params, "unreadable"))
            return
        if body.get("status_code") == NOT_LOGGED_IN:
            self.logged_out = True
        self.answers.append(Answer(url.path, params, body))

    async def settle(self) -> None:
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)

    def forget(self) -> None:
        self.answers.clear()
        self.troubles.clear()
        self.logged_out = False

    # ------------------------------------------------------------------ reading

    def bodies(self, path: str, **wanted: str) -> list[dict[str, Any]]:
        return [answer.body for answer in self.answers if answer.path == path and answer.matches(wanted)]

    def items(self, path: str, key: str, **wanted: str) -> list[dict[str, Any]]:
        return [
            item for body in self.bodies(path, **wanted) for item in (body.get(key) or []) if isinstance(item, dict)
        ]

    def trouble(self, path: str, **wanted: str) -> str:
        """What went wrong with the answers of a list, or ""."""
        found = [t for t in self.troubles if t.path == path and all(t.params.get(k) == v for k, v in wanted.items())]
        if not found:
            return ""
        unreadable = sum(t.kind == "unreadable" for t in found)
        lost = len(found) - unreadable
        parts = [f"{unreadable} unreadable answer(s)"] * bool(unreadable) + [
            f"{lost} answer(s) gone before they were read"
        ] * bool(lost)
        return " and ".join(parts)

    def ended(self, path: str, **wanted: str) -> bool:
        """Whether the list was read to its last page, every answer of it intact."""
        if self.trouble(path, **wanted):
            return False
        answers = [a for a in self.answers if a.path == path and a.matches(wanted)]
        if not answers:
            return False
        last = max(answers, key=lambda answer: _cursor(answer.params))
        return last.body.get("status_code", 0) == 0 and not last.body.get("has_more")

    def unread_pages(self, path: str, **wanted: str) -> str:
        """Why `ended` is False, in words: "" when it is True."""
        if trouble := self.trouble(path, **wanted):
            return trouble
        if not self.bodies(path, **wanted):
            return "no answer came"
        if not self.ended(path, **wanted):
            return "its last page never came"
        return ""


def _cursor(params: dict[str, str]) -> int:
    try:
        return int(params.get("cursor", "0"))
    except ValueError:
        return 0
