"""What an operator sees of a gateway: a request id on every request and every line logged
for it, one access-log line per request, metrics by route, a span per request continuing
the caller's trace, and the probes `/healthz` (the process answers) and `/readyz` (its
master answers and, while it keeps answers, its watch of the master's changes is current).

Labels and log lines name the route's template, never the path as requested: no id, no
text a customer wrote, no key ends up in them.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator
from itertools import accumulate
from typing import Any

from opentelemetry import trace
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common import logs
from services.common.observability import context_from, metrics_route, tracer, tracing_on
from services.common.version import imsync_version

access = logging.getLogger("imsync.access")

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
# The buckets' `le` labels, as prometheus_client writes them.
_LE = (*map(floatToGoString, _BUCKETS), "+Inf")


class HttpMetrics(Collector):
    """imsync_http_requests_total (by route, method, code) and imsync_http_request_seconds
    (by route, method), counted in plain lists and handed to Prometheus when it scrapes:
    prometheus_client's Counter and Histogram take a lock on every update, ~2 us of each
    request. Counted on the event loop's thread; a scrape from another copies the maps first
    (a count read mid-request is off by that request, as a scrape a moment later would be)."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], list[int]] = {}
        # Per (route, method): a count per bucket (the last past every bound), then the sum.
        self._seconds: dict[tuple[str, str], list[float]] = {}

    def observe(self, route: str, method: str, code: int, seconds: float) -> None:
        counted = self._requests.get((route, method, code))
        if counted is None:
            counted = self._requests[(route, method, code)] = [0]
        counted[0] += 1
        timed = self._seconds.get((route, method))
        if timed is None:
            timed = self._seconds[(route, method)] = [0.0] * (len(_BUCKETS) + 2)
        timed[bisect_left(_BUCKETS, seconds)] += 1
        timed[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "imsync_http_requests",
            "HTTP requests the gateway answered, by route, method and status",
            labels=["route", "method", "code"],
        )
        for (route, method, code), (count,) in list(self._requests.items()):
            requests.add_metric([route, method, str(code)], count)
        yield requests
        seconds = HistogramMetricFamily(
            "imsync_http_request_seconds",
            "How long the gateway took per HTTP request (streams: their whole life)",
            labels=["route", "method"],
        )
        for (route, method), timed in list(self._seconds.items()):
            buckets = list(zip(_LE, accumulate(timed[:-1]), strict=True))
            seconds.add_metric([route, method], buckets, timed[-1])
        yield seconds


HTTP_METRICS = HttpMetrics()
REGISTRY.register(HTTP_METRICS)
CACHE_ANSWERS = Counter(
    "imsync_cache_answers", "Reads answered from the gateway's kept answers (hit) or not (miss)", ["result"]
)
CACHE_HITS = CACHE_ANSWERS.labels(result="hit")
CACHE_MISSES = CACHE_ANSWERS.labels(result="miss")
# Where a request's route template is left for the access log and the metrics.
ROUTE = "imsync.route"
_FIXED = {
    "/": "/",
    "/openapi.json": "/openapi.json",
    "/metrics": "/metrics",
    "/healthz": "/healthz",
    "/readyz": "/readyz",
    "/api/im/health": "/api/im/health",
    "/api/im/version": "/api/im/version",
}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route_of(scope: Scope) -> str:
    found = scope.get(ROUTE)
    if found:
        return str(found)
    path = scope.get("path", "")
    if path in _FIXED:
        return _FIXED[path]
    return "/assets/{name}" if path.startswith("/assets/") else "unmatched"


_REQUEST_ID_HEADER = logs.HEADER.encode()


class Observed:
    """The gateway's application with a request id, an access log, metrics and a span.

    It runs around every request, the kept answers' included, so it is kept cheap: the
    trace headers are read and a span made only while tracing is on (a tracer provider
    is set), and the metrics are counted in plain lists (HttpMetrics)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == _REQUEST_ID_HEADER), None)
        rid = logs.request_id_of(None if given is None else given.decode("latin-1"))
        token = logs.request_id.set(rid)
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        status = 0
        started = time.perf_counter()
        stamp = (b"x-request-id", rid.encode())

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), stamp]}
            await send(message)

        span = None
        if tracing_on():
            headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
            span = tracer.start_span(f"HTTP {method}", context=context_from(headers), kind=trace.SpanKind.SERVER)
        try:
            if span is None:
                await self.app(scope, receive, sending)
            else:
                with trace.use_span(span, end_on_exit=False):
                    await self.app(scope, receive, sending)
        finally:
            route = _route_of(scope)
            seconds = time.perf_counter() - started
            HTTP_METRICS.observe(route, method, status, seconds)
            if span is not None:
                span.update_name(f"{method} {route}")
                span.set_attributes(
                    {"http.request.method": method, "http.route": route, "http.response.status_code": status}
                )
                span.end()
            access.info("%s %s %d %.1f ms", method, route, status, seconds * 1000)
            logs.request_id.reset(token)


Probe = Callable[[], Awaitable[str]]


def probe_routes(ready: Probe, *, metrics: bool) -> list[Route]:
    """/healthz, /readyz (ready: "" when ready, else why not), and /metrics when asked."""

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        why = await ready()
        if why:
            return JSONResponse({"status": "not ready", "reason": why}, status_code=503)
        return JSONResponse({"status": "ready"})

    routes = [Route("/healthz", healthz, methods=["GET", "HEAD"]), Route("/readyz", readyz, methods=["GET", "HEAD"])]
    return [*routes, metrics_route()] if metrics else routes


def im_probe_routes(ready: Probe) -> list[Route]:
    """/api/im/health and /api/im/version, in the IM envelope, as the old IM API had them."""

    async def health(_request: Request) -> Response:
        why = await ready()
        if why:
            return JSONResponse(
                {"data": {"status": "unavailable", "reason": why}, "status_code": 14, "status_msg": why},
                status_code=503,
            )
        return JSONResponse({"data": {"status": "ok"}, "status_code": 0, "status_msg": ""})

    async def version(_request: Request) -> Response:
        return JSONResponse(
            {"data": {"version": imsync_version(), "api": "imsync.v1"}, "status_code": 0, "status_msg": ""}
        )

    return [Route("/api/im/health", health, methods=["GET"]), Route("/api/im/version", version, methods=["GET"])]


def master_probe(channel_of: Callable[[], Any], watch_of: Callable[[], Any]) -> Probe:
    """Ready while the master says it serves (gRPC health), and a watch, when there is one,
    holds a current lease."""

    async def ready() -> str:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        channel = channel_of()
        if channel is None:
            return "not started"
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except Exception as error:  # unreachable, or any refusal: not ready, and why
            return f"the master does not answer ({type(error).__name__})"
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            return "the master is not serving"
        watch = watch_of()
        if watch is not None and not watch.refused and not watch.current():
            return "the watch of the master's changes is not current"
        return ""

    return ready
