"""Who may read and answer which accounts: API keys for IM clients, kept hashed in TOML.

    [keys."team-a"]
    key_sha256 = "<hex sha-256 of the key>"
    accounts = ["douyin-001", "douyin-002"]   # or ["*"]: every account
    scopes = ["read", "reply"]                 # read: lists, gets, read marks, pins; reply: replies
                                               # login: the accounts' logins (QR codes, SMS codes)
                                               # gateway: a gateway keeping answers (cache.proto)
                                               # admin: the fleet's accounts and workers (fleet.proto)
    agent = "王芳"                             # optional: the person the key belongs to, recorded
                                               # with what they do (the replies they send)

The file is read again whenever it changes, so keys are created and revoked without a
restart (`imsync api-key create|revoke`). A master without a keys file serves every
client (the demo, a single trusted machine) and says so at start.

Permission comes before existence: a key asking about an account it may not use gets
PERMISSION_DENIED whether or not that account exists, and an id looked up without an
account is searched only in the key's accounts, so a key never learns what lies outside.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.common.rate_limit import RateLimiter
from services.master.auth.watched_file import WatchedToml, bearer_hash, replace_table, token_hash
from services.master.model.errors import PermissionDenied, ResourceExhausted, Unauthenticated

SCOPES = ("read", "reply", "login", "gateway", "admin")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ACCOUNT = re.compile(r"[^\s\"\\]{1,256}")


@dataclass(frozen=True)
class Access:
    """What one request may do."""

    key_id: str
    # None: every account.
    accounts: frozenset[str] | None
    scopes: frozenset[str]
    # The agent (a person of the team) the key belongs to; "" for a key of a program.
    agent: str = ""

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(f"this key lacks the {scope!r} scope")

    def may_use(self, account_id: str) -> bool:
        return self.accounts is None or account_id in self.accounts

    def check(self, account_id: str, field: str = "account_id") -> None:
        """Refuses an account the key may not use, in the same words whether it exists or not."""
        if account_id and not self.may_use(account_id):
            raise PermissionDenied(f"this key may not use account {account_id!r}", field=field)


EVERYTHING = Access("", None, frozenset(SCOPES))


def _parse_keys(document: dict[str, Any]) -> dict[str, Access]:
    """sha-256 hex -> the access the key grants."""
    loaded = {}
    for key_id, entry in document.get("keys", {}).items():
        accounts = [str(a) for a in entry["accounts"]]
        scopes = frozenset(str(s) for s in entry["scopes"]) & frozenset(SCOPES)
        loaded[str(entry["key_sha256"]).lower()] = Access(
            str(key_id), None if "*" in accounts else frozenset(accounts), scopes, str(entry.get("agent", ""))
        )
    return loaded


class SharedLimiter(Protocol):
    async def take(self, key: str) -> float: ...


class SharedSeats(Protocol):
    # How long a seat lasts unless renewed.
    seconds: float

    async def take(self, key_id: str, seat: str, most: int) -> bool: ...

    async def renew(self, key_id: str, seat: str) -> None: ...

    async def release(self, key_id: str, seat: str) -> None: ...


class ApiKeys:
    """The one gate of every IM call: who calls, within its rate, with the scope it needs."""

    def __init__(self, path: Path | None, limiter: RateLimiter | None = None) -> None:
        self.path = path
        self.limiter = limiter or RateLimiter(0, 1)
        # Set by a master over Redis: the rate counted across every master (redis/rate_limit.py).
        self.shared: SharedLimiter | None = None
        # Set by a master over Redis: event streams per key counted across every master.
        self.seats: SharedSeats | None = None
        empty: dict[str, Access] = {}
        self._file: WatchedToml[dict[str, Access]] | None = (
            WatchedToml(path, _parse_keys, empty, "API keys") if path is not None else None
        )

    def authorize(self, metadata: Sequence[tuple[str, str | bytes]], scope: str) -> Access:
        """What a request's `authorization: Bearer <key>` allows, once the key is known, within
        its rate (RESOURCE_EXHAUSTED with a retry delay beyond it) and holds `scope`."""
        access = self._identify(metadata)
        return self._within(access, self.limiter.take(access.key_id), scope)

    async def admit(self, metadata: Sequence[tuple[str, str | bytes]], scope: str) -> Access:
        """`authorize`, with the rate counted where every master counts it (`shared`, over
        Redis) when there is such a place."""
        if self.shared is None:
            return self.authorize(metadata, scope)
        access = self._identify(metadata)
        return self._within(access, await self.shared.take(access.key_id), scope)

    def _within(self, access: Access, wait: float, scope: str) -> Access:
        """`access`, if its rate left it a token (`wait` 0) and it holds `scope`."""
        if wait:
            raise ResourceExhausted(f"this key is over {self.limiter.rate:g} requests a second", retry_after=wait)
        access.require(scope)
        return access

    def access_of(self, metadata: Sequence[tuple[str, str | bytes]]) -> Access:
        """What the request's key allows now, without counting it against the key's rate
        (an open stream checking that its key still holds)."""
        return self._identify(metadata)

    def agents(self) -> frozenset[str] | None:
        """The agents the keys name (revoked keys' no longer); None without a keys file,
        where every caller may do everything and any name may be given."""
        if self._file is None:
            return None
        return frozenset(access.agent for access in self._file.current().values() if access.agent)

    def problem(self) -> str | None:
        """Why the keys file cannot be taken now; None when it can or there is none."""
        return self._file.problem() if self._file is not None else None

    def revision(self) -> int:
        """Moves whenever the keys file is taken again (read now, if it changed)."""
        if self._file is None:
            return 0
        self._file.current()
        return self._file.revision

    def _identify(self, metadata: Sequence[tuple[str, str | bytes]]) -> Access:
        if self._file is None:
            return EVERYTHING
        keys = self._file.current()
        # By the hash (watched_file.bearer_hash says why that is safe): at every request,
        # where a loop over every key made a team's requests cost more the more keys.
        access = keys.get(bearer_hash(metadata, "API key"))
        if access is None:
            raise Unauthenticated("unknown or revoked API key")
        return access


MAX_AGENT = 64


def check_agent(agent: str) -> None:
    """An agent's name: what the console shows beside what they did (any script, Chinese
    included), 1 to 64 printable characters without surrounding spaces."""
    if not agent or len(agent) > MAX_AGENT or not agent.isprintable() or agent != agent.strip():
        raise ValueError(f"{agent!r}: an agent's name is 1 to {MAX_AGENT} printable characters")


def create_api_key(path: Path, key_id: str, accounts: Iterable[str], scopes: Iterable[str], agent: str = "") -> str:
    """Creates a key (replacing one of the same id) and stores its hash; returns the key.
    `agent` names the person the key belongs to; what they do records it."""
    accounts, scopes = list(accounts), list(scopes)
    if agent:
        check_agent(agent)
    if not _NAME.fullmatch(key_id):
        raise ValueError(f"{key_id!r}: a key id is 1 to 64 letters, digits, '.', '_' or '-'")
    for account_id in accounts:
        if account_id != "*" and not _ACCOUNT.fullmatch(account_id):
            raise ValueError(f"{account_id!r} is not an account id")
    if not accounts:
        raise ValueError("name the accounts the key may use, or '*' for all")
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes are some of {', '.join(SCOPES)}, not {', '.join(sorted(unknown)) or 'none'}")
    key = "imk_" + secrets.token_urlsafe(32)

    def quoted(values: list[str]) -> str:
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    table = [
        f'[keys."{key_id}"]',
        f'key_sha256 = "{token_hash(key)}"',
        f"accounts = {quoted(accounts)}",
        f"scopes = {quoted(scopes)}",
        *([f"agent = {json.dumps(agent, ensure_ascii=False)}"] if agent else []),
    ]
    replace_table(path, "keys", key_id, table)
    return key


def revoke_api_key(path: Path, key_id: str) -> bool:
    """Removes a key; False when there was none of that id."""
    if not path.exists():
        return False
    return replace_table(path, "keys", key_id, [])
