"""The gateway's ASGI application: every request observed (observe.py: request id,
access log, metrics, trace); a GET answered before anything else when it can be (a kept
answer, an in-process page read: reads.py);
the gateway's own paths given to it directly, the rest (the console, probes, the
OpenAPI document) routed by Starlette."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from .cors import Cors
from .observe import Observed
from .routes import GATEWAY_PATHS


class Gateway(Protocol):
    """What of the gateway (app.py) the application serves through."""

    def answer_get(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[bool]: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class GatewayApp(Starlette):
    """Starlette, but a GET is answered before any routing when it can be (reads.py), and every
    request observed (observe.py: request id, access log, metrics, trace)."""

    def __init__(self, gateway: Gateway, *, cors_origins: frozenset[str] = frozenset(), **settings: Any) -> None:
        super().__init__(**settings)
        self.gateway = gateway
        self._observed = Observed(Cors(self._serve, cors_origins) if cors_origins else self._serve)
        self._own_paths: frozenset[str] | None = None

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and await self.gateway.answer_get(scope, receive, send):
            return
        if scope["type"] == "http" and self._gateway_only(scope["path"]):
            await self._gateway_call(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _gateway_only(self, path: str) -> bool:
        """A path no route of this application takes: the gateway's, with no routing first."""
        if self._own_paths is None:
            own = [route.path for route in self.router.routes if isinstance(route, Route)]
            self._own_paths = frozenset(own) if all("{" not in p for p in own if p.startswith(GATEWAY_PATHS)) else None
        return self._own_paths is not None and path.startswith(GATEWAY_PATHS) and path not in self._own_paths

    async def _gateway_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The gateway's answer; on a defect, 500 (if nothing was sent yet) and the error
        raised on, as Starlette's ServerErrorMiddleware does."""
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        scope["app"] = self
        try:
            await self.gateway(scope, receive, sending)
        except Exception:
            if not started:
                await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._observed(scope, receive, send)
