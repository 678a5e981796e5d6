"""The master's metrics (Prometheus): instruments only, no gRPC (api/interceptor.py counts
and times the calls with them).

Labels are bounded: gRPC services, methods and codes; sync outcomes and the reasons of
refusals; reply states and failure reasons; account ids (at most --max-accounts of them).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from services.master.model.commands import CommandRecord, is_reply

log = logging.getLogger("imsync.replies")

GRPC_HANDLED = Counter(
    "imsync_grpc_server_handled",
    "gRPC calls the master finished, by method and code",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_SECONDS = Histogram(
    "imsync_grpc_server_handling_seconds",
    "How long the master took per gRPC call (streams: their whole life)",
    ["grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
SYNC_VERSIONS = Counter(
    "imsync_sync_versions",
    "Sync versions (snapshots and deltas) applied or refused, with the refusal's reason",
    ["kind", "outcome", "reason"],
)
SYNC_ACK_SECONDS = Histogram(
    "imsync_sync_ack_seconds",
    "From a version's last message received to its Ack sent (after its fsync)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
SYNC_BYTES = Counter("imsync_sync_received_bytes", "Bytes of sync messages received, per account", ["account"])
SYNC_ENTITIES = Counter(
    "imsync_sync_received_entities", "Entities received in snapshots and deltas, per account", ["account"]
)
JOURNAL_COMMIT_SECONDS = Histogram(
    "imsync_journal_commit_seconds",
    "How long one journal commit (a group of changes, one fsync) took",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
JOURNAL_COMMIT_OPERATIONS = Histogram(
    "imsync_journal_commit_operations",
    "Changes written by one journal commit",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 1000),
)
JOURNAL_STALLED = Gauge("imsync_journal_stalled", "1 while the journal cannot write (nothing is acknowledged)")
REPLIES = Counter("imsync_replies", "Replies that reached a state, with the failure's reason", ["state", "reason"])
EVENTS = Counter("imsync_events_published", "Events published to live clients, by type", ["type"])
EVENT_SUBSCRIBERS = Gauge("imsync_event_subscribers", "Open event streams")
EVENT_LAG = Gauge("imsync_event_subscriber_lag_max", "Events the furthest-behind subscriber has yet to take")
EVENT_DROPPED = Counter("imsync_event_subscribers_dropped", "Subscribers cut off for falling too far behind")
FLEET_ASSIGNMENTS = Counter(
    "imsync_fleet_assignments", "Managed accounts given to a worker by this master, by why", ["reason"]
)
FLEET_RELEASES = Counter("imsync_fleet_releases", "Managed accounts asked back from a worker, by why", ["reason"])
FLEET_WAITING = Gauge(
    "imsync_fleet_accounts_waiting", "Managed accounts not paused that no worker with room could be given"
)
WORKER_ONLINE = Gauge(
    "imsync_account_worker_online", "1 while a worker's stream to this master holds the account", ["account"]
)
CRAWL_STATE = Gauge(
    "imsync_account_crawl_state",
    "The account's crawl state as its worker last reported it (1 for the current one)",
    ["account", "state"],
)
LOGIN_STATE = Gauge(
    "imsync_account_login_state",
    "The account's login state as its worker last reported it (1 for the current one)",
    ["account", "state"],
)
SERVING = Gauge("imsync_health_serving", "1 while the master serves (not draining, its journal and Redis fine)")
CACHE_INVALIDATIONS = Counter("imsync_cache_invalidations_sent", "Invalidations sent to gateways keeping answers")

# Every event type counted from the start (at 0), so that a rate over it exists before the first one.
for _type in ev.EventType.keys():
    if _type != "EVENT_TYPE_UNSPECIFIED":
        EVENTS.labels(type=_type.removeprefix("EVENT_TYPE_").lower())

# Every reply state and failure reason, likewise: the first failure is an increase, not a new series.
for _state in ("pending", "sent"):
    REPLIES.labels(state=_state, reason="")
for _reason in e.FailureReason.keys():
    REPLIES.labels(
        state="failed",
        reason=_reason.removeprefix("FAILURE_REASON_").lower() if _reason != "FAILURE_REASON_UNSPECIFIED" else "",
    )

CRAWL_STATES = ("crawling", "whole", "partial", "failing", "needs_login")
LOGIN_STATES = ("logged_in", "logged_out", "logging_in")


SNAPSHOTS_APPLIED = SYNC_VERSIONS.labels(kind="snapshot", outcome="applied", reason="")
DELTAS_APPLIED = SYNC_VERSIONS.labels(kind="delta", outcome="applied", reason="")


def set_one_hot(gauge: Gauge, account: str, states: tuple[str, ...], current: str) -> None:
    for state in states:
        gauge.labels(account=account, state=state).set(1 if state == current else 0)


def observe_reply(record: CommandRecord) -> None:
    """A reply that reached a state: counted (failures by reason) and logged, without its text.
    Logged as it is taken, the line carries the request id of the call that sent it."""
    if is_reply(record.command):
        result = record.result
        reason = (
            e.FailureReason.Name(result.reason).removeprefix("FAILURE_REASON_").lower()
            if result and result.reason
            else ""
        )
        REPLIES.labels(state=record.state.value, reason=reason).inc()
        command = record.command
        if record.result is None:
            log.info("reply %r of account %r: pending, for its worker to send", command.request_id, command.account_id)
        else:
            log.info(
                "reply %r of account %r: %s%s",
                command.request_id,
                command.account_id,
                record.state.value,
                f" ({reason})" if reason else "",
            )
