"""HOST:PORT parsing shared by every service's configuration."""

from __future__ import annotations


def split_host_port(address: str) -> tuple[str, int]:
    """Splits "HOST:PORT" (or "[V6]:PORT") into host and port; port 0 means any free port."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port out of range in {address!r}")
    return host.strip("[]"), port
