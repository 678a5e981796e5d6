"""The worker process: a crawl loop per account feeding one sync engine."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2

from .account_state import EMPTY, AccountView
from .adapter import CrawlFailed, PlatformAdapter
from .config import AccountConfig, WorkerConfig
from .douyin_adapter import DouyinAdapter, DouyinOptions
from .sample_adapter import SampleAdapter
from .sync_engine import EngineConfig, SyncEngine

log = logging.getLogger(__name__)

# Failed crawls back off up to this many intervals, so a broken account is not hammered.
_MAX_BACKOFF_INTERVALS = 16


def make_adapter(account: AccountConfig) -> PlatformAdapter:
    if account.adapter == "douyin":
        options = account.options
        return DouyinAdapter(
            account.account_id,
            DouyinOptions(
                base_url=str(options["base_url"]),
                profile_dir=Path(str(options["profile_dir"])),
                login_uid=str(options.get("login_uid", "")),
                login_password=str(options.get("login_password", "")),
                page_timeout=float(options.get("page_timeout", 20)),
                headless=bool(options.get("headless", True)),
            ),
        )
    if account.adapter == "sample":
        size: dict[str, int] = {
            key: int(account.options[key])
            for key in ("conversations", "messages_per_conversation", "contents", "comments_per_content")
            if key in account.options
        }
        return SampleAdapter(account.account_id, int(account.options.get("seed", 1)), size=size or None)
    raise ValueError(f"unknown adapter {account.adapter!r}")


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


async def crawl_loop(
    account_id: str, adapter: PlatformAdapter, engine: SyncEngine, config: WorkerConfig, rng: random.Random
) -> None:
    view: AccountView = EMPTY
    failures = 0
    while True:
        started = time.monotonic()
        report = sync_pb2.AccountStatusReport(account_id=account_id)
        try:
            async with asyncio.timeout(config.crawl_timeout):
                result = await adapter.crawl()
            view = view.merged_with(result.view, result.complete)
            engine.publish(account_id, view)
            report.login_state = result.login_state
            report.last_crawl_at.CopyFrom(_now())
            if result.errors:
                report.last_error = "; ".join(result.errors)
                report.last_error_at.CopyFrom(_now())
            failures = 0
            sync = engine.accounts[account_id]
            print(
                f"{account_id}: crawled {view.count()} entities in {time.monotonic() - started:.1f} s; "
                f"master has version {sync.confirmed_version}"
                + (" (in step)" if sync.synced else f" ({len(sync.inflight)} in flight)")
                + (f"; partial: {report.last_error}" if result.errors else ""),
                flush=True,
            )
        except CrawlFailed as error:
            failures += 1
            report.login_state = error.login_state
            report.last_error = str(error)
            report.last_error_at.CopyFrom(_now())
            print(f"{account_id}: crawl failed ({failures} in a row): {error}", flush=True)
        except Exception as error:  # the worker never dies of one account's crawl
            failures += 1
            report.last_error = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            report.last_error_at.CopyFrom(_now())
            log.warning("crawl of %s failed", account_id, exc_info=not isinstance(error, TimeoutError))
            print(f"{account_id}: crawl failed ({failures} in a row): {report.last_error}", flush=True)
        refusal = engine.refused.get(account_id)
        if refusal is not None:
            print(f"{account_id}: not synced: {refusal.status.message}", flush=True)
        engine.report_status(report)
        backoff = min(2 ** max(failures - 1, 0), _MAX_BACKOFF_INTERVALS) if failures else 1
        await asyncio.sleep(config.crawl_interval * backoff * (1 + rng.uniform(-config.crawl_jitter, config.crawl_jitter)))


async def run_worker(config: WorkerConfig) -> None:
    adapters = {account.account_id: make_adapter(account) for account in config.accounts}

    async def perform(command: sync_pb2.Command) -> sync_pb2.CommandResult:
        adapter = adapters.get(command.account_id)
        if adapter is None:
            return sync_pb2.CommandResult(
                outcome=sync_pb2.COMMAND_OUTCOME_FAILED,
                reason=e.FAILURE_REASON_TARGET_NOT_FOUND,
                message=f"this worker has no account {command.account_id!r}",
            )
        return await adapter.perform(command)

    engine = SyncEngine(
        EngineConfig(
            master=config.master, worker_id=config.worker_id, token=config.token, window=config.window, tls=config.tls,
            command_log=config.command_log,
        ),
        adapters,
        perform,
    )
    rng = random.Random()
    tasks = [asyncio.create_task(engine.run())] + [
        asyncio.create_task(crawl_loop(account_id, adapter, engine, config, rng))
        for account_id, adapter in adapters.items()
    ]
    print(
        f"imsync worker {config.worker_id} started: {len(adapters)} accounts, master {config.master}", flush=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for adapter in adapters.values():
        await adapter.close()
