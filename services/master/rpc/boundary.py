"""The one place where what a servicer raised becomes what its caller is told.

A store error (model/errors.py) becomes its status, with the field and reason in the
details (status.py); anything else is a defect: logged with its traceback under an
incident id, and answered INTERNAL naming that id (never gRPC's default UNKNOWN, never
the exception's text). Both the gRPC server's interceptor (interceptor.py) and the
in-process channel of the embedded gateway wrap every method with it; an abort the
servicer made itself (`passthrough`) goes on untouched.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, NoReturn

import grpc

from services.master.model.errors import StoreError
from services.master.rpc.status import grpc_status_of

log = logging.getLogger("services.master.api")

Unary = Callable[[Any, Any], Awaitable[Any]]
Streaming = Callable[[Any, Any], AsyncGenerator[Any, None]]


async def _answer(error: Exception, context: Any, method: str) -> NoReturn:
    if isinstance(error, StoreError):
        status = grpc_status_of(error)
        await context.abort(status.code, status.details, status.trailing_metadata)
    incident = secrets.token_hex(6)
    log.error("%s failed [incident %s]", method, incident, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident}, in the master's log)")
    raise AssertionError("abort() returned")  # pragma: no cover


def guard_unary(inner: Unary, method: str, passthrough: tuple[type[BaseException], ...]) -> Unary:
    async def unary(request: Any, context: Any) -> Any:
        try:
            return await inner(request, context)
        except passthrough:
            raise
        except Exception as error:
            await _answer(error, context, method)

    return unary


def guard_streaming(inner: Streaming, method: str, passthrough: tuple[type[BaseException], ...]) -> Streaming:
    async def streaming(request: Any, context: Any) -> AsyncGenerator[Any, None]:
        responses = inner(request, context)
        try:
            while True:
                try:
                    response = await responses.__anext__()
                except StopAsyncIteration:
                    return
                except passthrough:
                    raise
                except Exception as error:
                    await _answer(error, context, method)
                yield response
        finally:
            await responses.aclose()

    return streaming
