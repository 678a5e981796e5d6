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


class AddressInUse(OSError):
    """Another process listens on the address: a process must own its port alone."""

    def __init__(self, address: str) -> None:
        super().__init__(f"{address} is in use: another process listens there")
        self.address = address


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's pick), for a process started next to use."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def check_free(address: str) -> None:
    """Raises AddressInUse when something listens on `address` already (port 0 is always free).
    Binding without SO_REUSEPORT, as imsync's servers do: two processes never share a port."""
    import errno
    import socket

    host, port = split_host_port(address)
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise AddressInUse(address) from None
            raise
