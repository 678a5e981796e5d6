"""The baselines the read targets are measured against, each a process of its own:

    python -m bench.baselines fixed --listen HOST:PORT --body FILE
        a bare Starlette endpoint under uvicorn returning FILE's bytes as JSON (any path),
        and {} at /noop;
    python -m bench.baselines one-hop --listen HOST:PORT --master HOST:PORT
        a bare Starlette endpoint making one grpc.aio ListConversations call per request
        and answering its JSON, marshalled as the gateway marshals it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imsync.v1 import conversations_pb2 as conv
from imsync.v1 import conversations_pb2_grpc
from services.common.http_server import serve_asgi
from services.gateway.marshalers import IM


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
                account_id=request.query_params.get("account_id", ""), count=int(request.query_params.get("count", "20"))
            )
        )
        return Response(IM.response_body(reply), media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", answer)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("fixed", "one-hop"))
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--body", type=Path)
    parser.add_argument("--master", default="")
    args = parser.parse_args()
    app = fixed_app(args.body.read_bytes()) if args.kind == "fixed" else one_hop_app(args.master)
    asyncio.run(serve_asgi(app, args.listen, lambda bound: f"baseline {args.kind} listening on http://{bound}", lifespan="off"))


if __name__ == "__main__":
    main()
