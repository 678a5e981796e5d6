"""What crosses between HTTP and gRPC besides the messages: metadata, deadlines, statuses."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Iterable
from typing import Any

import grpc
from google.rpc import code_pb2, status_pb2
from starlette.datastructures import Headers

from services.common.logs import Throttle
from services.common.rpc_errors import error_status

log = logging.getLogger(__name__)
_METADATA_PREFIX = "grpc-metadata-"
_TIMEOUT = re.compile(r"(\d{1,8})([HMSmun])")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# The longest deadline a call is given: a longer Grpc-Timeout is taken as this.
MAX_TIMEOUT_SECONDS = 86_400.0
# What gRPC takes as metadata by default is 8 KiB; what a client brings must leave room
# for what the gateway adds (its host, the forwarded-for chain).
MAX_METADATA_BYTES = 6 * 1024
# The entries of an X-Forwarded-For chain kept from a trusted proxy: the nearest ones.
MAX_FORWARDED = 16
_KEY = re.compile(r"[0-9a-z_.-]+")
PRINTABLE = re.compile(r"[\x20-\x7e]*")
# Headers gRPC or HTTP/2 own, which a client may not set as metadata.
_RESERVED = frozenset(
    {"content-type", "te", "host", "user-agent", "connection", "keep-alive", "transfer-encoding", "upgrade"}
)


class MalformedTimeout(ValueError):
    pass


class BadHeader(ValueError):
    """A request header the gateway will not pass on, with the HTTP status it answers."""

    def __init__(self, header: str, why: str, http_status: int = 400) -> None:
        super().__init__(why)
        self.header = header
        self.why = why
        self.http_status = http_status


def identity_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The one `authorization` a request brings (as Authorization or as
    Grpc-Metadata-Authorization), "" when none; BadHeader when it brings several: a
    request has one identity, the one the master authorizes and answers are kept under."""
    found = ""
    for name, value in headers:
        if name == b"authorization" or name == b"grpc-metadata-authorization":
            if found:
                raise BadHeader(
                    "Authorization", "given more than once (Authorization and Grpc-Metadata-Authorization count as one)"
                )
            found = value.decode("latin-1") or " "
    return found.strip()


def outgoing_metadata(
    headers: Headers, client_host: str | None, trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"})
) -> list[tuple[str, str | bytes]]:
    """grpc-gateway's default header matching: Authorization and Grpc-Metadata-* go through,
    once each checked as gRPC will take it (BadHeader, 400, otherwise: a name gRPC or HTTP/2
    owns, a value that is not printable ASCII, a `-bin` value that is not base64; 431 when
    they are more than the master takes).

    X-Forwarded-For is extended with the peer's address; the chain it brought is kept only
    when the peer is a trusted proxy (anyone else could write anything there), and only its
    nearest entries."""
    identity_of(headers.raw)
    metadata: list[tuple[str, str | bytes]] = []
    size = 0
    host: str | None = None
    forwarded: str | None = None
    # Read from the raw pairs: only these few names are decoded.
    for raw_key, raw_value in headers.raw:
        if raw_key == b"authorization":
            name = key = "authorization"
        elif raw_key.startswith(b"grpc-metadata-") and len(raw_key) > len(_METADATA_PREFIX):
            key = raw_key.decode("latin-1")
            name = key[len(_METADATA_PREFIX) :]
            if not _KEY.fullmatch(name) or name.startswith(("grpc-", ":")) or name in _RESERVED:
                raise BadHeader(key, f"{name!r} is not a metadata name a client may set")
        else:
            if raw_key == b"host" and host is None:
                host = raw_value.decode("latin-1")
            elif raw_key == b"x-forwarded-for" and forwarded is None:
                forwarded = raw_value.decode("latin-1")
            continue
        value = raw_value.decode("latin-1")
        header = "Authorization" if name == "authorization" else key
        if name.endswith("-bin"):
            decoded: str | bytes = _base64(header, value)
        elif not PRINTABLE.fullmatch(value):
            raise BadHeader(header, "must be printable ASCII (no control characters, no other scripts)")
        else:
            decoded = value
        size += len(name) + len(decoded)
        metadata.append((name, decoded))
    if size > MAX_METADATA_BYTES:
        raise BadHeader(
            "Grpc-Metadata-*", f"{size} bytes of metadata, over the {MAX_METADATA_BYTES} the master takes", 431
        )
    if host is not None and PRINTABLE.fullmatch(host):
        metadata.append(("x-forwarded-host", host[:256]))
    if client_host:
        forwarded = forwarded if client_host in trusted_proxies else None
        chain = [part.strip() for part in forwarded.split(",")][-MAX_FORWARDED:] if forwarded else []
        chain = [part for part in chain if part and len(part) <= 64 and PRINTABLE.fullmatch(part)]
        metadata.append(("x-forwarded-for", ", ".join([*chain, client_host])))
    return metadata


def _base64(header: str, value: str) -> bytes:
    """A `-bin` value, in base64 with or without padding, standard or URL-safe."""
    text = value.strip()
    try:
        return base64.b64decode(
            text + "=" * (-len(text) % 4), altchars=b"-_" if ("-" in text or "_" in text) else None, validate=True
        )
    except (binascii.Error, ValueError):
        raise BadHeader(header, "a -bin value must be base64") from None


def timeout_of(headers: Headers) -> float | None:
    """Seconds from a Grpc-Timeout header ("10S", "500m"), at most MAX_TIMEOUT_SECONDS;
    None when absent."""
    text = headers.get("grpc-timeout")
    if text is None:
        return None
    found = _TIMEOUT.fullmatch(text.strip())
    if found is None:
        raise MalformedTimeout(text)
    return min(MAX_TIMEOUT_SECONDS, int(found.group(1)) * _UNIT_SECONDS[found.group(2)])


def incoming_headers(metadata: Any) -> dict[str, str]:
    """Response header metadata as Grpc-Metadata-* headers."""
    if not metadata:
        return {}
    return {
        f"Grpc-Metadata-{key}": value
        for key, value in metadata
        if isinstance(value, str) and not key.startswith("grpc-")
    }


def status_of(error: grpc.aio.AioRpcError, channel: Any = None) -> status_pb2.Status:
    """The google.rpc.Status of a failed call, with its details when the server sent them.
    UNAVAILABLE while `channel` (to the master, when the caller has one) is not connected is
    the channel's own failure, not an answer: its words name the master's address, which is
    the operator's to know (logged here), not a client's."""
    trailing: Any = error.trailing_metadata() or ()
    for key, value in trailing:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a peer's garbage is not our crash
                break
    code = error.code().value[0] if error.code() is not None else code_pb2.UNKNOWN
    get_state = getattr(channel, "get_state", None)  # (an in-process channel has none)
    if code == code_pb2.UNAVAILABLE and get_state is not None and get_state() != grpc.ChannelConnectivity.READY:
        _unreachable(error.details() or "")
        return error_status(code, "the master cannot be reached; try again", retry_after=1.0)
    return status_pb2.Status(code=code, message=error.details() or "")


_unreachable_said = Throttle(30)


def _unreachable(detail: str) -> None:
    """Logs why the master cannot be reached, at most every 30 s."""
    if _unreachable_said.due():
        log.warning("the master cannot be reached: %s", detail)
