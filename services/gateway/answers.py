"""How the gateway answers: cache keys and ETags, bounded bodies, and errors in the
profile's envelope (app.py serves the routes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message
from google.rpc import status_pb2
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from xxhash import xxh3_128_hexdigest

from services.common.rpc_errors import retry_after_of

from .cache import Answer, ResponseCache, with_body
from .errors import http_status_of
from .marshalers import Profile
from .observe import CACHE_MISSES

JSON = "application/json"
# The largest request body taken (a reply is at most 2,000 characters; mark-many lists ids).
MAX_BODY_BYTES = 1024 * 1024


def _raw_path(scope: Scope) -> str:
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    return raw.decode("latin-1").partition("?")[0]


def cache_key(raw_path: str, query: bytes, profile: Profile, authorization: str) -> tuple[object, ...]:
    # The request as it came, and who asks: a key limited to some accounts gets other
    # answers. Only answers that succeeded are kept, so a request found here binds.
    return (raw_path, query, profile.name, authorization)


def etag_of(body: bytes) -> str:
    """A strong ETag of an answer's bytes: their 128-bit XXH3, ~0.3 us for a page of 12 KB
    where SHA-256 took ~9 us, a tenth of a read that missed the cache. A validator, not a
    signature: nobody is trusted on it, and two different pages of one request meeting on
    128 bits by chance is not to be expected (docs/security.md)."""
    return '"' + xxh3_128_hexdigest(body) + '"'


def before_reading(
    cache: ResponseCache | None, service: str, message: Message
) -> tuple[ResponseCache | None, str, int | None]:
    """For a GET the cache did not answer: the cache to keep its answer in (None: there is
    none, or it keeps no answers of `service`), the account the request names, and that
    account's stamp, read before the answer is computed (a change meanwhile makes the
    answer stale at once); counted as a miss."""
    if cache is None or service not in cache.services:
        return None, "", 0
    account_id = getattr(message, "account_id", "")
    account_id = account_id if isinstance(account_id, str) else ""
    CACHE_MISSES.inc()
    return cache, account_id, cache.stamp(account_id)


def read_answer(body: bytes, headers: dict[str, str], route: str) -> Answer:
    """A read's answer of `body`: its ETag, and asked to be checked again at every use."""
    headers["ETag"] = etag_of(body)
    headers["Cache-Control"] = "no-cache"
    return Answer(body, headers, route)


def _matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110): W/"x" matches "x" (nginx weakens the
    ETags of what it compresses, and its clients send them back so)."""
    if if_none_match.strip() == "*":
        return True
    return etag.removeprefix("W/") in (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))


class ReadAnswer:
    """A read's answer sent straight in ASGI with the headers its Answer encoded once (no
    Response object: neither a hit nor a read that missed the cache pays for building one)."""

    __slots__ = ("_body", "_headers", "_status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self._status, self._body, self._headers = status, body, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.send_to(send)

    async def send_to(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self._status, "headers": self._headers})
        await send({"type": "http.response.body", "body": self._body})


def if_none_match_of(raw_headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The request's (first) If-None-Match."""
    found = next((value for name, value in raw_headers if name == b"if-none-match"), None)
    return None if found is None else found.decode("latin-1")


def fresh_answer(body: bytes, if_none_match: str | None) -> ReadAnswer:
    """_answer of read_answer(body), for an answer nobody keeps: its headers made
    straight, without an Answer of them first."""
    etag = etag_of(body)
    headers = [(b"etag", etag.encode()), (b"cache-control", b"no-cache")]
    if if_none_match is not None and _matches(if_none_match, etag):
        return ReadAnswer(304, b"", headers)
    return ReadAnswer(200, body, with_body(headers, body))


def _answer(answer: Answer, if_none_match: str | None) -> ReadAnswer:
    """A read's answer, or 304 Not Modified for a client that holds the same bytes already
    (If-None-Match); the client is asked to check again each time (the Answer's no-cache)."""
    if if_none_match is not None and _matches(if_none_match, answer.headers["ETag"]):
        return ReadAnswer(304, b"", answer.raw_headers)
    return ReadAnswer(200, answer.body, answer.raw_headers_200)


async def _bounded_body(request: Request) -> bytes | None:
    """The request's body, or None once it passes MAX_BODY_BYTES (the rest is not read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _field_text(message: Message, path: str) -> str:
    value: Any = message
    for part in path.split("."):
        if not hasattr(value, "DESCRIPTOR") or part not in value.DESCRIPTOR.fields_by_name:
            return ""
        value = getattr(value, part)
    return str(value) if isinstance(value, (str, int)) else ""


def _error(profile: Profile, status: status_pb2.Status, *, http_status: int | None = None) -> Response:
    retry_after = retry_after_of(status)
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    return Response(
        profile.error_body(status),
        status_code=http_status or http_status_of(status.code),
        media_type=JSON,
        headers=headers,
    )
