"""A local redis-server, for the tests and the benchmarks: on 127.0.0.1, an
ephemeral port, its own directory.

Persistence is what imsync asks of Redis (appendonly yes, appendfsync always), so that a
test can kill Redis and start it again on the same files and port.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from services.common.addresses import free_port


class RedisServer:
    def __init__(self, directory: Path, *, appendfsync: str = "always", replica_of: int = 0) -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        # The port of the primary this server replicates (0: none).
        self.replica_of = replica_of
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, attempts: int = 5) -> RedisServer:
        """Starts Redis (again, on the same port and files when it ran before)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/bootstrap installs Debian's)")
        self.directory.mkdir(parents=True, exist_ok=True)
        for _attempt in range(attempts):
            if not self.port:
                self.port = free_port()
            self.process = subprocess.Popen(
                [
                    binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--dir",
                    str(self.directory),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    self.appendfsync,
                    "--save",
                    "",
                    "--logfile",
                    "redis.log",
                    "--daemonize",
                    "no",
                    # A replica starting syncs at once (Redis waits 5 s by default for more).
                    "--repl-diskless-sync-delay",
                    "0",
                    *(["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return self
            self.process.kill()
            self.process.wait()
            self.process = None
            # The port was taken meanwhile (another test's server): take another one.
            self.port = free_port()
        raise RuntimeError(f"redis-server did not start; see {self.directory / 'redis.log'}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def pause(self) -> None:
        """SIGSTOP: Redis holds its connections but answers nothing (a replica falls behind)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: Redis gets no chance to write anything more."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
