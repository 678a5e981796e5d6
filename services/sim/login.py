"""How the simulated platform logs a browser in: by QR code, as the real creator center
does, and (the simulator's own shortcut) by a password form.

The QR flow follows the platform's passport pages: the login page asks for a code
(`get_qrcode`: a PNG, the token it encodes, when it expires) and polls its state
(`check_qrconnect`: "1" new, "2" scanned, "3" confirmed, "5" expired, "verify" when the
platform wants a second step). A code lives `qr_ttl` seconds; the page then offers a new
one. After the scan, an account in `sms_uids` must also type a code sent by SMS
(`sms_verify`), with `sms_tries` tries before the platform makes it start over.

Tests play the phone: `POST /__sim/scan` scans a token (read from the QR image) as an
account, `GET /__sim/sms` reads the codes that account's phone received, and
`POST /__sim/login` sets `qr_ttl_s`, `sms_uids` and `sms_tries`.
"""

from __future__ import annotations

import base64
import io
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

import segno
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from .app import Simulator

PASSWORD = "sim"
SESSION_COOKIE = "sessionid"
HOME = "/creator-micro/content/manage"

# What check_qrconnect says of a code.
NEW, SCANNED, CONFIRMED, EXPIRED, VERIFY = "1", "2", "3", "5", "verify"
WRONG_CODE, TOO_MANY_TRIES = 1202, 1203
# Tickets kept at most: a page polling forever must not grow the simulator.
_MAX_TICKETS = 1000


@dataclass
class Ticket:
    token: str
    expires: float
    status: str = NEW
    uid: str = ""
    sms_code: str = ""
    tries_left: int = 0


@dataclass
class Logins:
    """The platform's login state: QR tickets, the SMS step, the phones' inboxes."""

    clock: Callable[[], float] = time.time
    qr_ttl: float = 120.0
    sms_tries: int = 3
    # Accounts whose login asks for a code sent by SMS after the scan.
    sms_uids: set[str] = field(default_factory=set)
    # Codes each account's phone received, newest last.
    sms_inbox: dict[str, list[str]] = field(default_factory=dict)
    tickets: dict[str, Ticket] = field(default_factory=dict)

    def new_ticket(self) -> Ticket:
        now = self.clock()
        for token in [t for t, ticket in self.tickets.items() if ticket.expires < now - 60]:
            del self.tickets[token]
        while len(self.tickets) >= _MAX_TICKETS:
            del self.tickets[next(iter(self.tickets))]
        ticket = Ticket(secrets.token_urlsafe(12), now + self.qr_ttl)
        self.tickets[ticket.token] = ticket
        return ticket

    def state(self, token: str) -> Ticket | None:
        ticket = self.tickets.get(token)
        if ticket is not None and ticket.status in (NEW, SCANNED) and self.clock() >= ticket.expires:
            ticket.status = EXPIRED
        return ticket

    def scan(self, token: str, uid: str, *, confirm: bool = True) -> Ticket | None:
        """The account's phone scans the code (and confirms the login on it)."""
        ticket = self.state(token)
        if ticket is None or ticket.status not in (NEW, SCANNED):
            return None
        ticket.uid = uid
        ticket.status = SCANNED
        if not confirm:
            return ticket
        if uid in self.sms_uids:
            ticket.status = VERIFY
            ticket.sms_code = f"{secrets.randbelow(10**6):06d}"
            ticket.tries_left = self.sms_tries
            self.sms_inbox.setdefault(uid, []).append(ticket.sms_code)
            del self.sms_inbox[uid][:-10]
        else:
            ticket.status = CONFIRMED
        return ticket

    def verify(self, token: str, code: str) -> dict[str, Any]:
        ticket = self.tickets.get(token)
        if ticket is None or ticket.status != VERIFY:
            return {
                "message": "error",
                "data": {"error_code": TOO_MANY_TRIES, "description": "请重新扫码登录", "tries_left": 0},
            }
        if secrets.compare_digest(code.strip(), ticket.sms_code):
            ticket.status = CONFIRMED
            return {"message": "success", "data": {"redirect_url": HOME}}
        ticket.tries_left -= 1
        if ticket.tries_left <= 0:
            ticket.status = EXPIRED
            return {
                "message": "error",
                "data": {"error_code": TOO_MANY_TRIES, "description": "验证次数过多，请重新扫码登录", "tries_left": 0},
            }
        return {
            "message": "error",
            "data": {
                "error_code": WRONG_CODE,
                "description": f"验证码错误，还可尝试 {ticket.tries_left} 次",
                "tries_left": ticket.tries_left,
            },
        }


def _mask(uid: str) -> str:
    """The phone number the platform says it texted, masked as it shows it."""
    return f"+86 1{uid[-2:]}******{uid[-2:]}"


def _qr_png(url: str) -> str:
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="png", scale=5, border=2)
    return base64.b64encode(out.getvalue()).decode()


