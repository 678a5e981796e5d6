"""GETs answered straight in ASGI, before any routing, with no Request or Response object:
from the cache when an answer to this very request is kept and still exact, else (the
embedded gateway) by the master's page reads in this process, which answer JSON already
(the master's api/encoded.py). What either cannot take as it is (a header to check and
pass on, a deadline) is left to the routes (app.py), which answer it as every call.

A read answered here is the routes' read: the same route, the same bound request, the
same authorization (the API key and its rate, in the master's boundary), the same errors
in the profile's envelope, the same ETag and the same answer kept in the cache."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import grpc
from google.protobuf.message import Message
from starlette.types import Receive, Scope, Send

from services.common.rpc_errors import bad_request

from .answers import _answer, _error, _raw_path, before_reading, cache_key, fresh_answer, read_answer
from .bind_http import bind_get
from .binding import BindingError, Remembered
from .cache import ResponseCache
from .grpc_bridge import PRINTABLE, BadHeader, identity_of, status_of
from .marshalers import Profile
from .observe import CACHE_HITS, ROUTE
from .routes import GATEWAY_PATHS, Route


class PageRead(NamedTuple):
    """What a GET's path and query come to, worked out once: the profile it is answered in
    and, when a page read of this process answers it, the route's template and service,
    the bound request and the read; or why the request cannot bind."""

    profile: Profile
    template: str = ""
    service: str = ""
    message: Message | None = None
    read: Any = None
    refused: BindingError | None = None


class Gateway(Protocol):
    """What of the gateway (app.py) a GET is answered through here."""

    page_reads: Remembered[tuple[str, bytes], PageRead]

    @property
    def cache(self) -> ResponseCache | None: ...

    def profile_of(self, scope: Scope) -> Profile: ...

    def matching(self, raw_path: str) -> tuple[tuple[Route, dict[str, str]], ...]: ...

    def encoded_read(self, route: Route, profile: Profile) -> Any: ...


def _plain(scope: Scope) -> tuple[str, str | None, str | None] | None:
    """The request's identity (authorization as identity_of reads it), its Authorization as
    sent (None without one) and its If-None-Match; None when the routes must see it (a
    deadline, metadata to pass on, an identity given twice or not printable)."""
    if_none_match = sent = None
    for name, value in scope["headers"]:
        if name == b"if-none-match" and if_none_match is None:
            if_none_match = value.decode("latin-1")
        elif name == b"authorization" and sent is None:
            sent = value.decode("latin-1")
            if not PRINTABLE.fullmatch(sent):
                return None
        elif name == b"grpc-timeout" or name.startswith(b"grpc-metadata-"):
            return None
    try:
        return identity_of(scope["headers"]), sent, if_none_match
    except BadHeader:
        return None


def _page_read(gateway: Gateway, scope: Scope, raw_path: str, query: bytes) -> PageRead:
    profile = gateway.profile_of(scope)
    if profile.legacy or not scope["path"].startswith(GATEWAY_PATHS):
        return PageRead(profile)  # the routes add the old names; other paths (console files, probes) are no pages
    matched = next((found for found in gateway.matching(raw_path) if found[0].http_method == "GET"), None)
    if matched is None or matched[0].server_streaming or matched[0].body:
        return PageRead(profile)
    route, variables = matched
    read = gateway.encoded_read(route, profile)
    if read is None:
        return PageRead(profile)
    try:
        message = bind_get(route, variables, query, profile)
    except BindingError as error:
        return PageRead(profile, refused=error)
    return PageRead(profile, route.template.template, route.service, message, read)


async def answer_get(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> bool:
    """Answers a GET from the cache or by an in-process page read; False leaves it to the routes."""
    plain = _plain(scope)
    if plain is None:
        return False
    identity, sent, if_none_match = plain
    raw_path = _raw_path(scope)
    query: bytes = scope.get("query_string", b"")
    asked = (raw_path, query)
    page = gateway.page_reads.get(asked)
    if page is None:
        page = _page_read(gateway, scope, raw_path, query)
        if page.refused is None:
            gateway.page_reads.keep(asked, page, len(raw_path) + len(query))
    profile = page.profile
    cache = gateway.cache
    if cache is not None:
        hit = cache.get(cache_key(raw_path, query, profile, identity))
        if hit is not None:
            try:
                cache.authorize([("authorization", identity)] if identity else [])
            except Exception:
                return False  # refused: the call answers why
            cache.hits += 1
            CACHE_HITS.inc()
            scope[ROUTE] = hit.route
            await _answer(hit, if_none_match).send_to(send)
            return True
    if page.refused is not None:
        await _error(profile, bad_request(page.refused.field, page.refused.description))(scope, receive, send)
        return True
    if page.read is None:
        return False
    scope[ROUTE] = page.template
    message: Any = page.message
    cache, account_id, stamp = before_reading(cache, page.service, message)
    try:
        answered = await page.read(message, [("authorization", sent)] if sent is not None else [])
    except grpc.aio.AioRpcError as error:
        await _error(profile, status_of(error))(scope, receive, send)
        return True
    body = profile.encoded_body(answered)
    if cache is None:
        await fresh_answer(body, if_none_match).send_to(send)
        return True
    answer = read_answer(body, {}, page.template)
    cache.put(cache_key(raw_path, query, profile, identity), account_id, stamp, answer)
    await _answer(answer, if_none_match).send_to(send)
    return True
