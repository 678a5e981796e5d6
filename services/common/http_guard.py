"""What every HTTP server of imsync refuses to be held by: slow clients and many connections.

uvicorn times out an idle keep-alive connection, but nothing else: a client that sends its
headers a byte at a time, or a body shorter than its Content-Length, holds a connection
(and a file descriptor) for ever, and any number of them may. `guarded(limits)` is
uvicorn's HTTP protocol with:

- a deadline for the headers of each request (from the connection, or its first byte),
  past which the client gets 408 and the connection closes;
- a deadline for the body, from the end of the headers (408 if nothing was answered yet);
- at most `max_header_bytes` of headers and `max_headers` of them (431);
- at most `max_connections` open connections in all (503: the server is full) and
  `max_per_address` from one address (429), counted from the moment one is accepted.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True)
class HttpLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    max_connections: int = 4096
    max_per_address: int = 256


_REASONS = {
    408: b"Request Timeout",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def _plain(status: int, text: str) -> bytes:
    body = text.encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, _REASONS[status], len(body))
        + body
    )


def guarded(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with these limits (one count of connections per server)."""
    per_address: Counter[str] = Counter()
    open_connections = [0]

    class GuardedProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            self._counted: str | None = None
            self._header_bytes = 0
            self._header_count = 0

        # ----------------------------------------------------------- connections

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = self.client[0] if self.client else ""
            if open_connections[0] >= limits.max_connections:
                self._refuse(503, "this server holds as many connections as it takes; try again soon")
                return
            if per_address[address] >= limits.max_per_address:
                self._refuse(429, f"more than {limits.max_per_address} connections from one address")
                return
            self._counted = address
            per_address[address] += 1
            open_connections[0] += 1
            self._arm(limits.header_timeout, "the request's headers did not come in time")

        def _release(self) -> None:
            if self._counted is not None:
                per_address[self._counted] -= 1
                if per_address[self._counted] <= 0:
                    del per_address[self._counted]
                open_connections[0] -= 1
                self._counted = None

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._release()
            super().connection_lost(exc)

        def handle_websocket_upgrade(self) -> None:
            # The socket becomes the WebSocket protocol's: it is no longer counted here.
            self._disarm()
            self._release()
            super().handle_websocket_upgrade()

        def _refuse(self, status: int, text: str) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self.transport.write(_plain(status, text))
                self.transport.close()

        # -------------------------------------------------------------- deadlines

        def _arm(self, seconds: float, why: str) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._too_slow, why)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self, why: str) -> None:
            self._deadline = None
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the application hears the client is gone
                cycle.message_event.set()
                if cycle.response_started:
                    self.transport.close()
                    return
            self._refuse(408, why)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = self._header_count = 0
            if self._deadline is None:
                self._arm(limits.header_timeout, "the request's headers did not come in time")

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_bytes += len(name) + len(value)
            self._header_count += 1
            if self._header_bytes > limits.max_header_bytes or self._header_count > limits.max_headers:
                self._refuse(431, f"more than {limits.max_header_bytes} bytes or {limits.max_headers} header fields")
                return
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if self.transport.is_closing():
                return
            self._disarm()
            super().on_headers_complete()
            length = dict(self.headers).get(b"content-length", b"0")
            chunked = b"chunked" in dict(self.headers).get(b"transfer-encoding", b"")
            if chunked or (length.strip().isdigit() and int(length) > 0):
                self._arm(limits.body_timeout, "the request's body did not come in time")

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return
            super().data_received(data)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # Idle now: uvicorn's keep-alive timer runs; a new request's first byte arms
            # the header deadline (on_message_begin).

    return GuardedProtocol
