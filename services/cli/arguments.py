"""The `imsync` command's arguments: every flag has an environment variable and a default,
and says both in its help. Options shared by every command (the log's level and format)
are taken before or after the command's name."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

MiB = 1024 * 1024


class _Flags:
    """Adds flags to a parser, each read from its environment variable when not given."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def __call__(
        self, name: str, env: str, default: Any, help: str, *, type: Callable[[str], Any] = str, **extra: Any
    ) -> None:
        raw = os.environ.get(env)
        value = type(raw) if raw is not None else default
        shown = f"; default {default}" if default not in ("", None) else ""
        self.parser.add_argument(name, type=type, default=value, help=f"{help} (env {env}{shown})", **extra)


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _level(text: str) -> str:
    if text.upper() not in _LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is none of {', '.join(_LEVELS)}")
    return text.upper()


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--log-level and --log-format, on the command and on each subcommand (where they
    leave the command's values alone unless given)."""
    level: Any = os.environ.get("IMSYNC_LOG_LEVEL", "INFO") if top else argparse.SUPPRESS
    style: Any = os.environ.get("IMSYNC_LOG_FORMAT", "text") if top else argparse.SUPPRESS
    parser.add_argument(
        "--log-level",
        default=level,
        type=_level,
        help="DEBUG, INFO, WARNING or ERROR (env IMSYNC_LOG_LEVEL; default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=style,
        help="text: one line per record; json: one object per line, a multi-line error folded into one field "
        "(env IMSYNC_LOG_FORMAT; default text)",
    )


def _clients(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """What browsers on other origins and the old IM clients need of a gateway."""
    env = os.environ.get("IMSYNC_CORS_ALLOW_ORIGINS", "")
    parser.add_argument(
        f"--{prefix}cors-allow-origin",
        action="append",
        metavar="ORIGIN",
        default=[o.strip() for o in env.split(",") if o.strip()],
        help="let pages of this origin (scheme://host[:port]) call the API from a browser; repeat for several; "
        "* for any (env IMSYNC_CORS_ALLOW_ORIGINS, comma-separated; default none)",
    )
    parser.add_argument(
        f"--{prefix}im-legacy-names",
        action="store_true",
        default=os.environ.get("IMSYNC_IM_LEGACY_NAMES", "") in ("1", "true"),
        help="answer IM clients with the old names too (msg_id, discussion_id, author_id, author_name); "
        "without it a request asks with ?legacy_names=true (env IMSYNC_IM_LEGACY_NAMES)",
    )


def _observed(flag: _Flags) -> None:
    """Where a service's metrics are served, and where its traces go."""
    flag(
        "--metrics-listen",
        "IMSYNC_METRICS_LISTEN",
        "",
        "serve Prometheus metrics at http://HOST:PORT/metrics",
        metavar="HOST:PORT",
    )
    flag(
        "--otlp-endpoint",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        "export OpenTelemetry traces with OTLP (gRPC) to "
        "this endpoint, e.g. http://127.0.0.1:4317; without it no span is recorded",
        metavar="URL",
    )


def _http(flag: _Flags, prefix: str = "") -> None:
    """The deadlines and connection bounds of an HTTP server (http_guard.py)."""
    flag(
        f"--{prefix}http-header-timeout",
        "IMSYNC_HTTP_HEADER_TIMEOUT",
        10.0,
        "seconds a request's headers may take",
        type=float,
        metavar="SECONDS",
    )
    flag(
        f"--{prefix}http-body-timeout",
        "IMSYNC_HTTP_BODY_TIMEOUT",
        30.0,
        "seconds a request's body may take",
        type=float,
        metavar="SECONDS",
    )
    flag(
        f"--{prefix}http-keep-alive-timeout",
        "IMSYNC_HTTP_KEEP_ALIVE_TIMEOUT",
        5.0,
        "seconds an idle connection stays open",
        type=float,
        metavar="SECONDS",
    )
    flag(
        f"--{prefix}http-max-connections",
        "IMSYNC_HTTP_MAX_CONNECTIONS",
        4096,
        "open connections in all; more are answered 503",
        type=int,
        metavar="N",
    )
    flag(
        f"--{prefix}http-max-connections-per-address",
        "IMSYNC_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
        256,
        "open connections from one address; more are answered 429",
        type=int,
        metavar="N",
    )


def _master(master: argparse.ArgumentParser) -> None:
    flag = _Flags(master)
    flag(
        "--listen",
        "IMSYNC_MASTER_LISTEN",
        "127.0.0.1:50051",
        "gRPC address to listen on; port 0 picks a free port",
        metavar="HOST:PORT",
    )
    flag(
        "--worker-tokens",
        "IMSYNC_WORKER_TOKENS",
        "",
        "TOML file of hashed worker tokens, read again when it "
        "changes; without it no worker may sync (add tokens with `imsync worker-token`)",
        metavar="FILE",
    )
    flag(
        "--api-keys",
        "IMSYNC_API_KEYS",
        "",
        "TOML file of hashed API keys (accounts and scopes per key), read "
        "again when it changes; without it every IM client may read and answer every account",
        metavar="FILE",
    )
    flag("--tls-cert", "IMSYNC_TLS_CERT", "", "serve gRPC over TLS with this certificate (PEM) ...", metavar="FILE")
    flag("--tls-key", "IMSYNC_TLS_KEY", "", "... and this private key", metavar="FILE")
    flag(
        "--tls-client-ca",
        "IMSYNC_TLS_CLIENT_CA",
        "",
        "demand client certificates signed by this CA (mutual TLS for workers and gateways)",
        metavar="FILE",
    )
    flag(
        "--rate-limit",
        "IMSYNC_RATE_LIMIT",
        50.0,
        "requests a second per API key, with bursts of twice that; over it, 429 with Retry-After; 0: no limit",
        type=float,
        metavar="PER_SECOND",
    )
    flag("--heartbeat-seconds", "IMSYNC_HEARTBEAT_SECONDS", 5.0, "heartbeat interval on sync streams", type=float)
    flag(
        "--lease-seconds",
        "IMSYNC_LEASE_SECONDS",
        15.0,
        "an account's owner keeps it this long after its last message",
        type=float,
    )
    flag(
        "--cache-lease-seconds",
        "IMSYNC_CACHE_LEASE_SECONDS",
        1.0,
        "how long a gateway keeping answers may go unheard before changes are acknowledged without it",
        type=float,
    )
    flag(
        "--command-ttl-seconds",
        "IMSYNC_COMMAND_TTL_SECONDS",
        300.0,
        "a reply not performed by then fails as expired",
        type=float,
    )
    flag(
        "--data-dir",
        "IMSYNC_DATA_DIR",
        "",
        "directory of the journal (SQLite): what the master acknowledged "
        "survives a restart; without it, state lives in memory only",
        metavar="DIR",
    )
    flag(
        "--journal-sync",
        "IMSYNC_JOURNAL_SYNC",
        "FULL",
        "FULL: an acknowledgement survives power loss; NORMAL: only a crash of the process",
        choices=("FULL", "NORMAL"),
    )
    flag(
        "--retention",
        "IMSYNC_RETENTION",
        "default",
        "time to live per collection and a bound on entities, e.g. "
        "'messages=90d,comments=90d,conversations=90d,contents=365d,notifications=30d,max_entities=2000000' "
        "(units s, m, h, d; 0 keeps for good; 'none' keeps everything); unnamed rules keep their defaults: "
        "messages, comments and conversations 180d, contents 365d, notifications 30d, 2,000,000 entities",
        metavar="RULES",
    )
    flag(
        "--store",
        "IMSYNC_STORE",
        "memory",
        "where accounts live: 'memory' (this process; journaled with "
        "--data-dir) or a Redis URL such as redis://127.0.0.1:6379/0, shared by every master given it",
        metavar="memory|URL",
    )
    flag(
        "--redis-prefix",
        "IMSYNC_REDIS_PREFIX",
        "imsync",
        "prefix of every key in Redis, so that deployments can share one Redis",
    )
    flag(
        "--master-id",
        "IMSYNC_MASTER_ID",
        "",
        "this master's name in the leases it holds in Redis (default host:pid:listen)",
    )
    flag(
        "--gateway-listen",
        "IMSYNC_EMBEDDED_GATEWAY_LISTEN",
        "",
        "also serve the REST gateway and the console "
        "from this process, calling the services directly (single-machine use)",
        metavar="HOST:PORT",
    )
    flag(
        "--gateway-console",
        "IMSYNC_CONSOLE_DIR",
        "",
        "with --gateway-listen: the console's folder (default: clients/web of this checkout); 'none' for none",
        metavar="DIR",
    )
    flag(
        "--cache-max-bytes",
        "IMSYNC_CACHE_MAX_BYTES",
        64 * MiB,
        "with --gateway-listen: bytes of answers kept, of which one API key holds at most a quarter",
        type=int,
        metavar="BYTES",
    )
    _http(_Flags(master), "gateway-")
    _clients(master, "gateway-")
    # What a caller can make the master hold.
    flag(
        "--max-receive-bytes",
        "IMSYNC_MAX_RECEIVE_BYTES",
        64 * MiB,
        "the largest gRPC message taken at all; a larger one ends its stream (RESOURCE_EXHAUSTED)",
        type=int,
        metavar="BYTES",
    )
    flag(
        "--max-sync-message-bytes",
        "IMSYNC_MAX_SYNC_MESSAGE_BYTES",
        4 * MiB,
        "the largest sync message taken: up "
        "to --max-receive-bytes a larger one is refused with a Nack and the stream goes on",
        type=int,
        metavar="BYTES",
    )
    flag(
        "--max-pending-snapshot-bytes",
        "IMSYNC_MAX_PENDING_SNAPSHOT_BYTES",
        256 * MiB,
        "bytes of snapshot chunks one stream may have sent before their last chunk",
        type=int,
        metavar="BYTES",
    )
    flag(
        "--max-pending-snapshot-bytes-per-worker",
        "IMSYNC_MAX_PENDING_SNAPSHOT_BYTES_PER_WORKER",
        512 * MiB,
        "the same over all streams of one worker",
        type=int,
        metavar="BYTES",
    )
    flag(
        "--max-hello-accounts",
        "IMSYNC_MAX_HELLO_ACCOUNTS",
        1000,
        "accounts one worker's hello may name",
        type=int,
        metavar="N",
    )
    flag(
        "--max-accounts",
        "IMSYNC_MAX_ACCOUNTS",
        10_000,
        "accounts the master holds; a hello naming a new one beyond it is refused (ACCOUNT_LIMIT)",
        type=int,
        metavar="N",
    )
    flag(
        "--max-version-jump",
        "IMSYNC_MAX_VERSION_JUMP",
        1_000_000,
        "a sync version further than this past the applied one is refused (VERSION_JUMP)",
        type=int,
        metavar="N",
    )
    flag(
        "--event-history",
        "IMSYNC_EVENT_HISTORY",
        10_000,
        "events kept for clients resuming a stream",
        type=int,
        metavar="N",
    )
    flag(
        "--event-history-bytes",
        "IMSYNC_EVENT_HISTORY_BYTES",
        64 * MiB,
        "... and at most this many bytes of them",
        type=int,
        metavar="BYTES",
    )
    flag(
        "--max-event-streams-per-key",
        "IMSYNC_MAX_EVENT_STREAMS_PER_KEY",
        16,
        "open event streams per API key",
        type=int,
        metavar="N",
    )
    flag(
        "--max-event-streams-per-address",
        "IMSYNC_MAX_EVENT_STREAMS_PER_ADDRESS",
        64,
        "open event streams per client address",
        type=int,
        metavar="N",
    )
    _observed(flag)


def _gateway(gateway: argparse.ArgumentParser) -> None:
    flag = _Flags(gateway)
    flag(
        "--listen",
        "IMSYNC_GATEWAY_LISTEN",
        "127.0.0.1:8080",
        "HTTP address to listen on; port 0 picks a free port",
        metavar="HOST:PORT",
    )
    flag(
        "--master",
        "IMSYNC_MASTER_ADDR",
        "127.0.0.1:50051",
        "the master's gRPC address, or several: ipv4:HOST:PORT,HOST:PORT",
        metavar="HOST:PORT",
    )
    flag("--master-ca", "IMSYNC_MASTER_CA", "", "reach the master over TLS, trusting this CA", metavar="FILE")
    flag(
        "--master-cert",
        "IMSYNC_MASTER_CERT",
        "",
        "the gateway's client certificate, for a master that demands one",
        metavar="FILE",
    )
    flag("--master-key", "IMSYNC_MASTER_KEY", "", "... and its key", metavar="FILE")
    flag("--tls-cert", "IMSYNC_GATEWAY_TLS_CERT", "", "serve HTTPS with this certificate ...", metavar="FILE")
    flag("--tls-key", "IMSYNC_GATEWAY_TLS_KEY", "", "... and this key", metavar="FILE")
    flag(
        "--forwarded-allow-ips",
        "IMSYNC_FORWARDED_ALLOW_IPS",
        "127.0.0.1",
        "proxies whose X-Forwarded-* headers are believed, comma-separated",
        metavar="IPS",
    )
    flag(
        "--console",
        "IMSYNC_CONSOLE_DIR",
        "",
        "folder of the web console served at / (default: clients/web of this checkout); 'none' serves no console",
        metavar="DIR",
    )
    gateway.add_argument(
        "--no-cache",
        action="store_true",
        help="keep no answers: every read calls the master "
        "(answers are kept only in front of one master with its store in memory)",
    )
    flag(
        "--cache-key-file",
        "IMSYNC_GATEWAY_CACHE_KEY_FILE",
        "",
        "file holding an API key with the 'gateway' "
        "scope, which a master with API keys asks of a gateway keeping answers (or the key itself in "
        "IMSYNC_GATEWAY_CACHE_KEY)",
        metavar="FILE",
    )
    flag(
        "--cache-max-bytes",
        "IMSYNC_CACHE_MAX_BYTES",
        64 * MiB,
        "bytes of answers kept, of which one API key holds at most a quarter",
        type=int,
        metavar="BYTES",
    )
    gateway.add_argument(
        "--metrics-on-port",
        action="store_true",
        help="also serve /metrics on the gateway's own port (for a Prometheus that reaches it there)",
    )
    _observed(flag)
    _http(flag)
    _clients(gateway)


def _tools(commands: Any) -> None:
    token = commands.add_parser(
        "worker-token",
        help="create (or rotate) a worker's token",
        description="Creates a token for WORKER_ID, stores its SHA-256 in FILE (replacing the worker's old one: "
        "a running master picks the change up) and prints the token once.",
    )
    token.add_argument("worker_id", metavar="WORKER_ID")
    token.add_argument(
        "--accounts",
        required=True,
        help="comma-separated account ids the worker may sync; '*' "
        "lets it sync any account, new ones included (an allowance to give on purpose: there is no "
        "default)",
    )
    _Flags(token)("--file", "IMSYNC_WORKER_TOKENS", "worker-tokens.toml", "the tokens file", metavar="FILE")

    key = commands.add_parser(
        "api-key",
        help="create or revoke an IM client's API key",
        description="Creates an API key limited to some accounts and scopes, storing only its SHA-256 in FILE "
        "(a running master picks the change up) and printing the key once; or revokes one.",
    )
    key.add_argument("action", choices=("create", "revoke"))
    key.add_argument("key_id", metavar="KEY_ID", help="a name for the key (who or what uses it)")
    key.add_argument(
        "--accounts",
        default="*",
        help="comma-separated account ids the key may use, or * for all (default %(default)s)",
    )
    key.add_argument(
        "--scopes",
        default="read",
        help="some of read, reply, login and gateway, comma-separated: "
        "read lists and marks, reply answers, login sees and answers the accounts' logins (QR codes, "
        "SMS codes), gateway lets a gateway keep answers of reads (default %(default)s)",
    )
    _Flags(key)("--file", "IMSYNC_API_KEYS", "api-keys.toml", "the keys file", metavar="FILE")

    account = commands.add_parser(
        "account",
        help="repair what the master holds of an account",
        description="reset-version: the master forgets which versions of the account it applied (keeping its "
        "entities, read marks, pins and replies); the owning worker then sends a whole snapshot. For an account "
        "a worker pushed to a version nothing can follow. With --data-dir, stop the master first.",
    )
    account.add_argument("action", choices=("reset-version",))
    account.add_argument("account_id", metavar="ACCOUNT_ID")
    flag = _Flags(account)
    flag("--data-dir", "IMSYNC_DATA_DIR", "", "the stopped master's data directory", metavar="DIR")
    flag("--store", "IMSYNC_STORE", "", "or the masters' Redis, e.g. redis://127.0.0.1:6379/0", metavar="URL")
    flag("--redis-prefix", "IMSYNC_REDIS_PREFIX", "imsync", "with --store")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="imsync", description="One live inbox for a team's social-platform accounts.")
    top.add_argument("--version", action="store_true", help="print imsync's version and exit")
    _common(top, top=True)
    commands = top.add_subparsers(dest="command")

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help, description=description)
        _common(sub, top=False)
        return sub

    _master(
        command(
            "master",
            "run the master: SyncService and the IM services (gRPC)",
            "Runs the master: SyncService for workers and the IM services, with gRPC health checking and reflection.",
        )
    )
    worker = command(
        "worker",
        "run a worker: crawl its accounts and sync them to the master",
        "Runs a worker: one "
        "Chromium, an account runner per account of its configuration, one SyncData stream to the "
        "master (docs/configuration.md).",
    )
    _Flags(worker)("--config", "IMSYNC_WORKER_CONFIG", "worker.toml", "the worker's TOML configuration", metavar="FILE")
    _observed(_Flags(worker))
    _gateway(
        command(
            "gateway",
            "run the REST gateway in front of a master",
            "Runs the grpc-gateway-compatible REST gateway; IM clients use /api/im/.",
        )
    )
    sim = command(
        "sim",
        "run the platform simulator",
        "Runs a local imitation of the platform's creator center "
        "(pages, the JSON they load, the chat push, the QR login) whose data changes over time; "
        "/__sim/truth shows what it holds, /__sim/faults makes it misbehave.",
    )
    flag = _Flags(sim)
    flag(
        "--listen",
        "IMSYNC_SIM_LISTEN",
        "127.0.0.1:8090",
        "HTTP address to listen on; port 0 picks a free port",
        metavar="HOST:PORT",
    )
    flag("--accounts", "IMSYNC_SIM_ACCOUNTS", 3, "simulated accounts", type=int)
    flag("--seed", "IMSYNC_SIM_SEED", 1, "seed of the generated data", type=int)
    flag("--rate", "IMSYNC_SIM_RATE", 6.0, "customers' actions per minute, over all accounts", type=float)
    _http(flag)
    demo = command(
        "demo",
        "start the simulator, a worker in headless Chromium, a master and a gateway here",
        "Starts the platform simulator, a worker crawling three of its accounts in headless Chromium, a "
        "master and a gateway on this machine, and prints the URLs to try. Ctrl-C stops everything.",
    )
    flag = _Flags(demo)
    flag(
        "--gateway-listen", "IMSYNC_GATEWAY_LISTEN", "127.0.0.1:8080", "where the gateway listens", metavar="HOST:PORT"
    )
    flag("--master-listen", "IMSYNC_MASTER_LISTEN", "127.0.0.1:50051", "where the master listens", metavar="HOST:PORT")
    flag("--interval", "IMSYNC_DEMO_INTERVAL", 5.0, "seconds between two crawls of an account", type=float)
    flag(
        "--sim-rate",
        "IMSYNC_DEMO_SIM_RATE",
        12.0,
        "customers' actions per minute on the simulated platform",
        type=float,
    )
    _tools(commands)
    for name in ("worker-token", "api-key", "account"):
        _common(commands.choices[name], top=False)
    return top
