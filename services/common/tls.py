"""TLS for gRPC between imsync's processes: certificate files in, credentials out.

The master serves TLS when given a certificate and key, and demands a client certificate
signed by a CA of its own when given that CA (mutual TLS: then workers and gateways alike
present one). Clients trust the CA that signed the master's certificate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc


@dataclass(frozen=True)
class ServerTls:
    cert: Path
    key: Path
    # With a client CA, a client without a certificate it signed is refused at the handshake.
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        pair = [(self.key.read_bytes(), self.cert.read_bytes())]
        if self.client_ca is None:
            return grpc.ssl_server_credentials(pair)
        return grpc.ssl_server_credentials(
            pair, root_certificates=self.client_ca.read_bytes(), require_client_auth=True
        )


@dataclass(frozen=True)
class ClientTls:
    # The CA that signed the master's certificate.
    ca: Path
    # This client's own certificate and key, for a master that demands one.
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        own = (self.key.read_bytes(), self.cert.read_bytes()) if self.cert and self.key else (None, None)
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(), private_key=own[0], certificate_chain=own[1]
        )


def open_channel(
    address: str, tls: ClientTls | None, options: Sequence[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, tls.credentials(), options=options)
