"""The platform's message push: a logged-in page holding `/ws/im` open receives every
private message of its account as it is stored, one JSON frame each:

    {"type": "new_message", "message": {...as history...}, "conversation": {...as the list...}}

The chat page keeps it open, as the creator center's chat page keeps its own. The socket
closes (code 4001) once the session is logged out. `drop_push` (a fault) loses frames, as
a flaky connection would: what they carried reaches a client only through the lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
from typing import TYPE_CHECKING, Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .login import SESSION_COOKIE

if TYPE_CHECKING:
    from .app import Simulator

LOGGED_OUT = 4001
# Frames a page has not taken yet; past this the page is too slow and is disconnected.
_BACKLOG = 1000


def routes(simulator: Simulator) -> list[WebSocketRoute]:
    async def push(websocket: WebSocket) -> None:
        session = websocket.cookies.get(SESSION_COOKIE, "")
        uid = simulator.sessions.get(session)
        await websocket.accept()
        if uid is None:
            await websocket.close(LOGGED_OUT, "not logged in")
            return
        frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def heard(account: str, frame: dict[str, Any]) -> None:
            if account != uid or simulator.faults.drop_push:
                return
            frames.put_nowait(frame if frames.qsize() < _BACKLOG else None)

        stop_listening = simulator.platform.listen(heard)
        closed = asyncio.ensure_future(_until_closed(websocket))
        browser = await asyncio.to_thread(browser_of, websocket)
        if browser is not None:
            simulator.open_pages(uid, browser, +1)
        try:
            while not closed.done():
                getting = asyncio.ensure_future(frames.get())
                done, _ = await asyncio.wait({getting, closed}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                if getting not in done:
                    getting.cancel()
                    if simulator.sessions.get(session) != uid:
                        await websocket.close(LOGGED_OUT, "logged out")
                        return
                    continue
                frame = getting.result()
                if frame is None:
                    await websocket.close(1008, "too slow")
                    return
                await websocket.send_text(json.dumps(frame, ensure_ascii=False))
        except (WebSocketDisconnect, RuntimeError):
            pass  # the page went away
        finally:
            if browser is not None:
                simulator.open_pages(uid, browser, -1)
            stop_listening()
            closed.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await closed

    return [WebSocketRoute("/ws/im", push)]


def browser_of(websocket: WebSocket) -> str | None:
    """Which browser holds this socket: on one machine (loopback, Linux), the process owning
    the peer's end of the connection (a Chromium's network service: one per browser, whatever
    its pages and contexts); elsewhere the connection itself. Two browsers with the same
    cookies (a session copied from one worker to another) are told apart by it. None: the
    peer's end is closed already (a page that went as it came), nothing to count."""
    client = websocket.client
    if client is None:
        return "?"
    fallback = f"{client.host}:{client.port}"
    try:
        host = ipaddress.ip_address(client.host)
    except ValueError:
        return fallback
    if not host.is_loopback or host.version != 4:
        return fallback
    server = websocket.scope.get("server") or ("", 0)
    try:
        # The peer's end: its local address is the client's, its remote this server's (one
        # local port serves connections to different servers at once on Linux: matched on
        # the first alone, another process's connection could be taken for a browser).
        ends = (_hex_address(client.host, client.port), _hex_address(server[0], server[1]))
        inode = _inode_of(*ends)
    except (OSError, ValueError):
        return fallback
    if inode is None:
        return None
    link = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == link:
                    return f"pid {pid}"
        except OSError:
            continue
    # Closing while it was looked for (no process holds it any more): nothing to count.
    return None


def _hex_address(host: str, port: int) -> str:
    """An IPv4 address and port as /proc/net/tcp writes them."""
    return f"{ipaddress.IPv4Address(host).packed[::-1].hex().upper()}:{port:04X}"


def _inode_of(local: str, remote: str) -> str | None:
    """The inode of the established TCP connection from `local` to `remote` (hex, as
    /proc/net/tcp writes them), None when there is none (gone, or closing)."""
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote and fields[3] == "01" and fields[9] != "0":
                return fields[9]
    return None


async def _until_closed(websocket: WebSocket) -> None:
    """Reads (and ignores) what the page sends, until it goes away."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
