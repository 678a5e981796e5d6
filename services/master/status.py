"""The one place where the store's errors become gRPC statuses."""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from services.common.rpc_errors import bad_request

from .errors import FailedPrecondition, InvalidArgument, NotFound, StoreError

_CODES: dict[type[StoreError], int] = {
    InvalidArgument: code_pb2.INVALID_ARGUMENT,
    NotFound: code_pb2.NOT_FOUND,
    FailedPrecondition: code_pb2.FAILED_PRECONDITION,
}


def rpc_status_of(error: StoreError) -> status_pb2.Status:
    """A google.rpc.Status for a store error; a named field travels as a BadRequest detail."""
    code = next((code for kind, code in _CODES.items() if isinstance(error, kind)), code_pb2.INTERNAL)
    return bad_request(error.field, error.description, code=code)


def grpc_status_of(error: StoreError) -> grpc.Status:
    status: grpc.Status = rpc_status.to_status(rpc_status_of(error))
    return status
