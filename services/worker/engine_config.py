"""What a worker's sync engine (sync_engine.py) is told, and how the master asks it to go."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imsync_client.sync import DEFAULT_CHUNK_BYTES
from services.common.tls import ClientTls


@dataclass(frozen=True)
class EngineConfig:
    master: str
    worker_id: str
    token: str
    # Unacknowledged versions per account before new crawls are coalesced.
    window: int = 8
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    # The master is taken for gone after this many heartbeat intervals of silence.
    liveness_intervals: float = 3.0
    # Seconds for a stream's headers to go out to the master before it is tried again
    # (welcome.py).
    connect_timeout: float = 5.0
    # Results of performed commands kept to answer a command delivered again.
    remembered_results: int = 10_000
    # Where the commands begun and their results are kept across restarts (command_log.py);
    # None: in memory only, so a restarted worker may perform a command again.
    command_log: Path | None = None
    # TLS to the master; None speaks plain text.
    tls: ClientTls | None = None
    # A worker taking what the master assigns (fleet.proto): its room (0: none), labels and
    # concurrent crawls.
    capacity: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    crawls: int = 0


class GoAway(Exception):
    """The master is stopping and asked to be called again after `delay` seconds."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


__all__ = ["EngineConfig", "GoAway"]
