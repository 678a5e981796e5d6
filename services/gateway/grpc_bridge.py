"""What crosses between HTTP and gRPC besides the messages: metadata, deadlines, statuses."""

from __future__ import annotations

import re
from typing import Any

import grpc
from google.rpc import code_pb2, status_pb2
from starlette.datastructures import Headers

_METADATA_PREFIX = "grpc-metadata-"
_TIMEOUT = re.compile(r"(\d{1,8})([HMSmun])")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class MalformedTimeout(ValueError):
    pass


def outgoing_metadata(
    headers: Headers, client_host: str | None, trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"})
) -> list[tuple[str, str]]:
    """grpc-gateway's default header matching: Authorization and Grpc-Metadata-* go through.

    X-Forwarded-For is extended with the peer's address; the chain it brought is kept only
    when the peer is a trusted proxy (anyone else could write anything there)."""
    metadata: list[tuple[str, str]] = []
    for key, value in headers.items():
        if key == "authorization":
            metadata.append(("authorization", value))
        elif key.startswith(_METADATA_PREFIX) and len(key) > len(_METADATA_PREFIX):
            metadata.append((key[len(_METADATA_PREFIX):], value))
    if "host" in headers:
        metadata.append(("x-forwarded-host", headers["host"]))
    if client_host:
        forwarded = headers.get("x-forwarded-for") if client_host in trusted_proxies else None
        metadata.append(("x-forwarded-for", f"{forwarded}, {client_host}" if forwarded else client_host))
    return metadata


def timeout_of(headers: Headers) -> float | None:
    """Seconds from a Grpc-Timeout header ("10S", "500m"), None when absent."""
    text = headers.get("grpc-timeout")
    if text is None:
        return None
    found = _TIMEOUT.fullmatch(text.strip())
    if found is None:
        raise MalformedTimeout(text)
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def incoming_headers(metadata: Any) -> dict[str, str]:
    """Response header metadata as Grpc-Metadata-* headers."""
    if not metadata:
        return {}
    return {
        f"Grpc-Metadata-{key}": value
        for key, value in metadata
        if isinstance(value, str) and not key.startswith("grpc-")
    }


def status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status of a failed call, with its details when the server sent them."""
    trailing: Any = error.trailing_metadata() or ()
    for key, value in trailing:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a peer's garbage is not our crash
                break
    code = error.code().value[0] if error.code() is not None else code_pb2.UNKNOWN
    return status_pb2.Status(code=code, message=error.details() or "")
