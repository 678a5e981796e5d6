"""A scheduled worker's accounts (a worker config with `capacity`, fleet.proto): the master
assigns them over the sync stream and takes them back; this starts and stops their
runners, writes the session the master hands over where the account's context reads it,
and uploads the session whenever the worker writes it anew (after a login, and after a
crawl when the platform renewed its cookies), so that the next worker resumes without a
login."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
from collections.abc import Callable
from pathlib import Path

from imsync.v1 import fleet_pb2 as fl
from imsync.v1 import sync_pb2
from services.common.logs import say
from services.common.private_files import write_private

from .account_runner import AccountRunner, RunnerConfig
from .adapter import PlatformAdapter
from .browser import BrowserPool
from .config import AccountConfig, WorkerConfig
from .sync_engine import SyncEngine

log = logging.getLogger(__name__)


def account_config(account: fl.ManagedAccount, state_dir: Path) -> AccountConfig:
    """What the adapter of a managed account is made from."""
    options: dict[str, object] = {
        "base_url": account.base_url,
        "storage_state": str(state_dir / f"{account.account_id}.json"),
    }
    if account.login_method == fl.LOGIN_METHOD_PASSWORD:
        options["login_uid"] = account.login_uid
        options["login_password"] = account.login_password
    if account.adapter == "sample":
        options = {"seed": account.seed or 1}
    return AccountConfig(account.account_id, account.adapter, options)


class WorkerFleet:
    def __init__(
        self,
        config: WorkerConfig,
        pool: BrowserPool,
        engine: SyncEngine,
        runner_config: RunnerConfig,
        slots: asyncio.Semaphore,
        rng: random.Random,
        make_adapter: Callable[[AccountConfig, BrowserPool], PlatformAdapter],
    ) -> None:
        self.config = config
        self.state_dir = config.state_dir or Path("state")
        self.pool = pool
        self.engine = engine
        self.runner_config = runner_config
        self.slots = slots
        self.rng = rng
        self._make_adapter = make_adapter
        self.adapters: dict[str, PlatformAdapter] = {}
        self.runners: dict[str, AccountRunner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # The digest of the session last uploaded (or handed over) per account.
        self._uploaded: dict[str, bytes] = {}
        engine.on_assign = self.assign
        engine.on_release = self.release
        pool.on_saved = self.saved

    async def assign(self, assign: sync_pb2.Assign) -> None:
        account = assign.account
        account_id = account.account_id
        if account_id in self.runners:
            return  # given back to this worker on a new stream: it runs already
        spec = account_config(account, self.state_dir)
        if assign.storage_state:
            path = Path(str(spec.options["storage_state"]))
            await asyncio.to_thread(write_private, path, assign.storage_state)
            self._uploaded[account_id] = hashlib.sha256(assign.storage_state).digest()
        adapter = self._make_adapter(spec, self.pool)
        runner = AccountRunner(account_id, adapter, self.engine, self.runner_config, self.slots, self.rng)
        self.adapters[account_id], self.runners[account_id] = adapter, runner
        self._tasks[account_id] = asyncio.create_task(runner.run())
        handed = "its session handed over" if assign.storage_state else "no session kept: it logs in if it must"
        say(f"worker {self.config.worker_id}: account {account_id} assigned ({account.adapter}; {handed})")

    async def release(self, account_id: str, reason: str) -> None:
        task = self._tasks.pop(account_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.runners.pop(account_id, None)
        adapter = self.adapters.get(account_id)
        if adapter is not None:
            await self.pool.save(account_id)  # its newest session goes up before the account moves
            await adapter.close()
            del self.adapters[account_id]
        self._uploaded.pop(account_id, None)
        if task is not None:  # (a second reason to stop it finds nothing left to stop)
            say(f"worker {self.config.worker_id}: account {account_id} released ({reason})")

    def fence_after(self) -> float:
        """How long the worker runs its accounts without a stream to the master it last heard
        from: within a lease, less two heartbeats (the master may have heard the worker
        last a heartbeat before the worker heard it; the accounts take time to stop), and
        at least half a lease."""
        engine = self.engine
        return max(engine.lease_duration / 2, engine.lease_duration - 2 * engine.heartbeat_interval)

    async def stop_what_may_lapse(self) -> None:
        """Stops the accounts once the master has not been heard from for most of a lease
        and no stream to it is open: their leases lapse on the master, which then gives
        them to another worker, and this one must not be found still running them (two
        browsers on one account). Back in time, the worker takes them back in its Hello;
        later, it runs what the master assigns it again."""
        while True:
            unheard = self.engine.unheard_for()
            left = self.fence_after() - unheard if unheard is not None else math.inf
            if left > 0 or not self.engine.accounts:
                # Looked at again within half a heartbeat: a Welcome may shorten the lease.
                half = self.engine.heartbeat_interval / 2
                await asyncio.sleep(min(left, half) if left > 0 else half)
                continue
            log.warning(
                "no word from the master for %.1f s: stopping %d accounts before their leases lapse",
                unheard,
                len(self.engine.accounts),
            )
            await self.engine.let_go("the master is out of reach")

    def saved(self, account_id: str, path: Path) -> None:
        if account_id not in self.adapters:
            return
        try:
            data = path.read_bytes()
        except OSError as error:
            log.warning("could not read the session of %s: %s", account_id, error)
            return
        digest = hashlib.sha256(data).digest()
        if self._uploaded.get(account_id) != digest:
            self._uploaded[account_id] = digest
            self.engine.upload_session(account_id, data)
