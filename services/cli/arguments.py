"""The `imsync` command's arguments: every flag has an environment variable and a default,
and says both in its help. Options shared by every command (the log's level and format)
are taken before or after the command's name."""

from __future__ import annotations

import argparse
from typing import Any

from . import fleet as fleet_cli
from .flags import MiB, _clients, _common, _Flags, _http, _observed, seconds
from .master_flags import add_master_flags


def _gateway(gateway: argparse.ArgumentParser) -> None:
    flag = _Flags(gateway)
    flag.listen(
        "--listen",
        "IMSYNC_GATEWAY_LISTEN",
        "127.0.0.1:8080",
        "HTTP address to listen on; port 0 picks a free port",
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
        help="some of read, reply, login, gateway and admin, comma-separated: "
        "read lists, marks and searches, reply answers, handles conversations (claims, notes, states) and "
        "templates, login sees and answers the accounts' logins (QR codes, "
        "SMS codes), gateway lets a gateway keep answers of reads, admin adds, pauses and removes accounts and sees "
        "the workers (default %(default)s)",
    )
    key.add_argument(
        "--agent",
        default="",
        help="the person of the team the key belongs to (any name, Chinese included): the replies, "
        "notes, claims and state changes made with the key record it",
    )
    _Flags(key)("--file", "IMSYNC_API_KEYS", "api-keys.toml", "the keys file", metavar="FILE")

    account = commands.add_parser(
        "account",
        help="add, import, pause, resume, remove and list the fleet's accounts; repair one",
        description="add, pause, resume, remove, list, workers: the accounts the masters assign to the workers "
        "that take scheduled accounts (workers with a capacity), through a master (--master, an --api-key with "
        "the admin scope). import WORKER_CONFIG: adds the accounts a worker config names ([[accounts]]) to the "
        "fleet. reset-version: the master forgets which versions of the account it applied (keeping "
        "its entities, read marks, pins and replies); the owning worker then sends a whole snapshot. For an "
        "account a worker pushed to a version nothing can follow. With --data-dir, stop the master first.",
    )
    account.add_argument("action", choices=(*fleet_cli.ACTIONS, "reset-version"))
    account.add_argument(
        "account_id", metavar="ACCOUNT_ID", nargs="?", default="", help="the account (import: a worker config file)"
    )
    flag = _Flags(account)
    fleet_cli.add_flags(account, flag)
    flag("--data-dir", "IMSYNC_DATA_DIR", "", "reset-version: the stopped master's data directory", metavar="DIR")
    flag("--store", "IMSYNC_STORE", "", "or the masters' Redis, e.g. redis://127.0.0.1:6379/0", metavar="URL")
    flag("--redis-prefix", "IMSYNC_REDIS_PREFIX", "imsync", "with --store")

    ring = commands.add_parser(
        "session-key",
        help="create a key for the masters' sealed sessions",
        description="Puts a new key first in FILE (made readable by its owner only): the masters seal the "
        "browser sessions workers upload with it (--session-keys) and open them with any key of the file. "
        "Restart the masters to use it; remove an old key once every session was uploaded again.",
    )
    ring.add_argument("action", choices=("create",))
    ring.add_argument("--key-id", default="", help="the new key's name (default: a random one)")
    _Flags(ring)("--file", "IMSYNC_SESSION_KEYS", "session-keys", "the key ring", metavar="FILE")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="imsync", description="One live inbox for a team's social-platform accounts.")
    top.add_argument("--version", action="store_true", help="print imsync's version and exit")
    _common(top, top=True)
    commands = top.add_subparsers(dest="command")

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help, description=description)
        _common(sub, top=False)
        return sub

    add_master_flags(
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
    flag.listen(
        "--listen",
        "IMSYNC_SIM_LISTEN",
        "127.0.0.1:8090",
        "HTTP address to listen on; port 0 picks a free port",
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
    flag.listen(
        "--gateway-listen",
        "IMSYNC_GATEWAY_LISTEN",
        "127.0.0.1:8080",
        "where the gateway listens",
    )
    flag.listen(
        "--master-listen",
        "IMSYNC_MASTER_LISTEN",
        "127.0.0.1:50051",
        "where the master listens",
    )
    flag("--interval", "IMSYNC_DEMO_INTERVAL", 5.0, "seconds between two crawls of an account", type=seconds)
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
