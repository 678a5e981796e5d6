"""The worker process: one Chromium, an account runner per account, one sync engine."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from pathlib import Path

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.observability import serve_metrics

from .account_runner import AccountRunner, RunnerConfig
from .adapter import PlatformAdapter
from .browser import BrowserPool
from .config import AccountConfig, WorkerConfig
from .douyin import DouyinAdapter, DouyinOptions
from .engine_config import EngineConfig
from .fleet import WorkerFleet
from .sample_adapter import SampleAdapter
from .sync_engine import SyncEngine

log = logging.getLogger(__name__)


def make_adapter(account: AccountConfig, pool: BrowserPool) -> PlatformAdapter:
    if account.adapter == "douyin":
        options = account.options
        return DouyinAdapter(
            account.account_id,
            DouyinOptions(
                base_url=str(options["base_url"]),
                storage_state=Path(str(options["storage_state"])),
                login_uid=str(options.get("login_uid", "")),
                login_password=str(options.get("login_password", "")),
                page_timeout=float(options.get("page_timeout", 20)),
                qr_refreshes=int(options.get("qr_refreshes", 3)),
                code_wait=float(options.get("code_wait", 300)),
                live_chat=bool(options.get("live_chat", True)),
            ),
            pool,
        )
    if account.adapter == "sample":
        size: dict[str, int] = {
            key: int(account.options[key])
            for key in ("conversations", "messages_per_conversation", "contents", "comments_per_content")
            if key in account.options
        }
        return SampleAdapter(account.account_id, int(account.options.get("seed", 1)), size=size or None)
    raise ValueError(f"unknown adapter {account.adapter!r}")


async def run_worker(config: WorkerConfig, *, metrics_listen: str = "", stop: asyncio.Event | None = None) -> None:
    """Runs the worker until SIGINT or SIGTERM (or, when given, until `stop` is set)."""
    pool = BrowserPool(headless=config.headless)
    adapters = {account.account_id: make_adapter(account, pool) for account in config.accounts}
    runners: dict[str, AccountRunner] = {}

    async def perform(command: sync_pb2.Command) -> sync_pb2.CommandResult:
        adapter, runner = adapters.get(command.account_id), runners.get(command.account_id)
        if adapter is None or runner is None:
            return sync_pb2.CommandResult(
                outcome=sync_pb2.COMMAND_OUTCOME_FAILED,
                reason=e.FAILURE_REASON_TARGET_NOT_FOUND,
                message=f"this worker has no account {command.account_id!r}",
            )
        if command.HasField("submit_login_code") or command.HasField("restart_login"):
            return await runner.on_command(command)
        return await adapter.perform(command)

    engine = SyncEngine(
        EngineConfig(
            master=config.master,
            worker_id=config.worker_id,
            token=config.token,
            window=config.window,
            tls=config.tls,
            command_log=config.command_log,
            capacity=config.capacity,
            labels=config.labels,
            crawls=config.max_concurrent_crawls,
        ),
        adapters,
        perform,
    )
    slots = asyncio.Semaphore(config.max_concurrent_crawls)
    rng = random.Random()
    runner_config = RunnerConfig(
        crawl_interval=config.crawl_interval,
        crawl_jitter=config.crawl_jitter,
        crawl_timeout=config.crawl_timeout,
        login_retry=config.login_retry,
    )
    fleet = None
    if config.capacity:
        # A scheduled worker: its accounts come and go with the master's assignments.
        fleet = WorkerFleet(config, pool, engine, runner_config, slots, rng, make_adapter)
        adapters, runners = fleet.adapters, fleet.runners
    for account_id, adapter in adapters.items():
        runners[account_id] = AccountRunner(account_id, adapter, engine, runner_config, slots, rng)
    tasks = [asyncio.create_task(engine.run())] + [asyncio.create_task(runner.run()) for runner in runners.values()]
    if fleet is not None:
        tasks.append(asyncio.create_task(fleet.stop_what_may_lapse()))
        labels = ", ".join(f"{k}={v}" for k, v in config.labels) or "no labels"
        print(
            f"imsync worker {config.worker_id} started: takes up to {config.capacity} accounts ({labels}), "
            f"master {config.master}",
            flush=True,
        )
    else:
        print(f"imsync worker {config.worker_id} started: {len(adapters)} accounts, master {config.master}", flush=True)
        log.warning(
            "accounts named in the worker config ([[accounts]]) are the older form: add them to the fleet with "
            "`imsync account import CONFIG.toml`, then give this worker `capacity = N` instead (docs/fleet.md)"
        )
    if metrics_listen:
        tasks.append(asyncio.create_task(serve_metrics(metrics_listen, "worker")))
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Every account let go (its session uploaded first, for a scheduled worker), so that
    # another worker may take it at once rather than after its lease lapses.
    await engine.drain()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for adapter in adapters.values():
        await adapter.close()
    await pool.close()
