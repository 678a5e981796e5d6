"""google.rpc.Status values shared by the master and the gateway."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2


def bad_request(field: str, description: str, *, code: int = code_pb2.INVALID_ARGUMENT) -> status_pb2.Status:
    """A status whose message names the field, with the field in a BadRequest detail."""
    result = status_pb2.Status(code=code, message=f"{field}: {description}" if field else description)
    if field:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=description)]
            )
        )
        result.details.append(detail)
    return result
