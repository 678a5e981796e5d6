"""The gateway: serves every google.api.http-annotated RPC of the given services over REST.

Routes come from the descriptors at start-up (routes.py); a request is bound into the
RPC's request message (binding.py), sent to the master over gRPC, and answered in the
profile its path asks for (marshalers.py). Unmatched paths get 404, matched paths with
another method 405, both with a google.rpc.Status body, as grpc-gateway answers them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from imsync.v1 import (
    accounts_pb2,
    contents_pb2,
    conversations_pb2,
    discussions_pb2,
    events_pb2,
    fleet_pb2,
    logins_pb2,
    messages_pb2,
    replies_pb2,
    search_pb2,
    templates_pb2,
    threads_pb2,
    unified_messages_pb2,
)
from services.common import logs
from services.common.futures import abandon
from services.common.observability import trace_metadata
from services.common.protojson import EncodedReply, JsonStyle
from services.common.rpc_errors import bad_request, error_status
from services.common.tls import ClientTls, open_channel

from . import legacy
from .answers import (
    JSON,
    MAX_BODY_BYTES,
    ReadAnswer,
    _answer,
    _error,
    _field_text,
    _raw_path,
    before_reading,
    cache_key,
    if_none_match_of,
    read_answer,
)
from .bind_http import BodyTooLarge, bind_http
from .binding import HTTP_BODY, BindingError, Remembered, set_from_text
from .cache import ResponseCache
from .console import console_routes
from .grpc_bridge import (
    BadHeader,
    MalformedTimeout,
    identity_of,
    incoming_headers,
    outgoing_metadata,
    status_of,
    timeout_of,
)
from .marshalers import LEGACY_NAMES, Profile, ProfileRegistry
from .observe import ROUTE, Probe, im_probe_routes, master_probe, probe_routes
from .openapi import openapi_document
from .reads import PageRead, answer_get
from .routes import Route as RpcRoute
from .routes import routes_of
from .serving import GatewayApp
from .watch import ChangeWatch


def im_services() -> list[ServiceDescriptor]:
    """The IM services the master serves over REST: the six modules, the team's handling,
    templates and search, replies, logins, events, and the fleet's administration."""
    return [
        service
        for module in (
            accounts_pb2,
            conversations_pb2,
            messages_pb2,
            contents_pb2,
            discussions_pb2,
            unified_messages_pb2,
            threads_pb2,
            templates_pb2,
            search_pb2,
            replies_pb2,
            logins_pb2,
            events_pb2,
            fleet_pb2,
        )
        for service in module.DESCRIPTOR.services_by_name.values()
    ]


# Paths whose matching routes are remembered: so many, of at most so many characters.
_MATCHES_KEPT = 4096
_MATCHED_PATH_CHARS = 512


