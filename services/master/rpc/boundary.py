"""The one place where a call is authorized and where what its servicer raised becomes
what its caller is told.

Before the servicer runs, the caller's API key is checked for the scope the call's
service needs, within the key's rate (access.py); the servicer reads the access it got.

A store error (model/errors.py) becomes its status, with the field and reason in the
details (status.py); anything else is a defect: logged with its traceback under an
incident id, and answered INTERNAL naming that id (never gRPC's default UNKNOWN, never
the exception's text). Both the gRPC server's interceptor (interceptor.py) and the
in-process channel of the embedded gateway wrap every method with it (the page reads
that channel awaits directly authorize with the same `admit` and answer by `failure_of`:
in_process.py); an abort the servicer made itself (`passthrough`) goes on untouched.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, NamedTuple, NoReturn

import grpc

from services.master.auth.api_keys import ApiKeys
from services.master.model.errors import StoreError
from services.master.rpc import access
from services.master.rpc.status import grpc_status_of

log = logging.getLogger("services.master.api")

Unary = Callable[[Any, Any], Awaitable[Any]]
Streaming = Callable[[Any, Any], AsyncGenerator[Any, None]]


class Failure(NamedTuple):
    """What the caller of a call that failed is told."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


def failure_of(error: Exception, method: str) -> Failure:
    """A store error's status; for anything else (a defect) INTERNAL naming an incident,
    logged with its traceback."""
    if isinstance(error, StoreError):
        status = grpc_status_of(error)
        return Failure(status.code, status.details, tuple(status.trailing_metadata))
    incident = secrets.token_hex(6)
    log.error("%s failed [incident %s]", method, incident, exc_info=error)
    return Failure(grpc.StatusCode.INTERNAL, f"internal error (incident {incident}, in the master's log)")


async def _answer(error: Exception, context: Any, method: str) -> NoReturn:
    failure = failure_of(error, method)
    await context.abort(failure.code, failure.details, failure.trailing_metadata)
    raise AssertionError("abort() returned")  # pragma: no cover


async def _authorize(keys: ApiKeys, scope: str | None, context: Any) -> Any:
    """Authorizes the call for `scope` (None: nothing to check); returns the token that
    restores the caller's context var."""
    if scope is None:
        return None
    return access.CALLER.set(await keys.admit(list(context.invocation_metadata() or ()), scope))


def _restore(token: Any) -> None:
    if token is not None:
        try:
            access.CALLER.reset(token)
        except ValueError:  # ended in another context than it began: nothing to restore
            pass


def guard_unary(inner: Unary, method: str, passthrough: tuple[type[BaseException], ...], keys: ApiKeys) -> Unary:
    scope = access.scope_of(method)

    async def unary(request: Any, context: Any) -> Any:
        token = None
        try:
            token = await _authorize(keys, scope, context)
            return await inner(request, context)
        except passthrough:
            raise
        except Exception as error:
            await _answer(error, context, method)
        finally:
            _restore(token)

    return unary


def guard_streaming(
    inner: Streaming, method: str, passthrough: tuple[type[BaseException], ...], keys: ApiKeys
) -> Streaming:
    scope = access.scope_of(method)

    async def streaming(request: Any, context: Any) -> AsyncGenerator[Any, None]:
        token = None
        try:
            token = await _authorize(keys, scope, context)
        except Exception as error:
            await _answer(error, context, method)
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
            _restore(token)

    return streaming
