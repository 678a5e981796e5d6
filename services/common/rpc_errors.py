"""google.rpc.Status values shared by the master, the gateway and the worker."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "imsync.dev"
# The longest description a status carries. It travels twice in the trailers (as
# grpc-message, percent-encoded: up to 9 bytes a character, and in the details), and a
# peer refuses trailers over 16 KiB (then reporting its own RESOURCE_EXHAUSTED in place of
# the status): what a caller sent (an id of 20,000 characters) is echoed shortened.
MAX_DESCRIPTION = 600


def bounded(text: str, limit: int = MAX_DESCRIPTION) -> str:
    """`text`, or for a longer one its beginning and end around how much was left out."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit // 2], text[-(limit // 4) :]
    return f"{head}…[{len(text) - len(head) - len(tail)} characters left out]…{tail}"


def error_status(
    code: int,
    description: str,
    *,
    field: str = "",
    reason: str = "",
    metadata: Mapping[str, str] | None = None,
    retry_after: float | None = None,
) -> status_pb2.Status:
    """A status whose message names the field, carrying the field in a BadRequest detail,
    a machine-readable reason in an ErrorInfo detail, and when to try again in RetryInfo.
    A description longer than MAX_DESCRIPTION is shortened (bounded)."""
    description = bounded(description)
    result = status_pb2.Status(code=code, message=f"{field}: {description}" if field else description)
    if field:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=description)]
            )
        )
        result.details.append(detail)
    if reason:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=dict(metadata or {})))
        result.details.append(detail)
    if retry_after is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromNanoseconds(int(retry_after * 1e9))
        detail = any_pb2.Any()
        detail.Pack(info)
        result.details.append(detail)
    return result


def retry_after_of(status: status_pb2.Status) -> float | None:
    """The seconds a RetryInfo detail asks to wait, or None."""
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            seconds: float = info.retry_delay.ToNanoseconds() / 1e9
            return seconds
    return None


def bad_request(field: str, description: str) -> status_pb2.Status:
    return error_status(code_pb2.INVALID_ARGUMENT, description, field=field)


def reason_of(status: status_pb2.Status) -> str:
    """The ErrorInfo reason of a status, or "" when it has none."""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


def field_of(status: status_pb2.Status) -> str:
    """The first BadRequest field of a status, or "" when it names none."""
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad) and bad.field_violations:
            return str(bad.field_violations[0].field)
    return ""
