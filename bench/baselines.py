"""The baselines the read targets are measured against, each a process of its own:

python -m bench.baselines fixed --listen HOST:PORT --body FILE
    a bare Starlette endpoint under uvicorn returning FILE's bytes as JSON (any path),
    and {} at /noop;
python -m bench.baselines one-hop --listen HOST:PORT --master HOST:PORT
    a bare Starlette endpoint making one grpc.aio ListConversations call per request
    and answering its JSON, marshalled as the gateway marshals it;
python -m bench.baselines sync --listen HOST:PORT
    a bare SyncData server: grants every account, parses each message and puts every
    entity it carries in a dict by its key, and acknowledges each version; nothing
    more (no checks, no orders, no counters).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import conversations_pb2_grpc, sync_pb2, sync_pb2_grpc
from services.common.http_server import serve_asgi
from services.gateway.marshalers import IM

from .common import GRPC_OPTIONS


def fixed_app(body: bytes) -> Starlette:
    async def answer(_request: Request) -> Response:
        return Response(body, media_type="application/json")

    async def noop(_request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    return Starlette(routes=[Route("/noop", noop), Route("/{path:path}", answer)])


def one_hop_app(master: str) -> Starlette:
    channel: dict[str, Any] = {}

    async def answer(request: Request) -> Response:
        stub = channel.get("stub")
        if stub is None:
            channel["channel"] = grpc.aio.insecure_channel(master)
            stub = channel["stub"] = conversations_pb2_grpc.ConversationServiceStub(channel["channel"])
        reply = await stub.ListConversations(
            conv.ListConversationsRequest(
                account_id=request.query_params.get("account_id", ""),
                count=int(request.query_params.get("count", "20")),
            )
        )
        return Response(IM.response_body(reply), media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", answer)])


class BareSync(sync_pb2_grpc.SyncServiceServicer):
    """SyncData with nothing but the parse and a dict by key (see the module's doc)."""

    async def SyncData(
        self, requests: AsyncIterator[sync_pb2.SyncDataRequest], _context: object
    ) -> AsyncIterator[sync_pb2.SyncDataResponse]:
        index: dict[str, dict[str, object]] = {}
        async for request in requests:
            kind = request.WhichOneof("kind")
            if kind == "hello":
                granted = [sync_pb2.AccountVersion(account_id=a.account_id) for a in request.hello.accounts]
                yield sync_pb2.SyncDataResponse(welcome=sync_pb2.Welcome(accounts=granted))
            elif kind == "snapshot":
                _index(index, request.snapshot.entities)
                if request.snapshot.last:
                    yield _ack(request.snapshot.account_id, request.snapshot.version)
            elif kind == "delta":
                _index(index, request.delta.upserts)
                yield _ack(request.delta.account_id, request.delta.version)


def _index(index: dict[str, dict[str, object]], batch: sync_pb2.EntityBatch) -> None:
    for name, key in _KEYS:
        table = index.setdefault(name, {})
        for entity in getattr(batch, name):
            table[getattr(entity, key)] = entity


def _ack(account_id: str, version: int) -> sync_pb2.SyncDataResponse:
    return sync_pb2.SyncDataResponse(ack=sync_pb2.Ack(account_id=account_id, version=version))


_KEYS = (
    ("contents", "content_id"),
    ("comments", "comment_id"),
    ("conversations", "conversation_id"),
    ("messages", "message_id"),
    ("notifications", "notification_id"),
)


async def serve_sync(listen: str) -> None:
    server = grpc.aio.server(options=GRPC_OPTIONS)
    sync_pb2_grpc.add_SyncServiceServicer_to_server(BareSync(), server)
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"baseline sync listening on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("fixed", "one-hop", "sync"))
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--body", type=Path)
    parser.add_argument("--master", default="")
    args = parser.parse_args()
    if args.kind == "sync":
        asyncio.run(serve_sync(args.listen))
        return
    app = fixed_app(args.body.read_bytes()) if args.kind == "fixed" else one_hop_app(args.master)
    asyncio.run(
        serve_asgi(app, args.listen, lambda bound: f"baseline {args.kind} listening on http://{bound}", lifespan="off")
    )


if __name__ == "__main__":
    main()
