"""The demo's processes for end-to-end tests: the simulator (its customers quiet unless
told to write), a master, a gateway, and a worker crawling every account in Chromium.
The gateway and the master can be stopped and started again on their addresses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx

from services import processes
from services.sim.server import uids_of, worker_accounts

from .conftest import token_for, write_tokens


class DemoProcesses:
    def __init__(
        self,
        tmp: Path,
        *,
        accounts: int = 2,
        master_args: Sequence[str] = (),
        gateway_args: Sequence[str] = (),
        worker_args: Sequence[str] = (),
        by_qr: frozenset[str] = frozenset(),
        merge_stderr: bool = False,
    ) -> None:
        self.tmp = tmp
        self.accounts = accounts
        # Accounts the worker logs in by QR code, relayed to the console (the others by password).
        self.by_qr = by_qr
        self.master_args = ["master", "--worker-tokens", str(write_tokens(tmp / "tokens.toml")), *master_args]
        self.gateway_args = list(gateway_args)
        self.worker_args = list(worker_args)
        # Keep each process's log lines (stderr) in its output, beside what it prints.
        self.merge_stderr = merge_stderr
        self.sim: processes.Child | None = None
        self.master: processes.Child | None = None
        self.gateway: processes.Child | None = None
        self.worker: processes.Child | None = None
        self.uids: list[str] = []
        self.master_address = "127.0.0.1:0"
        self.gateway_address = "127.0.0.1:0"

    async def start(self) -> None:
        self.sim = await processes.start(
            ["sim", "--listen", "127.0.0.1:0", "--accounts", str(self.accounts), "--rate", "0"]
        )
        self.uids = uids_of(self.sim.ready_line)
        await self.start_master()
        await self.start_gateway()
        config = self.tmp / "worker.toml"
        config.write_text(
            f'master = "{self.master_address}"\nworker_id = "worker-a"\ntoken = "{token_for("worker-a")}"\n'
            f"crawl_interval = 1\ncrawl_timeout = 30\n"
            + worker_accounts(
                self.sim.address,
                [f"shop-{i}" for i in range(self.accounts)],
                self.uids,
                page_timeout=5,
                by_qr=self.by_qr,
            )
        )
        await self.start_worker()

    async def start_worker(self) -> None:
        self.worker = await processes.start(
            ["worker", "--config", str(self.tmp / "worker.toml"), *self.worker_args], merge_stderr=self.merge_stderr
        )

    async def start_master(self) -> None:
        """Starts the master, on its former address when it had one."""
        self.master = await processes.start(
            [*self.master_args, "--listen", self.master_address], attempts=20, merge_stderr=self.merge_stderr
        )
        self.master_address = self.master.address

    async def restart_master(self) -> None:
        assert self.master is not None
        await self.master.stop()
        await self.start_master()

    async def start_gateway(self) -> None:
        self.gateway = await processes.start(
            ["gateway", "--listen", self.gateway_address, "--master", self.master_address, *self.gateway_args],
            attempts=20,
            merge_stderr=self.merge_stderr,
        )
        self.gateway_address = self.gateway.address

    async def stop_gateway(self) -> None:
        assert self.gateway is not None
        await self.gateway.stop()
        self.gateway = None

    @property
    def base(self) -> str:
        return f"http://{self.gateway_address}"

    @property
    def platform(self) -> str:
        assert self.sim is not None
        return f"http://{self.sim.address}"

    def uid_of(self, account_id: str) -> str:
        return self.uids[int(account_id.rpartition("-")[2])]

    async def synced(self, http: httpx.AsyncClient) -> bool:
        """Whether the gateway (`http`) lists every account, each crawled and stored."""
        users = (await http.get("/api/im/accounts")).json()["data"]["users"]
        return len(users) == self.accounts and all(int(u["version"]) > 0 for u in users)

    async def stop(self) -> None:
        for child in (self.worker, self.gateway, self.master, self.sim):
            if child is not None:
                await child.stop()
