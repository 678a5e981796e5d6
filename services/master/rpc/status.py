"""The one place where the master's errors become gRPC statuses."""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from services.common.rpc_errors import error_status
from services.master.model.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    StoreError,
    Unauthenticated,
    Unavailable,
)

_CODES: dict[type[StoreError], int] = {
    InvalidArgument: code_pb2.INVALID_ARGUMENT,
    NotFound: code_pb2.NOT_FOUND,
    FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    AlreadyExists: code_pb2.ALREADY_EXISTS,
    ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    OutOfRange: code_pb2.OUT_OF_RANGE,
    Unauthenticated: code_pb2.UNAUTHENTICATED,
    PermissionDenied: code_pb2.PERMISSION_DENIED,
    Unavailable: code_pb2.UNAVAILABLE,
}


def rpc_status_of(error: StoreError) -> status_pb2.Status:
    """A google.rpc.Status for an error, naming its field and reason in details."""
    # The nearest class with a code: NotPersisted (a journal that cannot write, replicas
    # that do not answer) is an Unavailable.
    code = next((_CODES[cls] for cls in type(error).__mro__ if cls in _CODES), code_pb2.INTERNAL)
    return error_status(
        code,
        error.description,
        field=error.field,
        reason=error.reason,
        metadata=error.metadata,
        retry_after=error.retry_after,
    )


def grpc_status_of(error: StoreError) -> grpc.Status:
    status: grpc.Status = rpc_status.to_status(rpc_status_of(error))
    return status
