"""The master's gRPC server interceptor: every call counted and timed (model/metrics.py),
its request id set for the log lines written for it, its caller's trace continued, and
what it raised answered by the one error boundary (boundary.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace

from services.common import logs
from services.common.observability import context_from, tracer, tracing_on
from services.common.series import series
from services.master.auth.api_keys import ApiKeys
from services.master.model.metrics import GRPC_HANDLED, GRPC_SECONDS
from services.master.rpc.boundary import guard_streaming, guard_unary

# Aborts made by the servicers themselves (and calls they made that failed) pass on as
# they are.
PASSTHROUGH: tuple[type[BaseException], ...] = (grpc.aio.AbortError, grpc.aio.AioRpcError)


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Times and counts every call, sets its request id for the log, continues its trace,
    and runs it inside the error boundary, which authorizes it first (boundary.py)."""

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None:
            return handler
        service, method = _split(details.method)
        seconds = series(GRPC_SECONDS, service, method)

        def begin(context: Any) -> tuple[float, Any, Any]:
            metadata = list(context.invocation_metadata() or ())
            token = logs.request_id.set(logs.request_id_from(metadata))
            # Without a tracer provider the trace headers are not even read.
            span = (
                tracer.start_span(
                    f"{service}/{method}",
                    context=context_from(metadata),
                    kind=trace.SpanKind.SERVER,
                    attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
                )
                if tracing_on()
                else trace.INVALID_SPAN
            )
            return time.perf_counter(), token, span

        def end(started: float, token: Any, span: Any, context: Any, failed: bool) -> None:
            code = _code(context, failed)
            series(GRPC_HANDLED, service, method, code).inc()
            seconds.observe(time.perf_counter() - started)
            span.set_attribute("rpc.grpc.status_code", code)
            span.end()
            try:
                logs.request_id.reset(token)
            except ValueError:  # ended in another context than it began: nothing to restore
                pass

        if handler.unary_unary:
            inner = guard_unary(handler.unary_unary, details.method, PASSTHROUGH, self._keys)

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

        plain: Any = handler.unary_stream or handler.stream_stream
        if plain is None:
            return handler
        streaming = guard_streaming(plain, details.method, PASSTHROUGH, self._keys)

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
