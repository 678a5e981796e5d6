"""The flags of `imsync master`."""

from __future__ import annotations

import argparse

from .flags import MiB, _clients, _Flags, _http, _observed, seconds


def add_master_flags(master: argparse.ArgumentParser) -> None:
    flag = _Flags(master)
    flag.listen(
        "--listen",
        "IMSYNC_MASTER_LISTEN",
        "127.0.0.1:50051",
        "gRPC address to listen on; port 0 picks a free port",
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
    flag(
        "--session-keys",
        "IMSYNC_SESSION_KEYS",
        "",
        "the key ring workers' uploaded browser sessions are sealed with (make one with `imsync session-key "
        "create`); without it no session is kept and an account that moves to another worker logs in again",
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
    flag("--heartbeat-seconds", "IMSYNC_HEARTBEAT_SECONDS", 5.0, "heartbeat interval on sync streams", type=seconds)
    flag(
        "--lease-seconds",
        "IMSYNC_LEASE_SECONDS",
        15.0,
        "an account's owner keeps it this long after its last message",
        type=seconds,
    )
    flag(
        "--cache-lease-seconds",
        "IMSYNC_CACHE_LEASE_SECONDS",
        1.0,
        "how long a gateway keeping answers may go unheard before changes are acknowledged without it",
        type=seconds,
    )
    flag(
        "--command-ttl-seconds",
        "IMSYNC_COMMAND_TTL_SECONDS",
        300.0,
        "a reply not performed by then fails as expired",
        type=seconds,
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
        "--data-dir) or a Redis URL such as redis://127.0.0.1:6379/0, or "
        "redis+cluster://host:port,host:port for a Redis Cluster, shared by every master given it",
        metavar="memory|URL",
    )
    flag(
        "--redis-prefix",
        "IMSYNC_REDIS_PREFIX",
        "imsync",
        "prefix of every key in Redis, so that deployments can share one Redis",
    )
    flag(
        "--redis-wait-replicas",
        "IMSYNC_REDIS_WAIT_REPLICAS",
        0,
        "with a Redis --store: acknowledge a change only once this many Redis replicas (of each primary, on a "
        "Redis Cluster) have it (WAIT), "
        "so that a replica taking over from a dead primary keeps what was acknowledged",
        type=int,
        metavar="N",
    )
    flag(
        "--redis-wait-timeout",
        "IMSYNC_REDIS_WAIT_TIMEOUT",
        1.0,
        "with --redis-wait-replicas: seconds to wait for them; past it the change is not acknowledged (UNAVAILABLE)",
        type=seconds,
        metavar="SECONDS",
    )
    flag(
        "--master-id",
        "IMSYNC_MASTER_ID",
        "",
        "this master's name in the leases it holds in Redis (default host:pid:listen)",
    )
    flag.listen(
        "--gateway-listen",
        "IMSYNC_EMBEDDED_GATEWAY_LISTEN",
        "",
        "also serve the REST gateway and the console "
        "from this process, calling the services directly (single-machine use)",
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
    master.add_argument(
        "--gateway-no-cache",
        action="store_true",
        help="with --gateway-listen: keep no answers (every read is a page made anew)",
    )
    flag(
        "--encoded-max-bytes",
        "IMSYNC_ENCODED_MAX_BYTES",
        32 * MiB,
        "with --gateway-listen: bytes of entities kept encoded as JSON, in each of the two "
        "JSON styles, that pages are joined from (0 keeps none)",
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
