"""The platform simulator: creator-center pages and the JSON their scripts load.

Run with `imsync sim`. Pages need a session cookie (from /login) and send the browser to
/login without one; the JSON endpoints then answer status_code 8. `/__sim/truth` shows
what the platform holds, for tests to compare against; `/__sim/faults` makes it
misbehave on purpose (slow, malformed or truncated JSON, an expired session, a page that
never finishes loading); `/__sim/tick` makes a random customer write and `/__sim/customer`
a given one; `/__sim/private` makes a work private (replies under it are refused) or public.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .platform_data import NOT_LOGGED_IN, OK, Platform, Refused

SESSION_COOKIE = "sessionid"
PASSWORD = "sim"
_STATIC = Path(__file__).parent / "static"


@dataclass
class Faults:
    slow_ms: int = 0
    malformed: bool = False
    truncated: bool = False
    hang: bool = False


class Simulator:
    def __init__(self, platform: Platform, *, rate_per_minute: float = 0.0) -> None:
        self.platform = platform
        self.rate_per_minute = rate_per_minute
        self.sessions: dict[str, str] = {}  # token -> uid
        self.faults = Faults()
        # Set while `hang` is off: hung requests wait for it, and go on once it is turned off.
        self.unhung = asyncio.Event()
        self.unhung.set()

    def uid_of(self, request: Request) -> str | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE, ""))

    async def grow_forever(self) -> None:
        if self.rate_per_minute <= 0:
            return
        while True:
            await asyncio.sleep(60.0 / self.rate_per_minute)
            self.platform.tick(int(time.time()))

    async def misbehave(self) -> None:
        if self.faults.hang:
            await self.unhung.wait()
        if self.faults.slow_ms:
            await asyncio.sleep(self.faults.slow_ms / 1000)

    def json(self, payload: dict[str, Any]) -> Response:
        body = _encode(payload)
        if self.faults.malformed:
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


def _page(title: str, body: str, script: str) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)} - 创作者中心</title>
<link rel="stylesheet" href="/static/sim.css"></head><body>
<nav><a href="/creator-micro/content/manage">作品管理</a> <a href="/creator-micro/interactive/comment">评论管理</a>
<a href="/creator-micro/data/following/chat">私信</a></nav><main>{body}</main>
<script src="/static/api.js"></script><script src="/static/{script}"></script></body></html>"""
    )


def _paged(items: list[Any], request: Request, default_count: int) -> tuple[list[Any], int, bool]:
    try:
        cursor = max(0, int(request.query_params.get("cursor", "0")))
        count = min(50, max(1, int(request.query_params.get("count", str(default_count)))))
    except ValueError:
        cursor, count = 0, default_count
    page = items[cursor : cursor + count]
    return page, cursor + len(page), cursor + len(page) < len(items)


