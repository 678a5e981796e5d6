"""The master's errors. They know nothing of gRPC; rpc/status.py maps them to codes."""

from __future__ import annotations

from collections.abc import Mapping


class StoreError(Exception):
    """Base of every error raised on purpose. `field` names the culprit; `reason` is a
    machine-readable ErrorInfo reason for peers that act on it (e.g. a worker)."""

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.description = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        # Seconds after which trying again may succeed (RetryInfo).
        self.retry_after = retry_after


class InvalidArgument(StoreError):
    """The request or sync message is malformed."""


class NotFound(StoreError):
    """The account or entity does not exist."""


class FailedPrecondition(StoreError):
    """Well formed, but not for the current state (a base version that is not the master's,
    an account this worker does not own)."""


class AlreadyExists(StoreError):
    """A request id already used for something else."""


class ResourceExhausted(StoreError):
    """Over a limit: a message too large, a queue full."""


class OutOfRange(StoreError):
    """Past what is kept: events older than the bounded history."""


class Unavailable(StoreError):
    """The store cannot be reached for now; trying again later may succeed."""


class NotPersisted(Unavailable):
    """A change could not be made durable (the journal cannot write): nothing after it
    can be promised, and nothing is acknowledged."""

    def __init__(self, why: str) -> None:
        super().__init__(f"the master cannot store changes: {why}")


class Unauthenticated(StoreError):
    """No credentials, or credentials nobody issued."""


class PermissionDenied(StoreError):
    """Credentials that do not allow this."""
