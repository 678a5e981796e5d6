"""The platform simulator: creator-center pages, the JSON their scripts load, the message
push of the chat page, and the QR login (`login.py`).

Run with `imsync sim`. Pages need a session cookie and send the browser to /login without
one; the JSON endpoints then answer status_code 8. The pages behave as the platform's do:
lists load as they are scrolled, a comment's replies load a page per click of a button
that goes away once used, the chat page is one page whose conversations open in place
and which receives new messages through its socket (`live.py`).

For tests: `/__sim/truth` shows what the platform holds; `/__sim/faults` makes it
misbehave on purpose (slow, malformed or truncated JSON, one endpoint's answers broken, an
expired session, a page that never finishes loading, a push that loses its frames);
`/__sim/sessions` counts logins and the chat pages open per account; `/__sim/tick` makes a random customer act, `/__sim/pause` stops them acting by
themselves, and `/__sim/customer` makes a given one write (a message, a comment, or a reply
under a comment); `/__sim/private` makes a work private (replies under it are refused) or
public; `/__sim/scan`, `/__sim/sms` and `/__sim/login` play the account's phone
(`login.py`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from . import creator_api, live, login
from .login import SESSION_COOKIE, Logins
from .platform_data import Platform

__all__ = ["SESSION_COOKIE", "Simulator", "build_app"]

_STATIC = Path(__file__).parent / "static"


@dataclass
class Faults:
    slow_ms: int = 0
    malformed: bool = False
    truncated: bool = False
    hang: bool = False
    # The chat page's socket loses every frame.
    drop_push: bool = False
    # Answers of JSON endpoints whose path starts with this are cut short ("" for none).
    broken: str = ""


def _alive(pid: str) -> bool:
    """Whether the process runs (a zombie holds no sockets any more)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _ancestors(browser: str) -> list[int]:
    """The parents of a browser's process, nearest first (which worker's Chromium it is)."""
    found: list[int] = []
    pid = browser[4:] if browser.startswith("pid ") else ""
    while pid.isdigit() and int(pid) > 1 and len(found) < 6:
        try:
            with open(f"/proc/{pid}/status") as status:
                pid = next((line.split()[1] for line in status if line.startswith("PPid:")), "")
        except OSError:
            break
        if pid.isdigit():
            found.append(int(pid))
    return found


