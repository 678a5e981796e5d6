"""A local redis-server, or a local Redis Cluster of six, for the tests and the
benchmarks: on 127.0.0.1, ephemeral ports, each server its own directory.

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
from services.processes import stopping_with_this_process


class RedisServer:
    def __init__(
        self, directory: Path, *, appendfsync: str = "always", replica_of: int = 0, cluster: bool = False
    ) -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        # The port of the primary this server replicates (0: none).
        self.replica_of = replica_of
        # A node of a Redis Cluster (RedisCluster below makes one of six).
        self.cluster = cluster
        self.port = 0
        self.bus_port = 0
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
            if self.cluster and not self.bus_port:
                # Set, not port + 10000: an ephemeral port plus 10000 can pass 65535.
                self.bus_port = free_port()
            self.process = subprocess.Popen(
                [
                    *stopping_with_this_process(),
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
                    *(self._cluster_flags() if self.cluster else []),
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
            self.bus_port = 0
        raise RuntimeError(f"redis-server did not start; see {self.directory / 'redis.log'}")

    def _cluster_flags(self) -> list[str]:
        return [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            str(self.bus_port),
            # A primary that stops answering for a second is failed over (the default is 15).
            "--cluster-node-timeout",
            "1000",
            # A replica cut off from its primary for a while still takes over.
            "--cluster-replica-validity-factor",
            "0",
        ]

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


class RedisCluster:
    """Six cluster-enabled redis-servers: three primaries, each with one replica, made into
    one cluster with `redis-cli --cluster create`."""

    def __init__(self, directory: Path, *, size: int = 6) -> None:
        self.servers = [RedisServer(directory / f"node{index}", cluster=True) for index in range(size)]

    @property
    def url(self) -> str:
        """The `--store` URL: every node as a starting point."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{server.port}" for server in self.servers)

    def start(self, timeout: float = 60.0) -> RedisCluster:
        binary = shutil.which("redis-cli")
        if binary is None:
            raise RuntimeError("redis-cli is not installed (scripts/bootstrap installs Debian's redis-tools)")
        for server in self.servers:
            server.start()
        addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
        made = subprocess.run(
            [binary, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if made.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {made.stdout[-2000:]}{made.stderr[-2000:]}")
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until every running node says the cluster is ok and every replica is in step."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._healthy(server) for server in self.servers if server.process is not None):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not become healthy")

    def _healthy(self, server: RedisServer) -> bool:
        info = self.command(server, "CLUSTER", "INFO") + self.command(server, "INFO", "replication")
        if "cluster_state:ok" not in info:
            return False
        return "role:slave" not in info or "master_link_status:up" in info

    def nodes(self) -> list[tuple[RedisServer, str, int]]:
        """Each running server, its role ("master" or "slave") and the port of its primary
        (0 for a primary), as the cluster sees them now."""
        found = []
        for server in self.servers:
            if server.process is None:
                continue
            info = self.command(server, "INFO", "replication")
            role = "slave" if "role:slave" in info else "master"
            primary = 0
            for line in info.splitlines():
                if line.startswith("master_port:"):
                    primary = int(line.split(":", 1)[1])
            found.append((server, role, primary))
        return found

    def primaries(self) -> list[RedisServer]:
        return [server for server, role, _ in self.nodes() if role == "master"]

    def primary_for(self, key: str) -> RedisServer:
        """The primary that holds the key's slot now (CLUSTER KEYSLOT, CLUSTER NODES)."""
        asked = next(server for server in self.servers if server.process is not None)
        slot = int(self.command(asked, "CLUSTER", "KEYSLOT", key))
        for line in self.command(asked, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if len(fields) < 9 or "master" not in fields[2].split(",") or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for ranges in fields[8:]:
                if ranges.startswith("["):  # a slot being migrated
                    continue
                first, _, last = ranges.partition("-")
                if int(first) <= slot <= int(last or first):
                    return next(server for server in self.servers if server.port == port)
        raise LookupError(f"no primary holds the slot of {key!r}")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        for server, role, port in self.nodes():
            if role == "slave" and port == primary.port:
                return server
        raise LookupError(f"no replica follows the primary on port {primary.port}")

    @staticmethod
    def command(server: RedisServer, *args: str) -> str:
        """A command to one node through redis-cli; its answer as text ("" if it is down)."""
        binary = shutil.which("redis-cli") or "redis-cli"
        done = subprocess.run(
            [binary, "-h", "127.0.0.1", "-p", str(server.port), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout if done.returncode == 0 else ""

    def stop(self) -> None:
        for server in self.servers:
            server.resume()
            server.stop()
