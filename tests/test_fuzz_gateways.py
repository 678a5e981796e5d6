"""Raw HTTP requests with whatever bytes an attacker writes (header names and values, encodings,
query strings, bodies, nesting), on a raw socket, to both gateways (its own process, and
embedded in the master): no answer is ever 5xx. schemathesis runs against both in
test_openapi.py."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.master.auth.api_keys import create_api_key

from .conftest import write_tokens

pytestmark = pytest.mark.e2e

ROUTES = [
    ("GET", "/api/im/accounts"),
    ("GET", "/api/im/conversations"),
    ("GET", "/api/im/messages/m1"),
    ("PUT", "/api/im/unified-messages/read-many"),
    ("POST", "/api/im/replies"),
    ("GET", "/api/im/replies/r1"),
    ("PUT", "/api/im/conversations/c1/pin"),
    ("GET", "/api/im/events"),
    ("GET", "/openapi.json"),
    ("GET", "/nowhere/%ff%00"),
]
NAMES = [
    b"Authorization",
    b"Grpc-Timeout",
    b"Content-Type",
    b"X-Forwarded-For",
    b"Accept",
    b"Last-Event-ID",
    b"If-None-Match",
    b"Grpc-Metadata-Authorization",
    b"Grpc-Metadata-Trace-Bin",
    b"Grpc-Metadata-Grpc-Status",
    b"Content-Encoding",
    b"Transfer-Encoding",
]


def _start(args: list[str], wanted: int = 1) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen([sys.executable, "-m", "services.cli", *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    found: list[str] = []
    for line in process.stdout:
        address = re.search(r"listening on (?:http://)?(\S+)", line)
        if address:
            found.append(address.group(1))
            if len(found) == wanted:
                return process, found
    raise RuntimeError(f"{args[0]} did not start")


@pytest.fixture(scope="module", params=["gateway process", "embedded gateway"])
def gateway(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[tuple[str, int, str]]:
    folder = Path(tmp_path_factory.mktemp("fuzz"))
    keys = folder / "api-keys.toml"
    key = create_api_key(keys, "fuzz", ["*"], ["read", "reply"])
    master_args = [
        "master",
        "--listen",
        "127.0.0.1:0",
        "--worker-tokens",
        str(write_tokens(folder / "tokens.toml")),
        "--api-keys",
        str(keys),
        "--rate-limit",
        "0",
        "--gateway-http-body-timeout",
        "1",
    ]
    children: list[subprocess.Popen[str]] = []
    try:
        if request.param == "embedded gateway":
            master, (address, _) = _start(
                [*master_args, "--gateway-listen", "127.0.0.1:0", "--gateway-console", "none"], 2
            )
            children.append(master)
        else:
            master, (master_address,) = _start(master_args)
            children.append(master)
            gateway_process, (address,) = _start(
                ["gateway", "--listen", "127.0.0.1:0", "--master", master_address, "--http-body-timeout", "1"]
            )
            children.append(gateway_process)
        host, _, port = address.rpartition(":")
        yield host, int(port), key
    finally:
        for child in reversed(children):
            child.terminate()
            child.wait(10)
            if child.stdout is not None:
                child.stdout.close()


def status_of(host: str, port: int, request: bytes) -> int | None:
    """The status the server answered, or None when it closed without one (it may: a
    request it could not parse at all gets 400 or a closed socket, never 5xx)."""
    with socket.create_connection((host, port), timeout=5) as connection:
        connection.sendall(request)
        try:
            answer = connection.recv(64)
        except (TimeoutError, ConnectionResetError):
            return None
    found = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return int(found.group(1)) if found else None


def _json(depth: int) -> st.SearchStrategy[object]:
    leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=depth,
    )


header_value = (
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300).map(str.encode)
    | st.text(max_size=100).map(lambda text: text.encode("utf-8", "surrogatepass"))
    | st.binary(max_size=300)
).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))
headers = st.lists(
    st.tuples(st.sampled_from(NAMES) | st.from_regex(rb"\AGrpc-Metadata-[!-~]{1,20}\Z", fullmatch=True), header_value),
    max_size=8,
)
bodies = (
    st.binary(max_size=2000)
    | _json(30).map(lambda value: json.dumps(value).encode())
    | st.integers(1, 5000).map(lambda depth: b'{"ids": ' + b"[" * depth + b"]" * depth + b"}")
)
queries = st.binary(max_size=80).map(lambda raw: "".join(f"%{b:02x}" if b not in b"=&" else chr(b) for b in raw))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    route=st.sampled_from(ROUTES),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    query=queries,
    extra=headers,
    body=bodies,
    authorized=st.booleans(),
    short=st.booleans(),
)
def test_no_request_gets_a_server_error(
    gateway: tuple[str, int, str],
    route: tuple[str, str],
    method: str,
    query: str,
    extra: list[tuple[bytes, bytes]],
    body: bytes,
    authorized: bool,
    short: bool,
) -> None:
    host, port, key = gateway
    path = route[1] + ("?" + query if query else "")
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: fuzz", b"Connection: close"]
    if authorized:
        lines.append(b"Authorization: Bearer " + key.encode())
    lines += [
        name + b": " + value for name, value in extra if name.lower() not in (b"transfer-encoding", b"content-length")
    ]
    # A body shorter than announced is let wait for the gateway's body deadline (1 s).
    lines.append(b"Content-Length: %d" % (len(body) + (10 if short and body else 0)))
    status = status_of(host, port, b"\r\n".join(lines) + b"\r\n\r\n" + body)
    assert status is None or status < 500, (method, path, extra, body[:100], status)
