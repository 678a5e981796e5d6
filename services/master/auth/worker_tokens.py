"""Who may sync: per-worker bearer tokens, kept hashed in a TOML file.

    [workers.worker-1]
    token_sha256 = "<hex sha-256 of the token>"
    accounts = ["douyin-001", "douyin-002"]   # the accounts it may sync; ["*"] (the default): any

The file is read again whenever it changes, so tokens can be added, rotated or revoked
and accounts reassigned without a restart. `imsync worker-token WORKER_ID --file FILE`
adds one.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.master.auth.watched_file import WatchedToml, bearer_hash, replace_table, token_hash
from services.master.model.errors import Unauthenticated

_Workers = tuple[dict[str, str], dict[str, frozenset[str] | None]]


def _parse_workers(document: dict[str, Any]) -> _Workers:
    """sha-256 hex -> worker id, and worker id -> assigned accounts (None: any)."""
    workers = document.get("workers", {})
    hashes = {str(entry["token_sha256"]).lower(): str(worker) for worker, entry in workers.items()}
    assigned: dict[str, frozenset[str] | None] = {}
    for worker, entry in workers.items():
        accounts = [str(a) for a in entry.get("accounts", ["*"])]
        assigned[str(worker)] = None if "*" in accounts else frozenset(accounts)
    return hashes, assigned


class WorkerTokens:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        empty: _Workers = ({}, {})
        self._file: WatchedToml[_Workers] | None = (
            WatchedToml(path, _parse_workers, empty, "worker tokens") if path is not None else None
        )

    def _workers(self) -> _Workers:
        return self._file.current() if self._file is not None else ({}, {})

    def problem(self) -> str | None:
        """Why the tokens file cannot be taken now; None when it can or there is none."""
        return self._file.problem() if self._file is not None else None

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]]) -> tuple[str, str]:
        """The worker id a request's `authorization: Bearer <token>` belongs to, and the
        token's hash (to check later that it was not revoked meanwhile)."""
        presented = bearer_hash(metadata, "worker token")
        worker_id = self.holder_of(presented)
        if worker_id is not None:
            return worker_id, presented
        if self._path is None:
            raise Unauthenticated("this master has no worker tokens configured (--worker-tokens)")
        raise Unauthenticated("unknown or revoked worker token")

    def holder_of(self, hashed: str) -> str | None:
        """The worker a token hash belongs to now; None once it is revoked or rotated. Looked
        up by the hash (watched_file.bearer_hash says why that is safe): asked at every sync
        message, which a loop over every worker's token made cost more the more workers."""
        return self._workers()[0].get(hashed)

    def may_sync(self, worker_id: str, account_id: str) -> bool:
        """Whether the worker is assigned the account (the file is read again if it changed)."""
        assigned = self._workers()[1].get(worker_id)
        return assigned is None or account_id in assigned


def add_worker_token(path: Path, worker_id: str, accounts: Sequence[str]) -> str:
    """Creates a token for a worker (replacing its old one) and stores its hash and its
    assigned accounts (["*"]: any, which must be asked for); returns the token."""
    if not accounts or any(not account.strip() for account in accounts):
        raise ValueError("name the accounts the worker may sync (--accounts a,b), or allow any with --accounts '*'")
    token = secrets.token_urlsafe(32)
    listed = ", ".join(f'"{account}"' for account in accounts)
    table = [f'[workers."{worker_id}"]', f'token_sha256 = "{token_hash(token)}"', f"accounts = [{listed}]"]
    replace_table(path, "workers", worker_id, table)
    return token