def build_app(simulator: Simulator) -> Starlette:
    platform = simulator.platform

    def api(handler: Callable[[Request, str], Awaitable[dict[str, Any]]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            await simulator.misbehave()
            uid = simulator.uid_of(request)
            if uid is None:
                return simulator.json({"status_code": NOT_LOGGED_IN, "status_msg": "用户未登录"})
            try:
                return simulator.json({"status_code": OK} | await handler(request, uid))
            except Refused as refused:
                return simulator.json({"status_code": refused.status_code, "status_msg": refused.status_msg})

        return endpoint

    def page(title: str, body: str, script: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            await simulator.misbehave()
            if simulator.uid_of(request) is None:
                return RedirectResponse("/login", status_code=302)
            return _page(title, body, script)

        return endpoint

    async def login_page(request: Request) -> Response:
        options = "".join(
            f'<option value="{escape(uid)}">{escape(account.nickname)}</option>' for uid, account in platform.accounts.items()
        )
        return HTMLResponse(
            f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>登录 - 创作者中心</title>
<link rel="stylesheet" href="/static/sim.css"></head><body><main id="login">
<h1>扫码登录</h1><div class="qr" aria-label="二维码">▦▦▦</div>
<form method="post" action="/login"><label>账号 <select name="uid">{options}</select></label>
<label>密码 <input type="password" name="password"></label><button type="submit">登录</button></form>
</main></body></html>"""
        )

    async def login(request: Request) -> Response:
        form = await request.form()
        uid, password = str(form.get("uid", "")), str(form.get("password", ""))
        if uid not in platform.accounts or password != PASSWORD:
            return HTMLResponse("<p>登录失败</p>", status_code=403)
        token = secrets.token_hex(16)
        simulator.sessions[token] = uid
        response = RedirectResponse("/creator-micro/content/manage", status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax")
        return response

    async def user_info(request: Request, uid: str) -> dict[str, Any]:
        return {"user": platform.accounts[uid].profile()}

    async def works(request: Request, uid: str) -> dict[str, Any]:
        items = sorted(platform.accounts[uid].works, key=lambda w: -w["create_time"])
        page, cursor, has_more = _paged(items, request, 10)
        return {"item_info_list": page, "cursor": cursor, "has_more": has_more, "total_count": len(items)}

    async def comments(request: Request, uid: str) -> dict[str, Any]:
        item_id = request.query_params.get("item_id", "")
        top = [c for c in platform.accounts[uid].comments.values() if c["aweme_id"] == item_id and c["reply_id"] == "0"]
        page, cursor, has_more = _paged(sorted(top, key=lambda c: -c["create_time"]), request, 20)
        return {"comments": page, "cursor": cursor, "has_more": has_more, "total": len(top)}

    async def replies(request: Request, uid: str) -> dict[str, Any]:
        parent = request.query_params.get("comment_id", "")
        found = [c for c in platform.accounts[uid].comments.values() if c["reply_id"] == parent]
        page, cursor, has_more = _paged(sorted(found, key=lambda c: c["create_time"]), request, 20)
        return {"comments": page, "cursor": cursor, "has_more": has_more, "total": len(found)}

    async def publish(request: Request, uid: str) -> dict[str, Any]:
        body = await request.json()
        comment = platform.reply(uid, str(body.get("aweme_id", "")), str(body.get("reply_id", "")), str(body.get("text", "")), int(time.time()))
        return {"comment": comment}

    async def conversations(request: Request, uid: str) -> dict[str, Any]:
        items = sorted(platform.accounts[uid].conversations.values(), key=lambda c: -c["update_time"])
        page, cursor, has_more = _paged(items, request, 20)
        return {"conversations": page, "cursor": cursor, "has_more": has_more}

    async def history(request: Request, uid: str) -> dict[str, Any]:
        conversation_id = request.query_params.get("conversation_id", "")
        found = [m for m in platform.accounts[uid].messages.values() if m["conversation_id"] == conversation_id]
        page, cursor, has_more = _paged(sorted(found, key=lambda m: -m["create_time"]), request, 20)
        return {"messages": page, "cursor": cursor, "has_more": has_more}

    async def send(request: Request, uid: str) -> dict[str, Any]:
        body = await request.json()
        message = platform.send(uid, str(body.get("conversation_id", "")), str(body.get("text", "")), int(time.time()))
        return {"message": message}

    async def truth(request: Request) -> Response:
        uid = request.query_params.get("uid", "")
        if uid not in platform.accounts:
            return JSONResponse({"accounts": list(platform.accounts)}, status_code=404 if uid else 200)
        return Response(_encode(platform.truth(uid)), media_type="application/json")

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

    async def customer(request: Request) -> Response:
        wanted = await request.json()
        if wanted.get("uid") not in platform.accounts or wanted.get("kind") not in ("message", "comment"):
            return JSONResponse({"error": "uid: an account of this simulator; kind: message or comment"}, status_code=400)
        written = platform.customer_writes(wanted["uid"], wanted["kind"], str(wanted.get("text", "")), int(time.time()))
        return Response(_encode(written), media_type="application/json")

    async def set_private(request: Request) -> Response:
        wanted = await request.json()
        account = platform.accounts.get(wanted.get("uid"))
        work = account.work(str(wanted.get("item_id"))) if account is not None else None
        if work is None:
            return JSONResponse({"error": "uid and item_id: a work of an account of this simulator"}, status_code=400)
        work["is_private"] = bool(wanted.get("is_private", True))
        return JSONResponse(work)

    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/", page("作品管理", '<ul id="works"></ul>', "works.js")),
        Route("/creator-micro/content/manage", page("作品管理", '<ul id="works"></ul>', "works.js")),
        Route("/creator-micro/interactive/comment", page("评论管理", '<select id="work"></select><ul id="comments"></ul>', "comments.js")),
        Route("/creator-micro/data/following/chat", page("私信", '<ul id="conversations"></ul><section id="chat"></section>', "chat.js")),
        Route("/aweme/v1/creator/user/info/", api(user_info)),
        Route("/aweme/v1/creator/item/list/", api(works)),
        Route("/aweme/v1/web/comment/list/select/", api(comments)),
        Route("/aweme/v1/web/comment/list/reply/", api(replies)),
        Route("/aweme/v1/web/comment/publish/", api(publish), methods=["POST"]),
        Route("/aweme/v1/im/conversation/list/", api(conversations)),
        Route("/aweme/v1/im/message/history/", api(history)),
        Route("/aweme/v1/im/message/send/", api(send), methods=["POST"]),
        Route("/__sim/truth", truth),
        Route("/__sim/faults", faults, methods=["GET", "POST"]),
        Route("/__sim/tick", tick, methods=["POST"]),
        Route("/__sim/customer", customer, methods=["POST"]),
        Route("/__sim/private", set_private, methods=["POST"]),
        Mount("/static", StaticFiles(directory=_STATIC)),
    ]
    return Starlette(routes=routes)
