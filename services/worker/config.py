"""The worker's configuration file (TOML).

master = "127.0.0.1:50051"
worker_id = "worker-1"
token_file = "worker-1.token"     # or token = "...", or env IMSYNC_WORKER_TOKEN
crawl_interval = 30                # seconds between two crawls of an account
crawl_jitter = 0.2                 # +-20% of the interval, so accounts do not crawl in step
crawl_timeout = 120                # a crawl taking longer is abandoned and reported
max_concurrent_crawls = 4          # accounts crawled at once (one Chromium, a context each)
login_retry = 600                  # seconds before a login that gave up starts again by itself
headless = true                    # false to watch the browser work
window = 8                         # unacknowledged versions per account before coalescing
command_log = "commands.sqlite3"   # the replies begun and their results, kept across restarts
tls_ca = "certs/ca.pem"            # TLS to the master: the CA that signed its certificate ...
tls_cert = "certs/worker-1.pem"    # ... and, for a master that demands one, this worker's
tls_key = "certs/worker-1.key"     #     certificate and key (paths relative to this file)

capacity = 20                      # take up to 20 accounts the master assigns (imsync account add);
labels = { region = "sh" }         #   an account asking for labels goes to workers offering them;
state_dir = "state"                #   their sessions, as the master hands them over

# ... or, the older form, name the accounts here (no capacity; `imsync account import` moves them):
[[accounts]]
account_id = "douyin-001"
adapter = "douyin"                 # the creator center in Chromium
base_url = "https://creator.douyin.com"   # or the simulator's address
storage_state = "state/douyin-001.json"   # the logged-in session (cookies) on disk
login_uid = "60001000"             # simulator only: its login form's account ...
login_password = "sim"             # ... and password; otherwise the login's QR code
                                   #     is relayed to the console
page_timeout = 20                  # seconds a page may take
qr_refreshes = 3                   # new QR codes after the first expires, then give up
code_wait = 300                    # seconds an operator may take to type an SMS code
live_chat = true                   # keep the chat page open: new messages sent at once

[[accounts]]
account_id = "sample-001"
adapter = "sample"                 # generated data that grows by itself (tests)
seed = 1
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.tls import ClientTls


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AccountConfig:
    account_id: str
    adapter: str
    options: dict[str, Any]


@dataclass(frozen=True)
class WorkerConfig:
    master: str
    worker_id: str
    token: str
    accounts: tuple[AccountConfig, ...]
    crawl_interval: float = 30.0
    crawl_jitter: float = 0.2
    crawl_timeout: float = 120.0
    max_concurrent_crawls: int = 4
    login_retry: float = 600.0
    headless: bool = True
    window: int = 8
    tls: ClientTls | None = None
    # Replies begun and their results (command_log.py); relative paths are to the file's folder.
    command_log: Path | None = None
    # A scheduled worker (no [[accounts]]): how many accounts the master may give it, the
    # labels it offers, and where it keeps their sessions.
    capacity: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    state_dir: Path | None = None


_ADAPTERS = ("douyin", "sample")


def _require(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or (isinstance(value, str) and not value):
        raise ConfigError(f"{where}{key}: required, a {kind.__name__}")
    return value


def _token(raw: dict[str, Any], path: Path) -> str:
    token = os.environ.get("IMSYNC_WORKER_TOKEN") or raw.get("token")
    if not token and "token_file" in raw:
        token_path = (path.parent / str(raw["token_file"])).resolve()
        try:
            token = token_path.read_text().strip()
        except OSError as error:
            raise ConfigError(f"token_file: {error}") from None
    if not token:
        raise ConfigError("token: required (token, token_file or env IMSYNC_WORKER_TOKEN)")
    return str(token)


def load_worker_config(path: Path, *, with_token: bool = True) -> WorkerConfig:
    """The config at `path`, checked. `with_token=False` (reading only its accounts, as
    `imsync account import` does, perhaps on another machine) leaves the token unread."""
    # (A ConfigError's message is shown after the file's name: its caller names the file.)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(error.strerror or str(error)) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not TOML: {error}") from None
    token = _token(raw, path) if with_token else ""
    accounts = []
    seen: set[str] = set()
    for index, table in enumerate(raw.get("accounts", [])):
        where = f"accounts[{index}]."
        account_id = _require(table, "account_id", str, where)
        adapter = _require(table, "adapter", str, where)
        if adapter not in _ADAPTERS:
            raise ConfigError(f"{where}adapter: {adapter!r} is not one of {', '.join(_ADAPTERS)}")
        if account_id in seen:
            raise ConfigError(f"{where}account_id: {account_id!r} appears twice")
        seen.add(account_id)
        options = {k: v for k, v in table.items() if k not in ("account_id", "adapter")}
        if adapter == "douyin":
            _require(table, "base_url", str, where)
            if "profile_dir" in table:
                raise ConfigError(
                    f"{where}profile_dir: the worker keeps each account's session in a storage state file now; "
                    f'write storage_state = "state/{account_id}.json" (and log the account in again)'
                )
            options["storage_state"] = str(path.parent / str(options.get("storage_state", f"state/{account_id}.json")))
            for key in ("page_timeout", "qr_refreshes", "code_wait"):
                if key in options and (not isinstance(options[key], (int, float)) or options[key] < 0):
                    raise ConfigError(f"{where}{key}: must be a non-negative number")
            if not isinstance(options.get("live_chat", True), bool):
                raise ConfigError(f"{where}live_chat: must be true or false")
        accounts.append(AccountConfig(account_id, adapter, options))
    capacity = raw.get("capacity", 0)
    if not isinstance(capacity, int) or isinstance(capacity, bool) or not 0 <= capacity <= 10_000:
        raise ConfigError("capacity: must be an integer from 1 to 10000")
    if capacity and accounts:
        raise ConfigError(
            "capacity: a worker either names its accounts ([[accounts]]) or takes those the master assigns "
            "(capacity), not both"
        )
    if not accounts and not capacity:
        raise ConfigError("capacity: required (the accounts the master may assign), or [[accounts]] tables")
    labels = raw.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 63 and 0 < len(v) <= 63 for k, v in labels.items()
    ):
        raise ConfigError('labels: a table of short strings, e.g. labels = { region = "sh" }')
    state_dir = raw.get("state_dir", "state")
    if not isinstance(state_dir, str) or not state_dir:
        raise ConfigError("state_dir: must be a folder name")
    numbers = {}
    for key, default in (
        ("crawl_interval", 30.0),
        ("crawl_jitter", 0.2),
        ("crawl_timeout", 120.0),
        ("login_retry", 600.0),
    ):
        value = raw.get(key, default)
        if not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{key}: must be a non-negative number")
        numbers[key] = float(value)
    tls = None
    if "tls_ca" in raw:
        files = {key: path.parent / str(raw[key]) for key in ("tls_ca", "tls_cert", "tls_key") if key in raw}
        for key, file in files.items():
            if not file.is_file():
                raise ConfigError(f"{key}: {file} is not a file")
        if ("tls_cert" in files) != ("tls_key" in files):
            raise ConfigError("tls_cert and tls_key: give both or neither")
        tls = ClientTls(files["tls_ca"], files.get("tls_cert"), files.get("tls_key"))
    elif "tls_cert" in raw or "tls_key" in raw:
        raise ConfigError("tls_ca: required with tls_cert and tls_key")
    window = raw.get("window", 8)
    if not isinstance(window, int) or window < 1:
        raise ConfigError("window: must be a positive integer")
    concurrent = raw.get("max_concurrent_crawls", 4)
    if not isinstance(concurrent, int) or isinstance(concurrent, bool) or concurrent < 1:
        raise ConfigError("max_concurrent_crawls: must be a positive integer")
    headless = raw.get("headless", True)
    if not isinstance(headless, bool):
        raise ConfigError("headless: must be true or false")
    command_log = raw.get("command_log", "commands.sqlite3")
    if not isinstance(command_log, str) or not command_log:
        raise ConfigError("command_log: must be a file name")
    return WorkerConfig(
        master=_require(raw, "master", str, ""),
        worker_id=_require(raw, "worker_id", str, ""),
        token=token,
        accounts=tuple(accounts),
        window=window,
        max_concurrent_crawls=concurrent,
        headless=headless,
        tls=tls,
        command_log=path.parent / command_log,
        capacity=capacity,
        labels=tuple(sorted(labels.items())),
        state_dir=path.parent / state_dir,
        **numbers,
    )
