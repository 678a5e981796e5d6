"""The master's metrics (Prometheus) and its gRPC interceptor, which counts and times every
call, carries the caller's request id into the log lines written for it, and continues the
caller's trace.

Labels are bounded: gRPC services, methods and codes; sync outcomes and the reasons of
refusals; reply states and failure reasons; account ids (at most --max-accounts of them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from services.common import logs
from services.common.observability import context_from, tracer

from .commands import CommandRecord, is_reply

log = logging.getLogger("imsync.replies")

GRPC_HANDLED = Counter(
    "imsync_grpc_server_handled",
    "gRPC calls the master finished, by method and code",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_SECONDS = Histogram(
    "imsync_grpc_server_handling_seconds",
    "How long the master took per gRPC call (streams: their whole life)",
    ["grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
SYNC_VERSIONS = Counter(
    "imsync_sync_versions",
    "Sync versions (snapshots and deltas) applied or refused, with the refusal's reason",
    ["kind", "outcome", "reason"],
)
SYNC_ACK_SECONDS = Histogram(
    "imsync_sync_ack_seconds",
    "From a version's last message received to its Ack sent (after its fsync)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
SYNC_BYTES = Counter("imsync_sync_received_bytes", "Bytes of sync messages received, per account", ["account"])
SYNC_ENTITIES = Counter(
    "imsync_sync_received_entities", "Entities received in snapshots and deltas, per account", ["account"]
)
JOURNAL_COMMIT_SECONDS = Histogram(
    "imsync_journal_commit_seconds",
    "How long one journal commit (a group of changes, one fsync) took",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
JOURNAL_COMMIT_OPERATIONS = Histogram(
    "imsync_journal_commit_operations",
    "Changes written by one journal commit",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 1000),
)
JOURNAL_STALLED = Gauge("imsync_journal_stalled", "1 while the journal cannot write (nothing is acknowledged)")
REPLIES = Counter("imsync_replies", "Replies that reached a state, with the failure's reason", ["state", "reason"])
EVENTS = Counter("imsync_events_published", "Events published to live clients, by type", ["type"])
EVENT_SUBSCRIBERS = Gauge("imsync_event_subscribers", "Open event streams")
EVENT_LAG = Gauge("imsync_event_subscriber_lag_max", "Events the furthest-behind subscriber has yet to take")
EVENT_DROPPED = Counter("imsync_event_subscribers_dropped", "Subscribers cut off for falling too far behind")
WORKER_ONLINE = Gauge(
    "imsync_account_worker_online", "1 while a worker's stream to this master holds the account", ["account"]
)
CRAWL_STATE = Gauge(
    "imsync_account_crawl_state",
    "The account's crawl state as its worker last reported it (1 for the current one)",
    ["account", "state"],
)
LOGIN_STATE = Gauge(
    "imsync_account_login_state",
    "The account's login state as its worker last reported it (1 for the current one)",
    ["account", "state"],
)
SERVING = Gauge("imsync_health_serving", "1 while the master serves (not draining, its journal and Redis fine)")
CACHE_INVALIDATIONS = Counter("imsync_cache_invalidations_sent", "Invalidations sent to gateways keeping answers")

# Every event type counted from the start (at 0), so that a rate over it exists before the first one.
for _type in ev.EventType.keys():
    if _type != "EVENT_TYPE_UNSPECIFIED":
        EVENTS.labels(type=_type.removeprefix("EVENT_TYPE_").lower())

# Every reply state and failure reason, likewise: the first failure is an increase, not a new series.
for _state in ("pending", "sent"):
    REPLIES.labels(state=_state, reason="")
for _reason in e.FailureReason.keys():
    REPLIES.labels(
        state="failed",
        reason=_reason.removeprefix("FAILURE_REASON_").lower() if _reason != "FAILURE_REASON_UNSPECIFIED" else "",
    )

CRAWL_STATES = ("crawling", "whole", "partial", "failing", "needs_login")
LOGIN_STATES = ("logged_in", "logged_out", "logging_in")


def set_one_hot(gauge: Gauge, account: str, states: tuple[str, ...], current: str) -> None:
    for state in states:
        gauge.labels(account=account, state=state).set(1 if state == current else 0)


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Times and counts every call, sets its request id for the log, and continues its trace."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None:
            return handler
        service, method = _split(details.method)
        labels = {"grpc_service": service, "grpc_method": method}

        def begin(context: Any) -> tuple[float, Any, Any]:
            metadata = list(context.invocation_metadata() or ())
            token = logs.request_id.set(logs.request_id_from(metadata))
            span = tracer.start_span(
                f"{service}/{method}",
                context=context_from(metadata),
                kind=trace.SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
            )
            return time.perf_counter(), token, span

        def end(started: float, token: Any, span: Any, context: Any, failed: bool) -> None:
            code = _code(context, failed)
            GRPC_HANDLED.labels(**labels, grpc_code=code).inc()
            GRPC_SECONDS.labels(**labels).observe(time.perf_counter() - started)
            span.set_attribute("rpc.grpc.status_code", code)
            span.end()
            try:
                logs.request_id.reset(token)
            except ValueError:  # ended in another context than it began: nothing to restore
                pass

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                started, token, span = begin(context)
                failed = True
                try:
                    with trace.use_span(span, end_on_exit=False):
                        result = await inner(request, context)
                    failed = False
                    return result
                finally:
                    end(started, token, span, context, failed)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        streaming: Any = handler.unary_stream or handler.stream_stream
        if streaming is None:
            return handler

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            started, token, span = begin(context)
            failed = True
            responses = streaming(request, context)
            current = trace.set_span_in_context(span)
            try:
                while True:
                    # The span is current while the handler runs, never across a yield: a
                    # stream ended by its caller closes this generator from another context.
                    attached = otel_context.attach(current)
                    try:
                        response = await responses.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        otel_context.detach(attached)
                    yield response
                failed = False
            finally:
                await responses.aclose()
                end(started, token, span, context, failed)

        make = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
        return make(
            stream, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


def _code(context: Any, failed: bool) -> str:
    try:
        code = context.code()
    except Exception:
        code = None
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")
    return "UNKNOWN" if failed else "OK"


def observe_reply(record: CommandRecord) -> None:
    """A reply that reached a state: counted (failures by reason) and logged, without its text.
    Logged as it is taken, the line carries the request id of the call that sent it."""
    if is_reply(record.command):
        result = record.result
        reason = (
            e.FailureReason.Name(result.reason).removeprefix("FAILURE_REASON_").lower()
            if result and result.reason
            else ""
        )
        REPLIES.labels(state=record.state.value, reason=reason).inc()
        command = record.command
        if record.result is None:
            log.info("reply %r of account %r: pending, for its worker to send", command.request_id, command.account_id)
        else:
            log.info(
                "reply %r of account %r: %s%s",
                command.request_id,
                command.account_id,
                record.state.value,
                f" ({reason})" if reason else "",
            )
