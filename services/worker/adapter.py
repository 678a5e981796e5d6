"""The seam between the worker and a platform: what a crawl returns, what a command does,
how a login is relayed to an operator, and how new messages arrive live."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2

from .account_state import AccountView


@dataclass(frozen=True)
class CrawlResult:
    view: AccountView
    # Collections ("messages", ...) the crawl saw whole; the others only partly.
    complete: frozenset[str]
    login_state: e.LoginState.ValueType = e.LOGIN_STATE_LOGGED_IN
    # What went wrong with the parts it did not see, if anything.
    errors: list[str] = field(default_factory=list)
    # Collection -> what of it the crawl missed and why (the collections not whole).
    missed: dict[str, str] = field(default_factory=dict)


class CrawlFailed(Exception):
    """Nothing usable came back (logged out, page never loaded, browser gone)."""

    def __init__(
        self, message: str, *, login_state: e.LoginState.ValueType = e.LOGIN_STATE_UNSPECIFIED, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.login_state = login_state
        # A short code: LOGIN_EXPIRED, PAGE_TIMEOUT, UNREADABLE_ANSWER, BROWSER_ERROR.
        self.reason = reason or ("LOGIN_EXPIRED" if login_state == e.LOGIN_STATE_LOGGED_OUT else "BROWSER_ERROR")


class LoginFailed(Exception):
    """A login did not end logged in; the message says why, for the operator."""

    def __init__(self, message: str, *, reason: str = "LOGIN_FAILED") -> None:
        super().__init__(message)
        self.reason = reason


class LoginOperator(Protocol):
    """The person at the console, as a login flow sees them (the worker relays both ways)."""

    def challenge(self, challenge: e.LoginChallenge | None) -> None:
        """Shows what the platform asks now, or (None) that it asks nothing any more."""
        ...

    async def next_code(self, timeout: float) -> str:
        """The next code an operator types; TimeoutError when none came in time."""
        ...

    def code_answered(self, accepted: bool, message: str) -> None:
        """Tells the operator who typed the last code whether the platform took it."""
        ...


# Hears entities that arrived live (a new message as the chat page received it).
LiveSink = Callable[[sync_pb2.EntityBatch], None]


class PlatformAdapter(Protocol):
    # The collections a crawl reads ("contents", "comments", ...).
    collections: tuple[str, ...]

    async def crawl(self) -> CrawlResult: ...

    async def perform(self, command: sync_pb2.Command) -> sync_pb2.CommandResult: ...

    async def log_in(self, operator: LoginOperator) -> None:
        """Logs the account in, relaying what the platform asks to `operator`; returns
        once logged in, raises LoginFailed when it gave up."""
        ...

    async def watch(self, sink: LiveSink) -> None:
        """Hands `sink` what arrives live until cancelled; returns (or raises CrawlFailed)
        when it can no longer watch, to be started again later."""
        ...

    async def close(self) -> None: ...