def routes(simulator: Simulator) -> list[Route]:
    logins = simulator.logins
    platform = simulator.platform

    def logged_in(response: Response, uid: str) -> Response:
        token = secrets.token_hex(16)
        simulator.sessions[token] = uid
        simulator.login_count[uid] += 1
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax")
        return response

    async def login_page(request: Request) -> Response:
        options = "".join(
            f'<option value="{escape(uid)}">{escape(account.nickname)}</option>'
            for uid, account in platform.accounts.items()
        )
        return HTMLResponse(
            f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>登录 - 创作者中心</title>
<link rel="stylesheet" href="/static/sim.css"></head><body><main id="login">
<h1>扫码登录</h1>
<section id="qr-login"><div class="qr-box"><img class="qr" alt="二维码"><div class="qr-expired" hidden>二维码已失效
<button type="button" class="refresh">点击刷新</button></div></div><p class="qr-status">请使用抖音 App 扫码登录</p>
<form id="sms" hidden><p class="sms-prompt"></p><input name="code" inputmode="numeric" autocomplete="one-time-code"
aria-label="验证码"><button type="submit">验证</button><p class="sms-error"></p></form></section>
<details><summary>账号密码登录（模拟器）</summary>
<form method="post" action="/login"><label>账号 <select name="uid">{options}</select></label>
<label>密码 <input type="password" name="password"></label><button type="submit">登录</button></form></details>
</main><script src="/static/login.js"></script></body></html>"""
        )

    async def password_login(request: Request) -> Response:
        form = await request.form()
        uid, password = str(form.get("uid", "")), str(form.get("password", ""))
        if uid not in platform.accounts or password != PASSWORD:
            return HTMLResponse("<p>登录失败</p>", status_code=403)
        return logged_in(RedirectResponse(HOME, status_code=303), uid)

    async def get_qrcode(request: Request) -> Response:
        await simulator.misbehave()
        ticket = logins.new_ticket()
        url = f"{request.base_url}passport/qr?token={ticket.token}"
        return JSONResponse(
            {
                "message": "success",
                "data": {
                    "token": ticket.token,
                    "qrcode": _qr_png(url),
                    "qrcode_index_url": url,
                    "expire_time": int(ticket.expires),
                },
            }
        )

    async def check_qrconnect(request: Request) -> Response:
        await simulator.misbehave()
        ticket = logins.state(request.query_params.get("token", ""))
        if ticket is None:
            return JSONResponse({"message": "success", "data": {"status": EXPIRED}})
        data: dict[str, Any] = {"status": ticket.status}
        if ticket.status == VERIFY:
            data.update(verify_type="sms", mobile=_mask(ticket.uid), tries_left=ticket.tries_left)
        if ticket.status != CONFIRMED:
            return JSONResponse({"message": "success", "data": data})
        del logins.tickets[ticket.token]  # a confirmed code logs in one browser, once
        return logged_in(JSONResponse({"message": "success", "data": data | {"redirect_url": HOME}}), ticket.uid)

    async def sms_verify(request: Request) -> Response:
        await simulator.misbehave()
        try:
            body = await request.json()
            token, code = str(body["token"]), str(body["code"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"message": "error", "data": {"error_code": 2, "description": "参数错误"}}, status_code=400
            )
        answer = logins.verify(token, code)
        ticket = logins.tickets.get(token)
        if answer["message"] != "success" or ticket is None:
            return JSONResponse(answer)
        del logins.tickets[token]
        return logged_in(JSONResponse(answer), ticket.uid)

    # ----------------------------------------------------- the phone (for tests)

    async def scan(request: Request) -> Response:
        wanted = await request.json()
        uid = str(wanted.get("uid", ""))
        if uid not in platform.accounts:
            return JSONResponse({"error": "uid: an account of this simulator"}, status_code=400)
        ticket = logins.scan(str(wanted.get("token", "")), uid, confirm=bool(wanted.get("confirm", True)))
        if ticket is None:
            return JSONResponse({"error": "token: no QR code waiting for a scan has this token"}, status_code=400)
        return JSONResponse({"status": ticket.status})

    async def sms(request: Request) -> Response:
        return JSONResponse({"codes": logins.sms_inbox.get(request.query_params.get("uid", ""), [])})

    async def settings(request: Request) -> Response:
        if request.method == "POST":
            wanted = await request.json()
            if "qr_ttl_s" in wanted:
                logins.qr_ttl = float(wanted["qr_ttl_s"])
            if "sms_uids" in wanted:
                logins.sms_uids = {str(uid) for uid in wanted["sms_uids"]}
            if "sms_tries" in wanted:
                logins.sms_tries = max(1, int(wanted["sms_tries"]))
        return JSONResponse(
            {"qr_ttl_s": logins.qr_ttl, "sms_uids": sorted(logins.sms_uids), "sms_tries": logins.sms_tries}
        )

    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", password_login, methods=["POST"]),
        Route("/passport/web/get_qrcode/", get_qrcode),
        Route("/passport/web/check_qrconnect/", check_qrconnect),
        Route("/passport/web/sms_verify/", sms_verify, methods=["POST"]),
        Route("/__sim/scan", scan, methods=["POST"]),
        Route("/__sim/sms", sms),
        Route("/__sim/login", settings, methods=["GET", "POST"]),
    ]