# How the gateway's channel to its masters reconnects: gRPC's own backoff grows to two
# minutes, and a call while it waits fails at once (503) even when the master is back.
_CHANNEL_OPTIONS = [
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class Gateway:
    """The ASGI application that maps HTTP requests onto gRPC calls."""

    def __init__(
        self,
        services: Iterable[ServiceDescriptor],
        *,
        master: str = "",
        channel: grpc.aio.Channel | None = None,
        profiles: ProfileRegistry = ProfileRegistry(),
        sse_id_field: str = "event.event_id",
        sse_resume_field: str = "after_event_id",
        tls: ClientTls | None = None,
        trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"}),
        cache: ResponseCache | None = None,
        watch: bool = False,
        watch_key: str = "",
        cache_bytes: int = 64 * 1024 * 1024,
        sse_keepalive: float = 15.0,
    ) -> None:
        self.routes: Sequence[RpcRoute] = routes_of(services)
        # Seconds between the comments that keep an idle event stream open through proxies.
        self._sse_keepalive = sse_keepalive
        self._cache_bytes = cache_bytes
        self._cache = cache
        # Keep answers, stamped by the master's invalidations (watch.py).
        self._watch_wanted = watch and cache is None
        self._watch_key = watch_key
        self.watch: ChangeWatch | None = None
        self._sse_id_field = sse_id_field
        self._sse_resume_field = sse_resume_field
        self._master = master
        self._channel = channel
        self._owns_channel = channel is None
        self._profiles = profiles
        self._calls: dict[str, grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}
        self._encoded: dict[tuple[str, JsonStyle], Any] = {}
        self._matches: Remembered[str, tuple[tuple[RpcRoute, dict[str, str]], ...]] = Remembered(
            _MATCHES_KEPT, _MATCHED_PATH_CHARS
        )
        # What a GET's path and query come to (reads.py): for the master's page reads, the
        # request message bound once, which nobody changes.
        self.page_reads: Remembered[tuple[str, bytes], PageRead] = Remembered(1024, 1024)
        self._tls = tls
        self._trusted_proxies = trusted_proxies

    @property
    def cache(self) -> ResponseCache | None:
        return self._cache

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        if self._channel is None:
            # Given several masters ("ipv4:host1:port1,host2:port2", masters over one
            # Redis), calls are spread over them, and go to the others while one is down.
            self._channel = open_channel(self._master, self._tls, _CHANNEL_OPTIONS)
        watching: asyncio.Task[None] | None = None
        if self._watch_wanted:
            self.watch = ChangeWatch(self._channel, self._watch_key)
            self._cache = ResponseCache(self.watch.stamp, self.watch.authorize, max_bytes=self._cache_bytes)
            watching = asyncio.create_task(self.watch.run())
        try:
            yield
        finally:
            if watching is not None and self.watch is not None:
                await self.watch.close(watching)
                self._cache = None
            if self._owns_channel and self._channel is not None:
                await self._channel.close(grace=None)
                self._channel = None
                self._calls.clear()
                self._encoded.clear()

    async def _stream(
        self,
        route: RpcRoute,
        message: Message,
        request: Request,
        profile: Profile,
        metadata: list[tuple[str, str | bytes]],
        timeout: float | None,
    ) -> Response:
        """A server stream: newline-delimited {"result": ...} as grpc-gateway writes it, or
        server-sent events for clients that accept text/event-stream. For SSE, `id:` comes
        from the response field at `sse_id_field`, and Last-Event-ID fills the request's
        `sse_resume_field`, when the RPC has such fields."""
        sse = "text/event-stream" in request.headers.get("accept", "")
        last_event_id = request.headers.get("last-event-id")
        if sse and last_event_id and not _field_text(message, self._sse_resume_field):
            try:
                set_from_text(message, self._sse_resume_field, [last_event_id], profile.style)
            except BindingError as error:
                return _error(profile, bad_request("Last-Event-ID", error.description))
        if self._channel is None:
            raise RuntimeError("the gateway's channel is not open (lifespan not started)")
        call: Any = self._channel.unary_stream(
            route.grpc_path,
            request_serializer=route.request_type.SerializeToString,
            response_deserializer=route.response_type.FromString,
        )(message, metadata=metadata, timeout=timeout)
        # The master sends headers as soon as the stream is open; a refusal ends it first.
        initial = await call.initial_metadata()
        if call.done() and await call.code() != grpc.StatusCode.OK:
            try:
                await call.read()
            except grpc.aio.AioRpcError as error:
                return _error(profile, status_of(error, self._channel))

        keepalive = self._sse_keepalive

        async def body() -> AsyncIterator[bytes]:
            reading: asyncio.Future[Any] | None = None
            try:
                if sse:
                    yield b": stream open\n\n"
                while True:
                    # Waited on, never cancelled (cancelling a read ends the call): while
                    # nothing comes, an SSE comment now and then keeps proxies from cutting it.
                    reading = asyncio.ensure_future(call.read())
                    while sse and not (await asyncio.wait({reading}, timeout=keepalive))[0]:
                        yield b": keep-alive\n\n"
                    reply = await reading
                    if reply is grpc.aio.EOF:  # type: ignore[attr-defined]
                        break
                    if sse:
                        yield profile.event(reply, _field_text(reply, self._sse_id_field))
                    else:
                        yield profile.stream_item(reply)
            except grpc.aio.AioRpcError as error:
                status = status_of(error, self._channel)
                yield profile.event_error(status) if sse else profile.stream_error(status)
            finally:
                call.cancel()
                if reading is not None:
                    abandon(reading)  # it may have ended with the call's error as the client left

        headers = incoming_headers(initial) | {"Cache-Control": "no-cache"}
        if sse:
            headers["X-Accel-Buffering"] = "no"  # nginx passes each event on as it comes
        return StreamingResponse(body(), media_type="text/event-stream" if sse else JSON, headers=headers)

    def _call(self, route: RpcRoute) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        call = self._calls.get(route.grpc_path)
        if call is None:
            if self._channel is None:
                raise RuntimeError("the gateway's channel is not open (lifespan not started)")
            call = self._channel.unary_unary(
                route.grpc_path,
                request_serializer=route.request_type.SerializeToString,
                response_deserializer=route.response_type.FromString,
            )
            self._calls[route.grpc_path] = call
        return call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        raw_path = _raw_path(scope)
        profile = self.profile_of(scope)
        allowed: list[str] = []
        for route, variables in self.matching(raw_path):
            if route.http_method != request.method:
                allowed.append(route.http_method)
                continue
            scope[ROUTE] = route.template.template
            response = await self._handle(route, variables, request, profile, raw_path)
            await response(scope, receive, send)
            return
        if allowed:
            status = status_pb2.Status(code=code_pb2.UNIMPLEMENTED, message="Method Not Allowed")
            response = _error(profile, status, http_status=405)
        else:
            response = _error(profile, status_pb2.Status(code=code_pb2.NOT_FOUND, message="Not Found"))
        await response(scope, receive, send)

    def matching(self, raw_path: str) -> tuple[tuple[RpcRoute, dict[str, str]], ...]:
        """The routes whose template matches the path, in order, with their variables;
        remembered for the last _MATCHES_KEPT paths asked for."""
        found = self._matches.get(raw_path)
        if found is None:
            found = tuple(
                (route, variables) for route in self.routes if (variables := route.template.match(raw_path)) is not None
            )
            self._matches.keep(raw_path, found, len(raw_path))
        return found

    def profile_of(self, scope: Scope) -> Profile:
        """The request's profile: its path's, in the legacy variant when it asks for the old names."""
        query: bytes = scope.get("query_string", b"")
        if legacy.PARAM.encode() not in query:
            return self._profiles.for_path(scope["path"])
        return self._profiles.for_request(scope["path"], parse_qsl(query.decode("latin-1"), keep_blank_values=True))

    async def _handle(
        self, route: RpcRoute, variables: dict[str, str], request: Request, profile: Profile, raw_path: str
    ) -> Response | ReadAnswer:
        client = request.client.host if request.client else None
        try:
            # Headers first: a request that could not be passed on is refused before anything.
            metadata = outgoing_metadata(request.headers, client, self._trusted_proxies)
        except BadHeader as error:
            return _error(profile, bad_request(error.header, error.why), http_status=error.http_status)
        # Who asks is followed across: the request id into the master's log lines, the trace.
        metadata.append((logs.HEADER, logs.request_id.get()))
        metadata += trace_metadata()
        # A read of the master's pages asked again is not bound again: its message, which
        # is only read, is the one reads.py kept for the same path and query.
        encoded = self.encoded_call(route, profile) if request.method == "GET" else None
        page = self.page_reads.get((raw_path, request.scope.get("query_string", b""))) if encoded is not None else None
        message = page.message if page is not None else None
        try:
            if message is None:
                message = await bind_http(route, variables, request, profile)
            timeout = timeout_of(request.headers)
        except BodyTooLarge:
            status = error_status(
                code_pb2.RESOURCE_EXHAUSTED, f"the request body is over {MAX_BODY_BYTES} bytes", field="body"
            )
            return _error(profile, status, http_status=413)
        except BindingError as error:
            return _error(profile, bad_request(error.field, error.description))
        except MalformedTimeout as error:
            return _error(profile, bad_request("Grpc-Timeout", f"malformed header {error}"))

        if route.server_streaming:
            return await self._stream(route, message, request, profile, metadata, timeout)
        cache, account_id, stamp = before_reading(
            self._cache if request.method == "GET" else None, route.service, message
        )
        call = (encoded or self._call(route))(message, metadata=metadata, timeout=timeout)
        try:
            answered: Message | EncodedReply = await call
            headers = incoming_headers(await call.initial_metadata())
        except grpc.aio.AioRpcError as error:
            return _error(profile, status_of(error, self._channel))
        if isinstance(answered, EncodedReply):
            body = profile.encoded_body(answered)
        else:
            reply: Any = getattr(answered, route.response_body) if route.response_body else answered
            if reply.DESCRIPTOR.full_name == HTTP_BODY:
                # Raw bytes of their own type (grpc-gateway's HttpBody marshaler): no JSON, no envelope.
                media = reply.content_type or "application/octet-stream"
                return Response(reply.data, media_type=media, headers=headers)
            body = profile.response_body(reply)
        if request.method != "GET":
            return Response(body, media_type=JSON, headers=headers)
        answer = read_answer(body, headers, route.template.template)
        if cache is not None:
            # Kept under the one identity the master authorized (identity_of refused several).
            cache.put(
                cache_key(raw_path, request.scope.get("query_string", b""), profile, identity_of(request.headers.raw)),
                account_id,
                stamp,
                answer,
            )
        return _answer(answer, if_none_match_of(request.headers.raw))

    def encoded_call(self, route: RpcRoute, profile: Profile) -> Any:
        """The in-process channel's call answering this route as JSON already (a page
        joined from kept encodings), or None: the legacy names are added to messages,
        and a channel to another process answers messages."""
        if profile.legacy or route.response_body:
            return None
        key = (route.grpc_path, profile.style)
        found = self._encoded.get(key, self)
        if found is self:
            make = getattr(self._channel, "encoded_unary", None)
            found = self._encoded[key] = make(route.grpc_path, profile.style) if make is not None else None
        return found

    def encoded_read(self, route: RpcRoute, profile: Profile) -> Any:
        """encoded_call's read without a call object (InProcessChannel.encoded_read), or None."""
        if profile.legacy or route.response_body:
            return None
        make = getattr(self._channel, "encoded_read", None)
        return make(route.grpc_path, profile.style) if make is not None else None

    def answer_get(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[bool]:
        """A GET answered before any routing, when it can be (reads.py); False leaves it to
        the routes. (reads.answer_get's coroutine, handed on.)"""
        return answer_get(self, scope, receive, send)


def create_app(
    master: str = "",
    *,
    channel: grpc.aio.Channel | None = None,
    services: Iterable[ServiceDescriptor] | None = None,
    profiles: ProfileRegistry = ProfileRegistry(),
    console: Path | None = None,
    tls: ClientTls | None = None,
    trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"}),
    cache: ResponseCache | None = None,
    watch: bool = False,
    watch_key: str = "",
    cache_bytes: int = 64 * 1024 * 1024,
    metrics: bool = False,
    ready: Probe | None = None,
    cors_origins: Iterable[str] = (),
    legacy_names: bool = False,
    sse_keepalive: float = 15.0,
) -> Starlette:
    """The gateway application, calling the master at `master` (or over `channel`); with
    `console`, the web console's files from that folder at `/`; with `cache` (embedded) or
    `watch` (a master in another process; `watch_key` an API key with the gateway scope),
    repeated reads answered without a call (cache.py); with `cors_origins`, callable from
    pages of those origins (cors.py); with `legacy_names`, the old IM names in every IM
    answer (legacy.py)."""
    gateway = Gateway(
        im_services() if services is None else services,
        master=master,
        channel=channel,
        profiles=LEGACY_NAMES if legacy_names else profiles,
        sse_keepalive=sse_keepalive,
        tls=tls,
        trusted_proxies=trusted_proxies,
        cache=cache,
        watch=watch,
        watch_key=watch_key,
        cache_bytes=cache_bytes,
    )
    document = openapi_document(gateway.routes, profiles)

    async def openapi(_request: Request) -> Response:
        return JSONResponse(document)

    probe = ready or master_probe(lambda: gateway._channel, lambda: gateway.watch)
    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        *probe_routes(probe, metrics=metrics),
        *im_probe_routes(probe),
        *(console_routes(console) if console else []),
    ]
    app = GatewayApp(gateway, cors_origins=frozenset(cors_origins), routes=routes, lifespan=gateway.lifespan)
    # Everything else is the gateway's, whatever the path holds (a Mount's regex would
    # leave paths with an encoded newline to Starlette's plain-text 404).
    app.router.default = gateway
    app.state.gateway = gateway
    return app
