"""The worker's metrics (Prometheus): how each account's crawls go, its login, what arrives
live, how replies end, and what the browser costs. Labels: account ids, outcomes, states."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

CRAWLS = Counter(
    "imsync_worker_crawls", "Crawls by outcome: whole, partial, failed, logged_out", ["account", "outcome"]
)
CRAWL_SECONDS = Histogram(
    "imsync_worker_crawl_seconds",
    "How long a crawl took",
    ["account"],
    buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120),
)
LOGIN_STATE = Gauge(
    "imsync_worker_login_state", "The account's login state (1 for the current one)", ["account", "state"]
)
LIVE_MESSAGES = Counter("imsync_worker_live_messages", "Messages caught live on the chat page", ["account"])
COMMANDS = Counter("imsync_worker_commands", "Commands performed, by action and outcome", ["action", "outcome"])
CONNECTED = Gauge("imsync_worker_master_connected", "1 while the worker's SyncData stream is open")
BROWSER_MEMORY = Gauge(
    "imsync_worker_browser_memory_bytes",
    "Proportional set size of the worker's browser (Chromium and Playwright's driver)",
)

LOGIN_STATES = ("logged_in", "logged_out", "logging_in")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def browser_memory() -> float:
    """PSS (bytes) of every process below this one: the browser and its driver."""
    tree = _children()
    total = 0
    frontier = list(tree.get(os.getpid(), []))
    while frontier:
        pid = frontier.pop()
        frontier += tree.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return float(total)


BROWSER_MEMORY.set_function(browser_memory)

CRAWL_OUTCOMES = ("whole", "partial", "failed", "logged_out")
# Every action and outcome counted from 0: a first failure is an increase, not a new series.
for _action in ("reply_to_comment", "send_message", "submit_login_code", "restart_login"):
    for _outcome in ("sent", "failed"):
        COMMANDS.labels(action=_action, outcome=_outcome)


def account_started(account: str) -> None:
    """The account's series, at 0 until something happens."""
    for outcome in CRAWL_OUTCOMES:
        CRAWLS.labels(account=account, outcome=outcome)


def login_state(account: str, state: str) -> None:
    for name in LOGIN_STATES:
        LOGIN_STATE.labels(account=account, state=name).set(1 if name == state else 0)
