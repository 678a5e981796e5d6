"""CORS: browsers on other origins (an Electron renderer, a web app) may call the gateway
when, and only when, their origin is allowed (`--cors-allow-origin`, off by default).

A preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin is answered
at once, 204, with the methods and the headers the API takes, for ten minutes; from any
other origin, 403 without CORS headers. An actual request from an allowed origin gets
Access-Control-Allow-Origin and sees the headers worth reading (ETag, Retry-After,
X-Request-Id and every Grpc-Metadata-* of the answer); from another origin it is served
as before, but without CORS headers its browser keeps the answer from the page.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = "GET, POST, PUT, PATCH, DELETE"
# Request headers a page may send (Grpc-Metadata-* besides): those the gateway reads.
HEADERS = frozenset(
    {
        "accept",
        "accept-language",
        "authorization",
        "cache-control",
        "content-type",
        "grpc-timeout",
        "if-none-match",
        "last-event-id",
        "x-request-id",
    }
)
EXPOSED = ("ETag", "Retry-After", "X-Request-Id")
MAX_AGE = "600"
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")


def check_origin(origin: str) -> str:
    """An origin as a browser sends it (`scheme://host[:port]`, no path), or `*`; else ValueError."""
    if origin == "*" or _ORIGIN.fullmatch(origin):
        return origin
    raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], or * for any)")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class Cors:
    def __init__(self, app: ASGIApp, origins: frozenset[str]) -> None:
        self.app = app
        self.any = "*" in origins
        self.origins = origins

    def _allowed(self, origin: str) -> bool:
        return self.any or origin in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _header(scope, b"origin") if scope["type"] == "http" else None
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self._allowed(origin)
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method") is not None:
            await self._preflight(scope, send, origin, allowed)
            return
        if not allowed:
            await self.app(scope, receive, send)
            return
        vary = [] if self.any else [(b"vary", b"Origin")]
        allow_origin = b"*" if self.any else origin.encode("latin-1")

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                exposed = [
                    *EXPOSED,
                    *(name.decode("latin-1") for name, _ in headers if name.lower().startswith(b"grpc-metadata-")),
                ]
                headers += [
                    (b"access-control-allow-origin", allow_origin),
                    (b"access-control-expose-headers", ", ".join(exposed).encode("latin-1")),
                    *vary,
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _preflight(self, scope: Scope, send: Send, origin: str, allowed: bool) -> None:
        asked = _header(scope, b"access-control-request-headers") or ""
        wanted = [h.strip().lower() for h in asked.split(",") if h.strip()]
        refused = [h for h in wanted if h not in HEADERS and not h.startswith("grpc-metadata-")]
        if not allowed or refused:
            why = f"origin {origin} is not allowed" if not allowed else f"header {refused[0]} is not taken"
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": why.encode()})
            return
        headers = [
            (b"access-control-allow-origin", b"*" if self.any else origin.encode("latin-1")),
            (b"access-control-allow-methods", METHODS.encode()),
            (b"access-control-max-age", MAX_AGE.encode()),
        ]
        if wanted:
            headers.append((b"access-control-allow-headers", ", ".join(wanted).encode("latin-1")))
        if not self.any:
            headers.append((b"vary", b"Origin"))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
