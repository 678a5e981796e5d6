"""The one exception the client raises for a refused or failed call, with what the master
said decoded: its gRPC code, its message, the fields it named (google.rpc.BadRequest), the
reason it gave (google.rpc.ErrorInfo) and how long to wait (google.rpc.RetryInfo)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class ImsyncError(grpc.aio.AioRpcError):
    """A call the master refused or could not answer.

    Still a grpc.aio.AioRpcError (`code()`, `details()`), with the details decoded:

        try:
            await client.list_conversations(ListConversationsRequest(account_id=""))
        except ImsyncError as error:
            error.code()              # grpc.StatusCode.INVALID_ARGUMENT
            error.message             # "account_id: required"
            error.field_violations    # [FieldViolation("account_id", "required")]
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        initial_metadata: Any,
        trailing_metadata: Any,
        details: str | None = None,
        debug_error_string: str | None = None,
    ) -> None:
        super().__init__(code, initial_metadata, trailing_metadata, details, debug_error_string)
        self.field_violations: list[FieldViolation] = []
        # ErrorInfo: why, in a word the code can act on ("ACCOUNT_NOT_HELD", "KEY_REVOKED", ...).
        self.reason = ""
        self.domain = ""
        self.metadata: dict[str, str] = {}
        # RetryInfo: seconds to wait before trying again, when the master said.
        self.retry_after: float | None = None
        for detail in _status_of(trailing_metadata).details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                self.field_violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                self.reason, self.domain, self.metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                self.retry_after = retry.retry_delay.ToTimedelta().total_seconds()

    @classmethod
    def of(cls, error: grpc.aio.AioRpcError) -> ImsyncError:
        if isinstance(error, ImsyncError):
            return error
        return cls(
            error.code(),
            error.initial_metadata(),
            error.trailing_metadata(),
            error.details(),
            error.debug_error_string(),
        )

    @property
    def message(self) -> str:
        return self.details() or ""

    def __str__(self) -> str:
        text = f"{self.code().name}: {self.message}"
        if self.reason:
            text += f" [{self.reason}]"
        return text


def _status_of(trailing_metadata: Any) -> status_pb2.Status:
    for key, value in trailing_metadata or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a peer's garbage: no details
                break
    return status_pb2.Status()
