"""What each `imsync` command runs, from its parsed arguments. Each returns the process's
exit code: 0, 1 for a refused action, 2 for a wrong invocation or configuration."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from pathlib import Path
from typing import Any


def setup_tracing(service: str, endpoint: str) -> None:
    from services.common.observability import setup_tracing as setup

    setup(service, endpoint)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _fail(command: str, message: str) -> int:
    print(f"imsync {command}: {message}", file=sys.stderr)
    return 2


def http_options(
    args: argparse.Namespace, prefix: str = "", tls_cert: str = "", tls_key: str = "", forwarded: str = "127.0.0.1"
) -> Any:
    from services.common.http_guard import HttpLimits
    from services.common.http_server import HttpOptions

    def arg(name: str) -> Any:
        return getattr(args, f"{prefix}http_{name}")

    return HttpOptions(
        tls_cert=Path(tls_cert) if tls_cert else None,
        tls_key=Path(tls_key) if tls_key else None,
        forwarded_allow_ips=forwarded,
        limits=HttpLimits(
            header_timeout=arg("header_timeout"),
            body_timeout=arg("body_timeout"),
            keep_alive_timeout=arg("keep_alive_timeout"),
            max_connections=arg("max_connections"),
            max_per_address=arg("max_connections_per_address"),
        ),
    )


def _server_tls(args: argparse.Namespace) -> Any:
    from services.common.tls import ServerTls

    if not args.tls_cert and not args.tls_key:
        if args.tls_client_ca:
            raise SystemExit("imsync master: --tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (args.tls_cert and args.tls_key):
        raise SystemExit("imsync master: give both --tls-cert and --tls-key")
    return ServerTls(Path(args.tls_cert), Path(args.tls_key), Path(args.tls_client_ca) if args.tls_client_ca else None)


def master(args: argparse.Namespace) -> int:
    from services.master.model.retention import parse_retention
    from services.master.server import MasterConfig, serve
    from services.master.sync.hub import SyncConfig

    try:
        retention = parse_retention(args.retention)
    except ValueError as error:
        return _fail("master", f"--retention: {error}")
    sync = SyncConfig(
        heartbeat_interval=args.heartbeat_seconds,
        lease_duration=args.lease_seconds,
        max_message_bytes=args.max_sync_message_bytes,
        max_pending_bytes=args.max_pending_snapshot_bytes,
        max_pending_bytes_per_worker=args.max_pending_snapshot_bytes_per_worker,
        max_hello_accounts=args.max_hello_accounts,
        max_accounts=args.max_accounts,
        max_version_jump=args.max_version_jump,
    )
    config = MasterConfig(
        listen=args.listen,
        worker_tokens=Path(args.worker_tokens) if args.worker_tokens else None,
        api_keys=Path(args.api_keys) if args.api_keys else None,
        rate_limit=args.rate_limit,
        tls=_server_tls(args),
        sync=sync,
        command_ttl=args.command_ttl_seconds,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        journal_sync=args.journal_sync,
        retention=retention,
        store=args.store,
        redis_prefix=args.redis_prefix,
        redis_wait_replicas=args.redis_wait_replicas,
        redis_wait_timeout=args.redis_wait_timeout,
        master_id=args.master_id,
        cache_lease=args.cache_lease_seconds,
        max_streams_per_key=args.max_event_streams_per_key,
        max_streams_per_address=args.max_event_streams_per_address,
        event_history=args.event_history,
        event_history_bytes=args.event_history_bytes,
        max_receive_bytes=args.max_receive_bytes,
        metrics_listen=args.metrics_listen,
        session_keys=Path(args.session_keys) if args.session_keys else None,
    )
    from services.common.addresses import AddressInUse, check_free

    for flag, address in (("--metrics-listen", args.metrics_listen), ("--gateway-listen", args.gateway_listen)):
        try:
            if address:
                check_free(address)
        except AddressInUse as error:
            return _fail("master", f"{flag}: {error}")
    setup_tracing("master", args.otlp_endpoint)
    alongside = None
    if args.gateway_listen:
        from services.embedded import embedded_gateway
        from services.gateway.console import CONSOLE_DIR
        from services.gateway.cors import check_origin

        console_dir = args.gateway_console
        console = None if console_dir == "none" else Path(console_dir) if console_dir else CONSOLE_DIR
        try:
            origins = [check_origin(o) for o in args.gateway_cors_allow_origin]
        except ValueError as error:
            return _fail("master", f"--gateway-cors-allow-origin: {error}")
        alongside = embedded_gateway(
            args.gateway_listen,
            console=console,
            http=http_options(args, "gateway_"),
            cache=not args.gateway_no_cache,
            cache_bytes=args.cache_max_bytes,
            encoded_bytes=args.encoded_max_bytes,
            cors_origins=origins,
            legacy_names=args.gateway_im_legacy_names,
        )
    asyncio.run(serve(config, alongside=alongside))
    return 0


def gateway(args: argparse.Namespace) -> int:
    from services.common.tls import ClientTls
    from services.gateway.console import CONSOLE_DIR
    from services.gateway.cors import check_origin
    from services.gateway.server import GatewayConfig, run

    console = None if args.console == "none" else Path(args.console) if args.console else CONSOLE_DIR
    master_tls = (
        ClientTls(
            Path(args.master_ca),
            Path(args.master_cert) if args.master_cert else None,
            Path(args.master_key) if args.master_key else None,
        )
        if args.master_ca
        else None
    )
    http = http_options(args, "", args.tls_cert, args.tls_key, args.forwarded_allow_ips)
    if args.tls_key and not args.tls_cert:
        return _fail("gateway", "--tls-key needs --tls-cert")
    if args.tls_cert:
        # Read now, as the server will: a file missing or not a certificate and its key is
        # one line before "listening", not a traceback after it.
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(args.tls_cert, args.tls_key or None)
        except OSError as error:  # (ssl.SSLError is one)
            return _fail("gateway", f"--tls-cert {args.tls_cert}, --tls-key {args.tls_key}: {error.strerror or error}")
    try:
        origins = [check_origin(o) for o in args.cors_allow_origin]
    except ValueError as error:
        return _fail("gateway", f"--cors-allow-origin: {error}")
    setup_tracing("gateway", args.otlp_endpoint)
    cache_key = os.environ.get("IMSYNC_GATEWAY_CACHE_KEY", "")
    if args.cache_key_file:
        try:
            cache_key = Path(args.cache_key_file).read_text().strip()
        except OSError as error:
            return _fail("gateway", f"--cache-key-file: {error}")
    run(
        GatewayConfig(
            listen=args.listen,
            master=args.master,
            console=console,
            master_tls=master_tls,
            http=http,
            cache=not args.no_cache,
            cache_key=cache_key,
            cache_bytes=args.cache_max_bytes,
            metrics_listen=args.metrics_listen,
            metrics_on_port=args.metrics_on_port,
            cors_origins=tuple(origins),
            legacy_names=args.im_legacy_names,
        )
    )
    return 0


def worker(args: argparse.Namespace) -> int:
    from services.common.addresses import AddressInUse, check_free
    from services.worker.command_log import CommandLogError
    from services.worker.config import ConfigError, load_worker_config
    from services.worker.main import run_worker

    setup_tracing("worker", args.otlp_endpoint)
    try:
        if args.metrics_listen:
            check_free(args.metrics_listen)
        asyncio.run(run_worker(load_worker_config(Path(args.config)), metrics_listen=args.metrics_listen))
    except (ConfigError, CommandLogError) as error:
        return _fail("worker", f"{args.config}: {error}")
    except AddressInUse as error:
        return _fail("worker", f"--metrics-listen: {error}")
    return 0


def sim(args: argparse.Namespace) -> int:
    from services.sim.server import SimConfig
    from services.sim.server import run as run_sim

    run_sim(
        SimConfig(
            listen=args.listen,
            accounts=args.accounts,
            seed=args.seed,
            rate_per_minute=args.rate,
            http=http_options(args),
        )
    )
    return 0


def demo(args: argparse.Namespace) -> int:
    from services.demo import DemoConfig, run_demo

    return run_demo(
        DemoConfig(
            master_listen=args.master_listen,
            gateway_listen=args.gateway_listen,
            interval=args.interval,
            sim_rate=args.sim_rate,
        )
    )


def worker_token(args: argparse.Namespace) -> int:
    from services.master.auth.worker_tokens import add_worker_token

    try:
        print(add_worker_token(Path(args.file), args.worker_id, _split(args.accounts)))
    except ValueError as error:
        return _fail("worker-token", str(error))
    except OSError as error:
        return _fail("worker-token", f"--file {args.file}: {error.strerror or error}")
    return 0


def api_key(args: argparse.Namespace) -> int:
    from services.master.auth.api_keys import create_api_key, revoke_api_key

    try:
        if args.action == "revoke":
            if not revoke_api_key(Path(args.file), args.key_id):
                print(f"imsync api-key: no key {args.key_id!r} in {args.file}", file=sys.stderr)
                return 1
            return 0
        print(create_api_key(Path(args.file), args.key_id, _split(args.accounts), _split(args.scopes), args.agent))
    except ValueError as error:
        return _fail("api-key", str(error))
    except OSError as error:
        return _fail("api-key", f"--file {args.file}: {error.strerror or error}")
    return 0


def account(args: argparse.Namespace) -> int:
    from services.cli import fleet
    from services.master.admin import NotFound, reset_version_in_journal, reset_version_in_redis

    if args.action != "reset-version":
        return fleet.run(args)
    if not args.account_id:
        return _fail("account", "ACCOUNT_ID is required")
    if bool(args.data_dir) == bool(args.store and args.store != "memory"):
        return _fail("account", "give the master's --data-dir, or its --store redis://...")
    try:
        if args.data_dir:
            before = asyncio.run(reset_version_in_journal(Path(args.data_dir), args.account_id))
        else:
            before = asyncio.run(reset_version_in_redis(args.store, args.redis_prefix, args.account_id))
    except NotFound as error:
        return _fail("account", str(error))
    print(
        f"account {args.account_id}: version {before} forgotten; its worker's next hello is told 0 and sends a snapshot"
    )
    return 0


def session_key(args: argparse.Namespace) -> int:
    from services.cli import fleet

    return fleet.session_key(args)


RUN = {
    "master": master,
    "gateway": gateway,
    "worker": worker,
    "sim": sim,
    "demo": demo,
    "worker-token": worker_token,
    "api-key": api_key,
    "account": account,
    "session-key": session_key,
}
