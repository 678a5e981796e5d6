"""Metrics and traces every imsync process shares: serving Prometheus's /metrics, and
OpenTelemetry tracing, off unless an OTLP endpoint is configured.

Metric names follow Prometheus's conventions (`imsync_` first, base units, `_total` for
counters); labels only ever take bounded values (a route template, a gRPC method, an
account id, a code, a reason), never an id of a message or free text. Spans follow
OpenTelemetry's semantic conventions and cross process boundaries as W3C `traceparent`:
in HTTP headers, in gRPC metadata, and in a reply's command to the worker.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, disable_created_metrics, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .http_server import HttpOptions, serve_asgi

tracer = trace.get_tracer("imsync")
# No `_created` series beside every counter and histogram: half the series, nothing lost.
disable_created_metrics()  # type: ignore[no-untyped-call]


async def metrics_endpoint(_request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def metrics_route() -> Route:
    return Route("/metrics", metrics_endpoint, methods=["GET"])


async def serve_metrics(listen: str, service: str, stop: asyncio.Event | None = None) -> None:
    """Serves /metrics on `listen` (says "imsync SERVICE metrics listening on ...")."""
    app = Starlette(routes=[metrics_route()])
    await serve_asgi(
        app,
        listen,
        lambda bound: f"imsync {service} metrics listening on http://{bound}/metrics",
        lifespan="off",
        options=HttpOptions(),
        stop=stop,
    )


def setup_tracing(service: str, endpoint: str = "") -> bool:
    """Exports spans with OTLP to `endpoint` (or OTEL_EXPORTER_OTLP_ENDPOINT); without one,
    tracing stays off (the API's no-op tracer: nothing is recorded). True when on."""
    endpoint = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if not endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"imsync-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return True


# OpenTelemetry takes a provider from this variable when none was set in code.
_PROVIDER_FROM_ENVIRONMENT = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_UNKNOWN = object()


def tracing_on() -> bool:
    """Whether spans are recorded (a tracer provider was set: setup_tracing, or a test's).
    Without one, the hot paths skip making spans and reading trace headers altogether.
    Asked on every request: the usual answer (none set) is read off OpenTelemetry's global
    without get_tracer_provider's look into the environment."""
    # An OpenTelemetry without that global (renamed in some release) gets the full check.
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _PROVIDER_FROM_ENVIRONMENT:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def inject(carrier: MutableMapping[str, str]) -> None:
    """Writes the current span's context (traceparent, tracestate) into `carrier`."""
    propagate.inject(carrier)


def trace_metadata() -> list[tuple[str, str]]:
    """The current span's context as gRPC metadata (none while tracing is off)."""
    if not tracing_on():
        return []
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


def context_from(pairs: Iterable[tuple[str, Any]] | Mapping[str, str]) -> otel_context.Context:
    """The trace context a caller sent (HTTP headers, gRPC metadata, a command's map)."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    carrier = {str(k).lower(): str(v) for k, v in items if isinstance(v, str)}
    return propagate.extract(carrier)
