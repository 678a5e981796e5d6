"""The master's services called in this process, through what looks like a gRPC channel.

As grpc-gateway's in-process registration (RegisterXHandlerServer) calls the server's
methods directly, the embedded gateway (`imsync master --gateway-listen`) is given an
`InProcessChannel`: its calls go straight to the servicers, with a context that carries
the caller's metadata and turns `abort` into the `grpc.aio.AioRpcError` a real channel
raises, details included. No serialization, no HTTP/2, no second event-loop hop; the
servicers and everything behind them (API keys, rate limits, the journal's wait) are the
very ones the gRPC server uses, and what they raise is answered by the same error
boundary (api/boundary.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from services.common.protojson import EncodedReply, JsonStyle
from services.master.api import encoded
from services.master.auth.api_keys import ApiKeys
from services.master.model.json_views import JsonViews
from services.master.rpc import access
from services.master.rpc.boundary import failure_of, guard_streaming, guard_unary

_Method = Callable[[Message, "InProcessContext"], Any]
# A list read answering JSON (EncodedReply), given the request and the caller's metadata.
EncodedRead = Callable[[Message, Sequence[tuple[str, str]]], Awaitable[EncodedReply]]
# What a stream's read() returns at its end, as on a real channel.
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: Sequence[tuple[str, Any]]) -> None:
        super().__init__(details)
        self.code, self.details, self.trailing = code, details, tuple(trailing)


def _rpc_error(code: grpc.StatusCode, details: str, trailing: Sequence[tuple[str, Any]] = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details, None)


class InProcessContext:
    """What the servicers use of a grpc.aio.ServicerContext."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = tuple(metadata)
        self._headers_sent: asyncio.Event | None = None

    @property
    def headers_sent(self) -> asyncio.Event:
        """Set once a stream's headers went (made when first asked: a unary call never is)."""
        if self._headers_sent is None:
            self._headers_sent = asyncio.Event()
        return self._headers_sent

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return "in-process"

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, str]]) -> None:
        self.headers_sent.set()

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[tuple[str, Any]] = ()
    ) -> None:
        raise _Aborted(code, details, trailing_metadata)


async def _guarded(work: Awaitable[Any], timeout: float | None) -> Any:
    try:
        if timeout is None:
            return await work
        async with asyncio.timeout(timeout):
            return await work
    except _Aborted as aborted:
        raise _rpc_error(aborted.code, aborted.details, aborted.trailing) from None
    except TimeoutError:
        raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None


class _UnaryCall:
    def __init__(
        self, method: _Method, request: Message, metadata: Sequence[tuple[str, str]], timeout: float | None
    ) -> None:
        self._result = _guarded(method(request, InProcessContext(metadata)), timeout)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result.__await__()

    async def initial_metadata(self) -> grpc.aio.Metadata:
        return grpc.aio.Metadata()


class _StreamCall:
    """A server stream: the servicer's generator runs in a task of its own, as on a server."""

    def __init__(
        self, method: _Method, request: Message, metadata: Sequence[tuple[str, str]], timeout: float | None
    ) -> None:
        self._context = InProcessContext(metadata)
        self._items: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
        self._error: grpc.aio.AioRpcError | None = None
        self._task = asyncio.get_running_loop().create_task(self._run(method(request, self._context), timeout))

    async def _run(self, stream: AsyncIterator[Any], timeout: float | None) -> None:
        async def drain() -> None:
            async for item in stream:
                self._context.headers_sent.set()
                await self._items.put(item)

        try:
            await _guarded(drain(), timeout)
        except grpc.aio.AioRpcError as error:
            self._error = error
        finally:
            self._context.headers_sent.set()
            await self._items.put(EOF)

    async def initial_metadata(self) -> grpc.aio.Metadata:
        await self._context.headers_sent.wait()
        await asyncio.sleep(0)  # an abort right after the headers is seen as done()
        return grpc.aio.Metadata()

    def done(self) -> bool:
        return self._task.done()

    async def code(self) -> grpc.StatusCode:
        await asyncio.wait([self._task])
        return self._error.code() if self._error is not None else grpc.StatusCode.OK

    async def read(self) -> Any:
        item = await self._items.get()
        if item is EOF:
            self._items.put_nowait(EOF)  # every later read sees the end too
            if self._error is not None:
                raise self._error
        return item

    def cancel(self) -> bool:
        return self._task.cancel()


