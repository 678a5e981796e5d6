"""The commands a worker began, and how each ended, kept on disk.

A master delivers a command again when it has no result for it: after the worker's stream
broke, after the worker restarted. The engine answers a command it still remembers with
the same result, without performing it again; this file is what lets a restarted worker
remember. Each command is written as begun, and synced, before the worker touches the
platform, and its result once it has one. A command found begun without a result is one
the worker stopped while performing: whether it reached the customer cannot be known
here, so it is not performed again but answered FAILURE_REASON_OUTCOME_UNKNOWN, for a
person to look before sending it once more.

Commands are few (each is a person's reply), so every call opens the file, does its one
statement and closes it; the engine calls these on a thread. A command is kept under its
account and request id (`request_id` holds both, "<account>\n<request id>"): request ids
are per account, and two accounts may use the same one.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    request_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    begun_at REAL NOT NULL,
    result BLOB
)
"""
# A log of an earlier version kept request ids alone.
_REKEY = "UPDATE commands SET request_id = account_id || char(10) || request_id WHERE instr(request_id, char(10)) = 0"


def _key(account_id: str, request_id: str) -> str:
    return f"{account_id}\n{request_id}"


class CommandLogError(Exception):
    """The log cannot be opened: the worker must not perform commands without it."""


class CommandLog:
    def __init__(self, path: Path, *, keep: int = 10_000) -> None:
        """Opens (or creates) the log at `path`; keeps the newest `keep` commands."""
        self.path = path
        self.keep = keep
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db, db:
                db.execute(_SCHEMA)
                db.execute(_REKEY)
        except (OSError, sqlite3.Error) as error:
            raise CommandLogError(f"command log {path}: {error}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA synchronous = FULL")
        return db

    def prior(self, account_id: str, request_id: str) -> sync_pb2.CommandResult | None:
        """How the command ended, if it was begun here: its result, or, begun without one,
        a failure saying its outcome is unknown. None: never begun."""
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT result FROM commands WHERE request_id = ?", (_key(account_id, request_id),)
            ).fetchone()
        if row is None:
            return None
        if row[0] is None:
            return sync_pb2.CommandResult(
                outcome=sync_pb2.COMMAND_OUTCOME_FAILED,
                reason=e.FAILURE_REASON_OUTCOME_UNKNOWN,
                # The reason says what to do (the console shows both).
                message="begun before the worker restarted; no result was recorded",
            )
        return sync_pb2.CommandResult.FromString(row[0])

    def begin(self, command: sync_pb2.Command) -> None:
        """Records the command as begun; returns once that is on disk."""
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO commands (request_id, account_id, begun_at) VALUES (?, ?, ?)",
                (_key(command.account_id, command.request_id), command.account_id, time.time()),
            )

    def finish(self, account_id: str, request_id: str, result: sync_pb2.CommandResult) -> None:
        """Records how the command ended, and forgets the oldest beyond `keep`."""
        with closing(self._connect()) as db, db:
            db.execute(
                "UPDATE commands SET result = ? WHERE request_id = ?",
                (result.SerializeToString(), _key(account_id, request_id)),
            )
            db.execute("DELETE FROM commands WHERE rowid <= (SELECT max(rowid) FROM commands) - ?", (self.keep,))
