"""The `imsync` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imsync",
        description="One live inbox for a team's social-platform accounts.",
    )
    parser.add_argument(
        "--log-level",
        default=_env("IMSYNC_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (env IMSYNC_LOG_LEVEL; default %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    master = commands.add_parser(
        "master",
        help="run the master: SyncService and the IM query services (gRPC)",
        description="Runs the master: SyncService for workers and the IM query services, "
        "with gRPC health checking and server reflection.",
    )
    master.add_argument(
        "--listen",
        default=_env("IMSYNC_MASTER_LISTEN", "127.0.0.1:50051"),
        metavar="HOST:PORT",
        help="gRPC address to listen on; port 0 picks a free port (env IMSYNC_MASTER_LISTEN; default %(default)s)",
    )

    gateway = commands.add_parser(
        "gateway",
        help="run the REST gateway in front of a master",
        description="Runs the grpc-gateway-compatible REST gateway; IM clients use /api/im/.",
    )
    gateway.add_argument(
        "--listen",
        default=_env("IMSYNC_GATEWAY_LISTEN", "127.0.0.1:8080"),
        metavar="HOST:PORT",
        help="HTTP address to listen on; port 0 picks a free port (env IMSYNC_GATEWAY_LISTEN; default %(default)s)",
    )
    gateway.add_argument(
        "--master",
        default=_env("IMSYNC_MASTER_ADDR", "127.0.0.1:50051"),
        metavar="HOST:PORT",
        help="the master's gRPC address (env IMSYNC_MASTER_ADDR; default %(default)s)",
    )

    demo = commands.add_parser(
        "demo",
        help="start a master and a gateway here, fill them with sample accounts, keep data flowing",
        description="Starts a master and a gateway on this machine, pushes sample accounts through "
        "SyncData, keeps adding messages, and prints the URLs to try. Ctrl-C stops everything.",
    )
    demo.add_argument(
        "--gateway-listen",
        default=_env("IMSYNC_GATEWAY_LISTEN", "127.0.0.1:8080"),
        metavar="HOST:PORT",
        help="where the gateway listens (env IMSYNC_GATEWAY_LISTEN; default %(default)s)",
    )
    demo.add_argument(
        "--master-listen",
        default=_env("IMSYNC_MASTER_LISTEN", "127.0.0.1:50051"),
        metavar="HOST:PORT",
        help="where the master listens (env IMSYNC_MASTER_LISTEN; default %(default)s)",
    )
    demo.add_argument(
        "--interval",
        type=float,
        default=float(_env("IMSYNC_DEMO_INTERVAL", "5")),
        help="seconds between new sample messages (env IMSYNC_DEMO_INTERVAL; default %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        if args.command == "master":
            from services.master.server import MasterConfig, serve

            asyncio.run(serve(MasterConfig(listen=args.listen)))
        elif args.command == "gateway":
            from services.gateway.server import GatewayConfig, run

            run(GatewayConfig(listen=args.listen, master=args.master))
        elif args.command == "demo":
            from services.demo import DemoConfig, run_demo

            return run_demo(
                DemoConfig(
                    master_listen=args.master_listen, gateway_listen=args.gateway_listen, interval=args.interval
                )
            )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
