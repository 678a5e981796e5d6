"""The seam between the worker and a platform: what a crawl returns, what a command does."""

from __future__ import annotations

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


class CrawlFailed(Exception):
    """Nothing usable came back (logged out, page never loaded, browser gone)."""

    def __init__(self, message: str, *, login_state: e.LoginState.ValueType = e.LOGIN_STATE_UNSPECIFIED) -> None:
        super().__init__(message)
        self.login_state = login_state


class PlatformAdapter(Protocol):
    async def crawl(self) -> CrawlResult: ...

    async def perform(self, command: sync_pb2.Command) -> sync_pb2.CommandResult: ...

    async def close(self) -> None: ...