class Simulator:
    def __init__(self, platform: Platform, *, rate_per_minute: float = 0.0) -> None:
        self.platform = platform
        self.rate_per_minute = rate_per_minute
        # Set: customers stop acting by themselves (POST /__sim/pause).
        self.paused = False
        self.sessions: dict[str, str] = {}  # token -> uid
        self.logins = Logins()
        # Per account: logins completed; the browsers holding its chat page open now (pages
        # per browser), and the most browsers ever at once (a worker running an account
        # keeps its chat page open: two browsers at once are two workers on one account).
        # GET /__sim/sessions shows them.
        self.login_count: Counter[str] = Counter()
        self.live_now: dict[str, Counter[str]] = {}
        self.live_max: Counter[str] = Counter()
        # When two browsers held one account's chat page at once, and which.
        self.overlaps: list[dict[str, Any]] = []
        self.faults = Faults()
        # Set while `hang` is off: hung requests wait for it, and go on once it is turned off.
        self.unhung = asyncio.Event()
        self.unhung.set()

    def open_pages(self, uid: str, browser: str, change: int) -> None:
        pages = self.live_now.setdefault(uid, Counter())
        pages[browser] += change
        if pages[browser] <= 0:
            del pages[browser]
        if len(pages) > 1:
            # A browser whose process is gone holds nothing, though the close of its socket
            # may not have been read here yet (a busy simulator; a Chromium that crashed,
            # or whose network service restarted, and opened the page again).
            for gone in [b for b in pages if b.startswith("pid ") and not _alive(b[4:])]:
                del pages[gone]
        self.live_max[uid] = max(self.live_max[uid], len(pages))
        if len(pages) > 1 and len(self.overlaps) < 100:
            self.overlaps.append(
                {
                    "uid": uid,
                    "at": time.time(),
                    "browsers": sorted(pages),
                    "ancestors": {b: _ancestors(b) for b in pages},
                }
            )

    def uid_of(self, request: Request) -> str | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE, ""))

    async def grow_forever(self) -> None:
        if self.rate_per_minute <= 0:
            return
        while True:
            await asyncio.sleep(60.0 / self.rate_per_minute)
            if not self.paused:
                self.platform.tick(int(time.time()))

    async def misbehave(self) -> None:
        if self.faults.hang:
            await self.unhung.wait()
        if self.faults.slow_ms:
            await asyncio.sleep(self.faults.slow_ms / 1000)

    def json(self, payload: dict[str, Any], path: str = "") -> Response:
        body = _encode(payload)
        if self.faults.broken and path.startswith(self.faults.broken):
            body = body[: len(body) // 2]
        elif self.faults.malformed:
            body = b'{"status_code": 0, "item_info_list": [{"item_id": '
        elif self.faults.truncated:
            body = body[: len(body) // 2]
        return Response(body, media_type="application/json")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _encode(payload: Any) -> bytes:
    """JSON as UTF-8, a lone surrogate written as its \\ud800 escape (as a JavaScript
    platform's JSON.stringify writes it; UTF-8 cannot carry it)."""
    text = json.dumps(payload, ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text).encode()


_NAV = (
    '<nav><a href="/creator-micro/content/manage">作品管理</a> <a href="/creator-micro/interactive/comment">评论管理</a>'
    ' <a href="/creator-micro/data/following/chat">私信</a> <a href="/creator-micro/interactive/notice">通知</a></nav>'
)


def _page(title: str, body: str, script: str) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)} - 创作者中心</title>
<link rel="stylesheet" href="/static/sim.css"></head><body>{_NAV}<main>{body}</main>
<script src="/static/api.js"></script><script src="/static/{script}"></script></body></html>"""
    )


def _control_routes(simulator: Simulator) -> list[Route]:
    platform = simulator.platform

    async def truth(request: Request) -> Response:
        uid = request.query_params.get("uid", "")
        if uid not in platform.accounts:
            return JSONResponse({"accounts": list(platform.accounts)}, status_code=404 if uid else 200)
        return Response(_encode(platform.truth(uid)), media_type="application/json")

    async def sessions(request: Request) -> Response:
        return JSONResponse(
            {
                "logins": dict(simulator.login_count),
                "live": {uid: len(pages) for uid, pages in simulator.live_now.items() if pages},
                "max_live": dict(simulator.live_max),
                "overlaps": simulator.overlaps,
            }
        )

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            wanted = await request.json()
            if wanted.pop("expire_sessions", False):
                simulator.sessions.clear()
            for key, value in wanted.items():
                if hasattr(simulator.faults, key):
                    setattr(simulator.faults, key, type(getattr(simulator.faults, key))(value))
            if simulator.faults.hang:
                simulator.unhung.clear()
            else:
                simulator.unhung.set()
        return JSONResponse(vars(simulator.faults))

    async def tick(request: Request) -> Response:
        platform.tick(int(time.time()))
        return JSONResponse({"ok": True})

    async def pause(request: Request) -> Response:
        simulator.paused = bool((await request.json()).get("paused", True))
        return JSONResponse({"paused": simulator.paused})

    async def customer(request: Request) -> Response:
        wanted = await request.json()
        account = platform.accounts.get(wanted.get("uid"))
        parent = str(wanted.get("parent", ""))
        if account is None or wanted.get("kind") not in ("message", "comment", "reply"):
            return JSONResponse(
                {"error": "uid: an account of this simulator; kind: message, comment or reply"}, status_code=400
            )
        if wanted["kind"] == "reply" and account.comments.get(parent, {}).get("reply_id") != "0":
            return JSONResponse({"error": "parent: a top-level comment of the account"}, status_code=400)
        written = platform.customer_writes(
            wanted["uid"], wanted["kind"], str(wanted.get("text", "")), int(time.time()), parent=parent
        )
        return Response(_encode(written), media_type="application/json")

    async def set_private(request: Request) -> Response:
        wanted = await request.json()
        account = platform.accounts.get(wanted.get("uid"))
        work = account.work(str(wanted.get("item_id"))) if account is not None else None
        if work is None:
            return JSONResponse({"error": "uid and item_id: a work of an account of this simulator"}, status_code=400)
        work["is_private"] = bool(wanted.get("is_private", True))
        return JSONResponse(work)

    return [
        Route("/__sim/truth", truth),
        Route("/__sim/sessions", sessions),
        Route("/__sim/faults", faults, methods=["GET", "POST"]),
        Route("/__sim/tick", tick, methods=["POST"]),
        Route("/__sim/pause", pause, methods=["POST"]),
        Route("/__sim/customer", customer, methods=["POST"]),
        Route("/__sim/private", set_private, methods=["POST"]),
    ]


def build_app(simulator: Simulator) -> Starlette:
    def page(title: str, body: str, script: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            await simulator.misbehave()
            if simulator.uid_of(request) is None:
                return RedirectResponse("/login", status_code=302)
            return _page(title, body, script)

        return endpoint

    works = page("作品管理", '<ul id="works"></ul>', "works.js")
    routes: list[BaseRoute] = [
        Route("/", works),
        Route("/creator-micro/content/manage", works),
        Route(
            "/creator-micro/interactive/comment",
            page("评论管理", '<select id="work"></select><ul id="comments"></ul>', "comments.js"),
        ),
        Route(
            "/creator-micro/data/following/chat",
            page("私信", '<div id="im"><ul id="conversations"></ul><section id="chat"></section></div>', "chat.js"),
        ),
        Route("/creator-micro/interactive/notice", page("通知", '<ul id="notices"></ul>', "notices.js")),
        *login.routes(simulator),
        *creator_api.routes(simulator),
        *live.routes(simulator),
        *_control_routes(simulator),
        Mount("/static", StaticFiles(directory=_STATIC)),
    ]
    return Starlette(routes=routes)