class _Multicallable:
    def __init__(self, method: _Method, streaming: bool) -> None:
        self._method, self._streaming = method, streaming

    def __call__(
        self, request: Message, *, metadata: Sequence[tuple[str, str]] = (), timeout: float | None = None, **_: Any
    ) -> _UnaryCall | _StreamCall:
        if self._streaming:
            return _StreamCall(self._method, request, metadata, timeout)
        return _UnaryCall(self._method, request, metadata, timeout)


class InProcessChannel:
    """The part of grpc.aio.Channel the gateway uses, over servicers in this process."""

    def __init__(
        self,
        servicers: Sequence[tuple[ServiceDescriptor, object]],
        keys: ApiKeys,
        *,
        encoded_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        # Every call is authorized by these keys, as the gRPC server's calls are.
        self._keys = keys
        self._methods: dict[str, _Method] = {}
        self._servicers: dict[str, object] = {}
        for service, servicer in servicers:
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                self._methods[path] = getattr(servicer, method.name)
                self._servicers[path] = servicer
        # What workers sent of each entity, kept encoded in each style, at most
        # `encoded_bytes` a style (json_views.py).
        self.views = {style: JsonViews(style, encoded_bytes) for style in JsonStyle}
        self._encoded: dict[tuple[str, JsonStyle], tuple[_Multicallable, EncodedRead] | None] = {}

    def _method(self, path: str) -> _Method:
        method = self._methods.get(path)
        if method is None:
            raise ValueError(f"no servicer in this process serves {path}")
        return method

    # What the servicers raise is answered as the gRPC server's interceptor answers it.
    def unary_unary(self, path: str, **_: Any) -> _Multicallable:
        return _Multicallable(guard_unary(self._method(path), path, (_Aborted,), self._keys), streaming=False)

    def encoded_unary(self, path: str, style: JsonStyle) -> _Multicallable | None:
        """The call of a list read answering JSON in `style` (EncodedReply), guarded as
        every call; None for a method that has no such read (api/encoded.py)."""
        found = self._encoded_calls(path, style)
        return None if found is None else found[0]

    def encoded_read(self, path: str, style: JsonStyle) -> EncodedRead | None:
        """encoded_unary's read without a call object: awaited at once, with no deadline
        (the embedded gateway's GETs that ask for none: gateway/reads.py), guarded the same."""
        found = self._encoded_calls(path, style)
        return None if found is None else found[1]

    def _encoded_calls(self, path: str, style: JsonStyle) -> tuple[_Multicallable, EncodedRead] | None:
        key = (path, style)
        if key not in self._encoded:
            self._encoded[key] = self._encoded_call(path, style)
        return self._encoded[key]

    def _encoded_call(self, path: str, style: JsonStyle) -> tuple[_Multicallable, EncodedRead] | None:
        read = encoded.READS.get(path)
        servicer = self._servicers.get(path)
        scope = access.scope_of(path)
        if read is None or scope is None or not isinstance(servicer, read.servicer):
            return None
        views, keys, store = self.views[style], self._keys, servicer.store

        async def direct(request: Message, metadata: Sequence[tuple[str, str]]) -> EncodedReply:
            # What guard_unary and Guarded._answer do for the call (boundary.py, access.py):
            # the caller authorized for the service's scope, the page once every change so
            # far is on disk, a failure answered as the boundary answers it.
            try:
                caller = await keys.admit(metadata, scope)
                page = await read.page(servicer, request, caller, views)
                persisted = store.persisted()
                if persisted is not None:
                    await persisted
            except Exception as error:
                failure = failure_of(error, path)
                raise _rpc_error(failure.code, failure.details, failure.trailing_metadata) from None
            return read.reply(page)

        def called(request: Message, context: InProcessContext) -> Awaitable[EncodedReply]:
            return direct(request, context.invocation_metadata())

        return _Multicallable(called, streaming=False), direct

    def unary_stream(self, path: str, **_: Any) -> _Multicallable:
        return _Multicallable(guard_streaming(self._method(path), path, (_Aborted,), self._keys), streaming=True)

    async def close(self, grace: float | None = None) -> None:
        pass
