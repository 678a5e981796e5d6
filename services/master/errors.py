"""The store's errors. The store knows nothing of gRPC; status.py maps these to codes."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises on purpose."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.description = message


class InvalidArgument(StoreError):
    """The request or sync message is malformed; `field` names the bad field."""


class NotFound(StoreError):
    """The account or entity does not exist."""


class FailedPrecondition(StoreError):
    """The request is well formed but does not fit the current state (e.g. a stale version)."""
