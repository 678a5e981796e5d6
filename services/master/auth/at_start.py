"""What a master says of its credential files as it starts: a file it cannot take stops it
(later, a change that breaks one keeps what was taken before); once it has its address, a
file missing, or none given, is warned of."""

from __future__ import annotations

import logging
from pathlib import Path

from services.master.auth.api_keys import ApiKeys
from services.master.auth.worker_tokens import WorkerTokens

log = logging.getLogger("services.master.server")


def refusal(worker_tokens: Path | None, api_keys: Path | None, tokens: WorkerTokens, keys: ApiKeys) -> str | None:
    """Why the master cannot start on these files; None when it can."""
    for name, path, problem in (
        ("--worker-tokens", worker_tokens, tokens.problem()),
        ("--api-keys", api_keys, keys.problem()),
    ):
        if problem is not None:
            return f"{name} {path}: {problem}"
    return None


def warn_of_missing(worker_tokens: Path | None, api_keys: Path | None, session_keys: Path | None) -> None:
    """Warns of what the master runs without."""
    for name, path in (("--worker-tokens", worker_tokens), ("--api-keys", api_keys)):
        if path is not None and not path.is_file():
            log.warning("%s %s: no such file; nothing is allowed until it exists", name, path)
    if worker_tokens is None:
        log.warning("no --worker-tokens file: every worker will be refused")
    if api_keys is None:
        log.warning("no --api-keys file: every IM client may read and answer every account")
    if session_keys is None:
        log.warning("no --session-keys file: sessions workers upload are refused; an account that moves logs in again")
