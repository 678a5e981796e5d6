"""The `imsync` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any


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
    master.add_argument(
        "--worker-tokens",
        default=_env("IMSYNC_WORKER_TOKENS", ""),
        metavar="FILE",
        help="TOML file of hashed worker tokens, read again when it changes; without it no worker may sync "
        "(env IMSYNC_WORKER_TOKENS; add tokens with `imsync worker-token`)",
    )
    master.add_argument(
        "--api-keys",
        default=_env("IMSYNC_API_KEYS", ""),
        metavar="FILE",
        help="TOML file of hashed API keys (accounts and scopes per key), read again when it changes; without it "
        "every IM client may read and answer every account (env IMSYNC_API_KEYS; create keys with `imsync api-key`)",
    )
    master.add_argument("--tls-cert", default=_env("IMSYNC_TLS_CERT", ""), metavar="FILE",
                        help="serve gRPC over TLS with this certificate (PEM; env IMSYNC_TLS_CERT) ...")
    master.add_argument("--tls-key", default=_env("IMSYNC_TLS_KEY", ""), metavar="FILE",
                        help="... and this private key (env IMSYNC_TLS_KEY)")
    master.add_argument("--tls-client-ca", default=_env("IMSYNC_TLS_CLIENT_CA", ""), metavar="FILE",
                        help="demand client certificates signed by this CA (mutual TLS for workers and gateways; "
                        "env IMSYNC_TLS_CLIENT_CA)")
    master.add_argument(
        "--rate-limit",
        type=float,
        default=float(_env("IMSYNC_RATE_LIMIT", "50")),
        metavar="PER_SECOND",
        help="requests a second per API key, with bursts of twice that; over it, 429 with Retry-After; 0: no limit "
        "(env IMSYNC_RATE_LIMIT; default %(default)s)",
    )
    master.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=float(_env("IMSYNC_HEARTBEAT_SECONDS", "5")),
        help="heartbeat interval on sync streams (env IMSYNC_HEARTBEAT_SECONDS; default %(default)s)",
    )
    master.add_argument(
        "--lease-seconds",
        type=float,
        default=float(_env("IMSYNC_LEASE_SECONDS", "15")),
        help="an account's owner keeps it this long after its last message (env IMSYNC_LEASE_SECONDS; "
        "default %(default)s)",
    )
    master.add_argument(
        "--cache-lease-seconds",
        type=float,
        default=float(_env("IMSYNC_CACHE_LEASE_SECONDS", "1")),
        help="how long a gateway keeping answers may go unheard before changes are acknowledged without it "
        "(env IMSYNC_CACHE_LEASE_SECONDS; default %(default)s)",
    )
    master.add_argument(
        "--command-ttl-seconds",
        type=float,
        default=float(_env("IMSYNC_COMMAND_TTL_SECONDS", "300")),
        help="a reply not performed by then fails as expired (env IMSYNC_COMMAND_TTL_SECONDS; default %(default)s)",
    )
    master.add_argument(
        "--data-dir",
        default=_env("IMSYNC_DATA_DIR", ""),
        metavar="DIR",
        help="directory of the journal (SQLite): what the master acknowledged survives a restart; without it, "
        "state lives in memory only (env IMSYNC_DATA_DIR)",
    )
    master.add_argument(
        "--retention",
        default=_env("IMSYNC_RETENTION", "default"),
        metavar="RULES",
        help="time to live per collection and a bound on entities, e.g. "
        "'messages=90d,comments=90d,conversations=90d,contents=365d,notifications=30d,max_entities=2000000' "
        "(units s, m, h, d; 0 keeps for good; 'none' keeps everything). Unnamed rules keep their defaults: "
        "messages, comments and conversations 180d, contents 365d, notifications 30d, 2,000,000 entities "
        "(env IMSYNC_RETENTION)",
    )
    master.add_argument(
        "--gateway-listen",
        default=_env("IMSYNC_EMBEDDED_GATEWAY_LISTEN", ""),
        metavar="HOST:PORT",
        help="also serve the REST gateway and the console from this process, calling the services directly and "
        "answering repeated reads from a cache (single-machine use; env IMSYNC_EMBEDDED_GATEWAY_LISTEN)",
    )
    master.add_argument(
        "--gateway-console",
        default=_env("IMSYNC_CONSOLE_DIR", ""),
        metavar="DIR",
        help="with --gateway-listen: the console's folder (default: clients/web of this checkout); 'none' for none",
    )
    master.add_argument(
        "--store",
        default=_env("IMSYNC_STORE", "memory"),
        metavar="memory|URL",
        help="where accounts live: 'memory' (this process; journaled with --data-dir) or a Redis URL such as "
        "redis://127.0.0.1:6379/0, shared by every master given the same URL: run several behind one address "
        "(env IMSYNC_STORE; default %(default)s)",
    )
    master.add_argument(
        "--redis-prefix",
        default=_env("IMSYNC_REDIS_PREFIX", "imsync"),
        help="prefix of every key in Redis, so that deployments can share one Redis (env IMSYNC_REDIS_PREFIX; "
        "default %(default)s)",
    )
    master.add_argument(
        "--master-id",
        default=_env("IMSYNC_MASTER_ID", ""),
        help="this master's name in the leases it holds in Redis (env IMSYNC_MASTER_ID; default host:pid:listen)",
    )
    master.add_argument(
        "--journal-sync",
        choices=("FULL", "NORMAL"),
        default=_env("IMSYNC_JOURNAL_SYNC", "FULL"),
        help="FULL: an acknowledgement survives power loss; NORMAL: only a crash of the process "
        "(env IMSYNC_JOURNAL_SYNC; default %(default)s)",
    )

    worker = commands.add_parser(
        "worker",
        help="run a worker: crawl its accounts and sync them to the master",
        description="Runs a worker: one crawl loop per account of its configuration file, one SyncData "
        "stream to the master. The file's format is in services/worker/config.py and the README.",
    )
    worker.add_argument(
        "--config",
        default=_env("IMSYNC_WORKER_CONFIG", "worker.toml"),
        metavar="FILE",
        help="the worker's TOML configuration (env IMSYNC_WORKER_CONFIG; default %(default)s)",
    )

    token = commands.add_parser(
        "worker-token",
        help="create (or rotate) a worker's token",
        description="Creates a token for WORKER_ID, stores its SHA-256 in FILE (replacing the worker's old "
        "one: a running master picks the change up) and prints the token once.",
    )
    token.add_argument("worker_id", metavar="WORKER_ID")
    token.add_argument(
        "--accounts", default="*", help="comma-separated account ids the worker may sync, or * for any (default %(default)s)"
    )
    token.add_argument(
        "--file",
        default=_env("IMSYNC_WORKER_TOKENS", "worker-tokens.toml"),
        metavar="FILE",
        help="the tokens file (env IMSYNC_WORKER_TOKENS; default %(default)s)",
    )

    key = commands.add_parser(
        "api-key",
        help="create or revoke an IM client's API key",
        description="Creates an API key limited to some accounts and scopes, storing only its SHA-256 in FILE "
        "(a running master picks the change up) and printing the key once; or revokes one.",
    )
    key.add_argument("action", choices=("create", "revoke"))
    key.add_argument("key_id", metavar="KEY_ID", help="a name for the key (who or what uses it)")
    key.add_argument(
        "--accounts", default="*", help="comma-separated account ids the key may use, or * for all (default %(default)s)"
    )
    key.add_argument("--scopes", default="read", help="some of read, reply and gateway, comma-separated: read lists and marks, reply "
                     "answers, gateway lets a gateway keep answers of reads (default %(default)s)")
    key.add_argument(
        "--file",
        default=_env("IMSYNC_API_KEYS", "api-keys.toml"),
        metavar="FILE",
        help="the keys file (env IMSYNC_API_KEYS; default %(default)s)",
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
    gateway.add_argument("--master-ca", default=_env("IMSYNC_MASTER_CA", ""), metavar="FILE",
                         help="reach the master over TLS, trusting this CA (env IMSYNC_MASTER_CA)")
    gateway.add_argument("--master-cert", default=_env("IMSYNC_MASTER_CERT", ""), metavar="FILE",
                         help="the gateway's client certificate, for a master that demands one (env IMSYNC_MASTER_CERT)")
    gateway.add_argument("--master-key", default=_env("IMSYNC_MASTER_KEY", ""), metavar="FILE",
                         help="... and its key (env IMSYNC_MASTER_KEY)")
    gateway.add_argument("--tls-cert", default=_env("IMSYNC_GATEWAY_TLS_CERT", ""), metavar="FILE",
                         help="serve HTTPS with this certificate (env IMSYNC_GATEWAY_TLS_CERT) ...")
    gateway.add_argument("--tls-key", default=_env("IMSYNC_GATEWAY_TLS_KEY", ""), metavar="FILE",
                         help="... and this key (env IMSYNC_GATEWAY_TLS_KEY)")
    gateway.add_argument("--forwarded-allow-ips", default=_env("IMSYNC_FORWARDED_ALLOW_IPS", "127.0.0.1"),
                         metavar="IPS", help="proxies whose X-Forwarded-* headers are believed, comma-separated "
                         "(env IMSYNC_FORWARDED_ALLOW_IPS; default %(default)s)")
    gateway.add_argument(
        "--console",
        default=_env("IMSYNC_CONSOLE_DIR", ""),
        metavar="DIR",
        help="folder of the web console served at / (env IMSYNC_CONSOLE_DIR; default: clients/web of this "
        "checkout); 'none' serves no console",
    )
    gateway.add_argument("--no-cache", action="store_true",
                         help="keep no answers: every read calls the master (answers are kept only in front of "
                         "one master with its store in memory, which tells the gateway of every change first)")
    gateway.add_argument("--cache-key-file", default=_env("IMSYNC_GATEWAY_CACHE_KEY_FILE", ""), metavar="FILE",
                         help="file holding an API key with the 'gateway' scope, which a master with API keys "
                         "asks of a gateway keeping answers (env IMSYNC_GATEWAY_CACHE_KEY_FILE, or the key "
                         "itself in IMSYNC_GATEWAY_CACHE_KEY)")

    sim = commands.add_parser(
        "sim",
        help="run the platform simulator: creator-center pages and JSON, for the worker to crawl",
        description="Runs a local imitation of the platform's creator center (pages, the JSON they load, "
        "login, replies), whose data grows over time. /__sim/truth shows what it holds; /__sim/faults "
        "makes it misbehave.",
    )
    sim.add_argument(
        "--listen",
        default=_env("IMSYNC_SIM_LISTEN", "127.0.0.1:8090"),
        metavar="HOST:PORT",
        help="HTTP address to listen on; port 0 picks a free port (env IMSYNC_SIM_LISTEN; default %(default)s)",
    )
    sim.add_argument("--accounts", type=int, default=int(_env("IMSYNC_SIM_ACCOUNTS", "3")),
                     help="simulated accounts (env IMSYNC_SIM_ACCOUNTS; default %(default)s)")
    sim.add_argument("--seed", type=int, default=int(_env("IMSYNC_SIM_SEED", "1")),
                     help="seed of the generated data (env IMSYNC_SIM_SEED; default %(default)s)")
    sim.add_argument("--rate", type=float, default=float(_env("IMSYNC_SIM_RATE", "6")),
                     help="new comments, replies and messages per minute (env IMSYNC_SIM_RATE; default %(default)s)")

    demo = commands.add_parser(
        "demo",
        help="start the simulator, a worker in headless Chromium, a master and a gateway here",
        description="Starts the platform simulator, a worker crawling three of its accounts in headless "
        "Chromium, a master and a gateway on this machine, and prints the URLs to try. Ctrl-C stops "
        "everything.",
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
        help="seconds between two crawls of an account (env IMSYNC_DEMO_INTERVAL; default %(default)s)",
    )
    demo.add_argument(
        "--sim-rate",
        type=float,
        default=float(_env("IMSYNC_DEMO_SIM_RATE", "12")),
        help="new comments, replies and messages per minute on the simulated platform "
        "(env IMSYNC_DEMO_SIM_RATE; default %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        if args.command == "master":
            from pathlib import Path

            from services.master.retention import parse_retention
            from services.master.server import MasterConfig, serve
            from services.master.sync_service import SyncConfig

            try:
                retention = parse_retention(args.retention)
            except ValueError as error:
                print(f"imsync master: --retention: {error}", file=sys.stderr)
                return 2

            config = MasterConfig(
                listen=args.listen,
                worker_tokens=Path(args.worker_tokens) if args.worker_tokens else None,
                api_keys=Path(args.api_keys) if args.api_keys else None,
                rate_limit=args.rate_limit,
                tls=_server_tls(args),
                sync=SyncConfig(heartbeat_interval=args.heartbeat_seconds, lease_duration=args.lease_seconds),
                command_ttl=args.command_ttl_seconds,
                data_dir=Path(args.data_dir) if args.data_dir else None,
                journal_sync=args.journal_sync,
                retention=retention,
                store=args.store,
                redis_prefix=args.redis_prefix,
                master_id=args.master_id,
                cache_lease=args.cache_lease_seconds,
            )
            alongside = None
            if args.gateway_listen:
                from services.embedded import embedded_gateway
                from services.gateway.console import CONSOLE_DIR

                console_dir = args.gateway_console
                console = None if console_dir == "none" else Path(console_dir) if console_dir else CONSOLE_DIR
                alongside = embedded_gateway(args.gateway_listen, console=console)
            asyncio.run(serve(config, alongside=alongside))
        elif args.command == "sim":
            from services.sim.server import SimConfig
            from services.sim.server import run as run_sim

            run_sim(SimConfig(listen=args.listen, accounts=args.accounts, seed=args.seed, rate_per_minute=args.rate))
        elif args.command == "worker":
            from pathlib import Path

            from services.worker.command_log import CommandLogError
            from services.worker.config import ConfigError, load_worker_config
            from services.worker.main import run_worker

            try:
                worker_config = load_worker_config(Path(args.config))
                asyncio.run(run_worker(worker_config))
            except (ConfigError, CommandLogError) as error:
                print(f"imsync worker: {args.config}: {error}", file=sys.stderr)
                return 2
        elif args.command == "api-key":
            from pathlib import Path

            from services.master.api_keys import create_api_key, revoke_api_key

            if args.action == "revoke":
                if not revoke_api_key(Path(args.file), args.key_id):
                    print(f"imsync api-key: no key {args.key_id!r} in {args.file}", file=sys.stderr)
                    return 1
                return 0
            try:
                print(create_api_key(Path(args.file), args.key_id, _split(args.accounts), _split(args.scopes)))
            except ValueError as error:
                print(f"imsync api-key: {error}", file=sys.stderr)
                return 2
        elif args.command == "worker-token":
            from pathlib import Path

            from services.master.worker_auth import add_worker_token

            print(add_worker_token(Path(args.file), args.worker_id, _split(args.accounts)))
        elif args.command == "gateway":
            from pathlib import Path

            from services.gateway.console import CONSOLE_DIR
            from services.gateway.server import GatewayConfig, run

            from services.common.http_server import HttpOptions
            from services.common.tls import ClientTls

            console = None if args.console == "none" else Path(args.console) if args.console else CONSOLE_DIR
            master_tls = (
                ClientTls(Path(args.master_ca), Path(args.master_cert) if args.master_cert else None,
                          Path(args.master_key) if args.master_key else None)
                if args.master_ca else None
            )
            http = HttpOptions(
                tls_cert=Path(args.tls_cert) if args.tls_cert else None,
                tls_key=Path(args.tls_key) if args.tls_key else None,
                forwarded_allow_ips=args.forwarded_allow_ips,
            )
            cache_key = os.environ.get("IMSYNC_GATEWAY_CACHE_KEY", "")
            if args.cache_key_file:
                try:
                    cache_key = Path(args.cache_key_file).read_text().strip()
                except OSError as error:
                    raise SystemExit(f"imsync gateway: --cache-key-file: {error}") from None
            run(GatewayConfig(listen=args.listen, master=args.master, console=console, master_tls=master_tls, http=http,
                              cache=not args.no_cache, cache_key=cache_key))
        elif args.command == "demo":
            from services.demo import DemoConfig, run_demo

            return run_demo(
                DemoConfig(
                    master_listen=args.master_listen,
                    gateway_listen=args.gateway_listen,
                    interval=args.interval,
                    sim_rate=args.sim_rate,
                )
            )
    except KeyboardInterrupt:
        pass
    return 0


def _server_tls(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from services.common.tls import ServerTls

    if not args.tls_cert and not args.tls_key:
        if args.tls_client_ca:
            raise SystemExit("imsync master: --tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (args.tls_cert and args.tls_key):
        raise SystemExit("imsync master: give both --tls-cert and --tls-key")
    return ServerTls(Path(args.tls_cert), Path(args.tls_key), Path(args.tls_client_ca) if args.tls_client_ca else None)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    sys.exit(main())
