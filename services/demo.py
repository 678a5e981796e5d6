"""`imsync demo`: the platform simulator, a worker crawling it in headless Chromium, the
master and the gateway, all on this machine; Ctrl-C stops them together. The simulator's
accounts are added to the fleet as data, and the worker takes them from the master."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from imsync.v1 import fleet_pb2 as fl
from imsync_client import connect
from services.master.auth.session_keys import create_session_key
from services.master.auth.worker_tokens import add_worker_token
from services.sim.server import uids_of

from . import processes


@dataclass(frozen=True)
class DemoConfig:
    master_listen: str = "127.0.0.1:50051"
    gateway_listen: str = "127.0.0.1:8080"
    interval: float = 5.0
    accounts: int = 3
    # New comments, replies and messages per minute on the simulated platform.
    sim_rate: float = 12.0


def _worker_config(folder: Path, master: str, config: DemoConfig) -> Path:
    """A worker that takes the accounts the master assigns (docs/fleet.md)."""
    path = folder / "worker.toml"
    path.write_text(
        f'master = "{master}"\nworker_id = "demo-worker"\ntoken_file = "demo-worker.token"\n'
        f"crawl_interval = {config.interval}\ncapacity = {max(10, config.accounts)}\n"
    )
    return path


async def _add_accounts(master: str, sim: str, uids: list[str]) -> None:
    """The simulator's accounts, added to the fleet as an operator would (imsync account add)."""
    async with connect(master) as client:
        for index, uid in enumerate(uids, 1):
            account = fl.ManagedAccount(
                account_id=f"douyin-{index:03d}",
                adapter="douyin",
                display_name=f"模拟店铺 {index}",
                base_url=f"http://{sim}",
                login_method=fl.LOGIN_METHOD_PASSWORD,
                login_uid=uid,
                login_password="sim",
            )
            await client.create_managed_account(fl.CreateManagedAccountRequest(account=account))


async def _wait_for_accounts(base: str, count: int) -> None:
    """Until every account's first crawl has reached the master."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the poll is not news
    async with httpx.AsyncClient(timeout=5) as http:
        async with asyncio.timeout(120):
            while True:
                users = (await http.get(f"{base}/api/im/accounts")).json()["data"]["users"]
                if len(users) >= count and all(int(user["version"]) > 0 for user in users):
                    return
                await asyncio.sleep(0.2)


class _Started:
    """The demo's processes, by name, each with how it was started; one that exits while
    the demo runs (killed, say) is started again as it was, on the address it had."""

    def __init__(self) -> None:
        self.children: dict[str, processes.Child] = {}
        self._commands: dict[str, tuple[list[str], bool]] = {}

    async def start(
        self, name: str, args: list[str], listen: str | None = None, *, echo: bool = False
    ) -> processes.Child:
        child = await processes.start([*args, *(["--listen", listen] if listen else [])], echo=echo)
        self.children[name] = child
        # Started again on the address it has now, which the others know.
        self._commands[name] = ([*args, *(["--listen", child.address] if listen else [])], echo)
        return child

    async def supervise(self) -> None:
        while True:
            waits = {asyncio.ensure_future(child.process.wait()): name for name, child in self.children.items()}
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
            for task in done:
                name = waits[task]
                args, echo = self._commands[name]
                print(f"The {name} exited ({task.result()}); starting it again.", flush=True)
                self.children[name] = await processes.start(args, echo=echo, attempts=20)
                print(f"The {name} is running again.", flush=True)

    async def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            await child.stop()


async def _demo(config: DemoConfig) -> None:
    # SIGTERM, and SIGHUP (the terminal it runs in closed), stop the demo as Ctrl-C does:
    # its processes are stopped with it, not left running on the demo's ports.
    main = asyncio.current_task()
    if main is not None:
        for stopping in (signal.SIGTERM, signal.SIGHUP):
            asyncio.get_running_loop().add_signal_handler(stopping, main.cancel)
    started = _Started()
    with tempfile.TemporaryDirectory(prefix="imsync-demo-") as tmp:
        folder = Path(tmp)
        try:
            ids = [f"douyin-{index:03d}" for index in range(1, config.accounts + 1)]
            token = add_worker_token(folder / "worker-tokens.toml", "demo-worker", ids)
            (folder / "demo-worker.token").write_text(token)
            create_session_key(folder / "session-keys")
            master = await started.start(
                "master",
                [
                    "master",
                    "--worker-tokens",
                    str(folder / "worker-tokens.toml"),
                    "--data-dir",
                    str(folder / "master-data"),
                    "--session-keys",
                    str(folder / "session-keys"),
                ],
                config.master_listen,
            )
            # The gateway's access log is for operators: the demo shows its warnings only.
            gateway = await started.start(
                "gateway", ["gateway", "--master", master.address, "--log-level", "WARNING"], config.gateway_listen
            )
            sim = await started.start(
                "simulated platform",
                ["sim", "--accounts", str(config.accounts), "--rate", str(config.sim_rate)],
                "127.0.0.1:0",
            )
            uids = uids_of(sim.ready_line)
            await _add_accounts(master.address, sim.address, uids)
            worker_config = _worker_config(folder, master.address, config)
            await started.start("worker", ["worker", "--config", str(worker_config)], echo=True)
            base = f"http://{gateway.address}"
            await _wait_for_accounts(base, config.accounts)
            first = "douyin-001"
            print(
                "\nimsync demo is running.\n"
                f"  The console: {base}/\n"
                "Or try the API:\n"
                f"  curl '{base}/api/im/accounts'\n"
                f"  curl '{base}/api/im/conversations?account_id={first}'\n"
                f"  curl '{base}/api/im/unified-messages?account_id={first}&types=direct_message'\n"
                f"  curl '{base}/api/im/unified-messages/stats?account_id={first}'\n"
                f"  curl '{base}/api/im/contents?account_id={first}'\n"
                f"  curl -N '{base}/api/im/events?types=new_message,new_comment'   (live; Ctrl-C to leave)\n"
                f"  grpcurl -plaintext {master.address} list   (reflection is on)\n"
                f"The simulated platform is at http://{sim.address}/login (password 'sim'); its customers write\n"
                f"{config.sim_rate:g} times a minute, and the worker crawls it every {config.interval:g} s in headless\n"
                f"Chromium. The accounts are the fleet's (the console's Fleet panel, or\n"
                f"  imsync account list --master {master.address}): add one, pause one, or start a second worker.\n"
                "A process of the demo that stops (kill one) is started again; the master from its data.\n"
                f"Ctrl-C stops everything.\n",
                flush=True,
            )
            await started.supervise()
        finally:
            await started.stop()


def run_demo(config: DemoConfig) -> int:
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(_demo(config))
    return 0
