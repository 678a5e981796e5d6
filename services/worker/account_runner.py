"""One account on the worker: its crawl loop, its login, its live chat, and what it reports.

The loop crawls every interval (at most `max_concurrent_crawls` of the worker's accounts at
once), merges each crawl into the account's view (`account_book.py`) and hands the view to
the sync engine. Once logged in, the adapter's live watch runs beside it and its arrivals
are sent at once. A crawl that finds the account logged out starts a login, relayed to the
operators through the account's status (`LoginChallenge`): the codes they type come back
as commands (`on_command`). Every change of health is reported: login state, crawl state,
per collection when it was last read whole and what the last crawl missed, the last error
with a short reason, and how long the crawl took. Each crawl prints one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from services.common.logs import say

from . import metrics
from .account_book import AccountBook
from .adapter import CrawlFailed, LoginFailed, PlatformAdapter
from .sync_engine import SyncEngine

log = logging.getLogger(__name__)

# Failed crawls back off up to this many intervals, so a broken account is not hammered.
_MAX_BACKOFF_INTERVALS = 16
# How long an operator's code waits for the platform's answer.
_CODE_ANSWER_SECONDS = 60.0


@dataclass(frozen=True)
class RunnerConfig:
    crawl_interval: float = 30.0
    crawl_jitter: float = 0.2
    crawl_timeout: float = 120.0
    # After a login gave up, a new one starts by itself after this long (or when an
    # operator asks for one).
    login_retry: float = 600.0
    # After a live watch ended, it starts again after this long.
    live_retry: float = 2.0


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _short(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else "") or type(error).__name__


class AccountRunner:
    def __init__(
        self,
        account_id: str,
        adapter: PlatformAdapter,
        engine: SyncEngine,
        config: RunnerConfig,
        crawl_slots: asyncio.Semaphore,
        rng: random.Random | None = None,
    ) -> None:
        self.account_id = account_id
        self.adapter = adapter
        self.engine = engine
        self.config = config
        metrics.account_started(account_id)
        self._slots = crawl_slots
        self._rng = rng or random.Random()
        self.book = AccountBook()
        self._wake = asyncio.Event()
        self._logged_out = False
        self._watcher: asyncio.Task[None] | None = None
        self._failures = 0
        # Codes operators typed, each with where its answer goes.
        self._codes: asyncio.Queue[tuple[str, asyncio.Future[tuple[bool, str]]]] = asyncio.Queue()
        self._answering: asyncio.Future[tuple[bool, str]] | None = None
        self._waiting_for_code = False
        self._restart = asyncio.Event()
        # What is reported (AccountStatusReport), kept in step.
        self.login_state: e.LoginState.ValueType = e.LOGIN_STATE_UNSPECIFIED
        self.crawl_state: e.CrawlState.ValueType = e.CRAWL_STATE_CRAWLING
        self._challenge: e.LoginChallenge | None = None
        self._whole_at: dict[str, Timestamp] = {}
        self._missed: dict[str, str] = {}
        self._last_crawl_at: Timestamp | None = None
        self._last_duration = 0.0
        self._error = ""
        self._error_reason = ""
        self._error_at: Timestamp | None = None
        # Observable, for tests and the progress lines.
        self.crawls = 0
        self.whole_crawls = 0
        self.live_arrivals = 0

    # ------------------------------------------------------------------ status

    def report(self) -> sync_pb2.AccountStatusReport:
        report = sync_pb2.AccountStatusReport(
            account_id=self.account_id,
            login_state=self.login_state,
            crawl_state=self.crawl_state,
            last_error=self._error,
            last_error_reason=self._error_reason,
        )
        if self._last_crawl_at is not None:
            report.last_crawl_at.CopyFrom(self._last_crawl_at)
            report.last_crawl_duration.FromNanoseconds(int(self._last_duration * 1e9))
        if self._error_at is not None:
            report.last_error_at.CopyFrom(self._error_at)
        for name in self.adapter.collections:
            health = report.collections.add(collection=name, missed=self._missed.get(name, ""))
            if name in self._whole_at:
                health.last_whole_time.CopyFrom(self._whole_at[name])
        if self._challenge is not None:
            report.login.CopyFrom(self._challenge)
        return report

    def _publish_status(self) -> None:
        self.engine.report_status(self.report())
        metrics.login_state(self.account_id, e.LoginState.Name(self.login_state).removeprefix("LOGIN_STATE_").lower())

    def _failed(self, message: str, reason: str) -> None:
        self._error, self._error_reason, self._error_at = message, reason, _now()

    # -------------------------------------------------------------------- loop

    async def run(self) -> None:
        self._publish_status()
        try:
            while True:
                if self._logged_out:
                    await self._login_round()
                    continue
                await self._crawl_round()
                if not self._logged_out:
                    await self._pause(self._delay())
        finally:
            await self._stop_watching()

    def _delay(self) -> float:
        backoff = min(2 ** max(self._failures - 1, 0), _MAX_BACKOFF_INTERVALS) if self._failures else 1
        jitter = self._rng.uniform(-self.config.crawl_jitter, self.config.crawl_jitter)
        return self.config.crawl_interval * backoff * (1 + jitter)

    async def _pause(self, seconds: float) -> None:
        """Sleeps, unless woken (the live watch found the account logged out)."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _crawl_round(self) -> None:
        started = time.monotonic()
        try:
            async with self._slots, asyncio.timeout(self.config.crawl_timeout):
                result = await self.adapter.crawl()
        except CrawlFailed as error:
            self._last_duration = time.monotonic() - started
            self._crawl_failed(error)
            return
        except Exception as error:  # the worker never dies of one account's crawl
            self._last_duration = time.monotonic() - started
            if not isinstance(error, TimeoutError):
                log.warning("crawl of %s failed", self.account_id, exc_info=True)
                self._crawl_failed(CrawlFailed(f"{type(error).__name__}: {_short(error)}", reason="BROWSER_ERROR"))
            else:
                self._crawl_failed(
                    CrawlFailed(f"the crawl took longer than {self.config.crawl_timeout:g} s", reason="PAGE_TIMEOUT")
                )
            return
        duration = time.monotonic() - started
        self.crawls += 1
        self._failures = 0
        view = self.book.crawled(result, started)
        self.engine.publish(self.account_id, view)
        now = _now()
        self._last_crawl_at, self._last_duration = now, duration
        self.login_state = result.login_state or e.LOGIN_STATE_LOGGED_IN
        self._missed = dict(result.missed)
        for name in self.adapter.collections:
            if name in result.complete:
                self._whole_at[name] = now
        whole = not result.missed and set(self.adapter.collections) <= result.complete
        self.whole_crawls += whole
        metrics.CRAWLS.labels(account=self.account_id, outcome="whole" if whole else "partial").inc()
        metrics.CRAWL_SECONDS.labels(account=self.account_id).observe(duration)
        self.crawl_state = e.CRAWL_STATE_WHOLE if whole else e.CRAWL_STATE_PARTIAL
        if whole:
            self._error, self._error_reason, self._error_at = "", "", None
        else:
            self._failed("; ".join(result.errors) or "partial", "PARTIAL")
        self._publish_status()
        self._ensure_watching()
        sync = self.engine.accounts[self.account_id]
        outcome = "whole" if whole else "PARTIAL: " + "; ".join(f"{c}: {m}" for c, m in result.missed.items())
        say(
            f"{self.account_id}: crawl {outcome}; {view.count()} entities in {duration:.1f} s "
            f"(the master acknowledged version {sync.confirmed_version} so far)"
        )
        self._print_refusal()

    def _crawl_failed(self, error: CrawlFailed) -> None:
        self._last_crawl_at = _now()
        logged_out = error.login_state == e.LOGIN_STATE_LOGGED_OUT
        metrics.CRAWLS.labels(account=self.account_id, outcome="logged_out" if logged_out else "failed").inc()
        metrics.CRAWL_SECONDS.labels(account=self.account_id).observe(self._last_duration)
        self._failed(str(error), error.reason)
        if error.login_state == e.LOGIN_STATE_LOGGED_OUT:
            self._logged_out = True
            self.login_state = e.LOGIN_STATE_LOGGED_OUT
            self.crawl_state = e.CRAWL_STATE_NEEDS_LOGIN
            say(f"{self.account_id}: crawl failed: logged out; a login starts")
        else:
            self._failures += 1
            self.crawl_state = e.CRAWL_STATE_FAILING
            say(f"{self.account_id}: crawl failed ({self._failures} in a row): {error}")
        self._publish_status()
        self._print_refusal()

    def _print_refusal(self) -> None:
        refusal = self.engine.refused.get(self.account_id)
        if refusal is not None:
            say(f"{self.account_id}: not synced: {refusal.status.message}")

    # ------------------------------------------------------------------- login

    async def _login_round(self) -> None:
        await self._stop_watching()
        self._restart.clear()
        login = asyncio.ensure_future(self.adapter.log_in(self))
        restart = asyncio.ensure_future(self._restart.wait())
        try:
            await asyncio.wait({login, restart}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            restart.cancel()
            if not login.done():  # stopping, or an operator asked for a new login
                login.cancel()
                await asyncio.gather(login, return_exceptions=True)
        if login.cancelled():
            self.challenge(None)
            return
        try:
            login.result()
        except LoginFailed as failed:
            self._challenge = None
            self.login_state = e.LOGIN_STATE_LOGGED_OUT
            self.crawl_state = e.CRAWL_STATE_NEEDS_LOGIN
            self._failed(str(failed), failed.reason)
            self._publish_status()
            say(f"{self.account_id}: not logged in: {failed}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.login_retry):
                    await self._restart.wait()
            return
        except Exception as error:  # a broken page: tried again after a pause
            self._challenge = None
            self._failures += 1
            self._failed(f"the login page: {_short(error)}", "LOGIN_FAILED")
            self.login_state = e.LOGIN_STATE_LOGGED_OUT
            self._publish_status()
            log.warning("login of %s failed: %s", self.account_id, _short(error))
            await self._pause(self._delay())
            return
        self._challenge = None
        self._logged_out = False
        self.login_state = e.LOGIN_STATE_LOGGED_IN
        self.crawl_state = e.CRAWL_STATE_CRAWLING
        self._error, self._error_reason, self._error_at = "", "", None
        self._publish_status()
        say(f"{self.account_id}: logged in")

    # LoginOperator: what the login flow asks of the operators.

    def challenge(self, challenge: e.LoginChallenge | None) -> None:
        self._challenge = None if challenge is None else _copy(challenge)
        self._waiting_for_code = challenge is not None and challenge.kind == e.LOGIN_CHALLENGE_KIND_SMS_CODE
        if challenge is not None:
            self.login_state = e.LOGIN_STATE_LOGGING_IN
            self.crawl_state = e.CRAWL_STATE_NEEDS_LOGIN
        self._publish_status()
        if challenge is not None and not challenge.scanned and not challenge.error:
            what = "a QR code to scan" if challenge.kind == e.LOGIN_CHALLENGE_KIND_QR_CODE else "the code sent by SMS"
            say(f"{self.account_id}: login waits for {what} (shown in the console)")

    async def next_code(self, timeout: float) -> str:
        async with asyncio.timeout(timeout):
            code, answer = await self._codes.get()
        self._answering = answer
        return code

    def code_answered(self, accepted: bool, message: str) -> None:
        if self._answering is not None and not self._answering.done():
            self._answering.set_result((accepted, message))
        self._answering = None

    async def on_command(self, command: sync_pb2.Command) -> sync_pb2.CommandResult:
        """An operator's code for the login under way, or a request for a new login."""
        if command.HasField("restart_login"):
            self._logged_out = True
            self._restart.set()
            self._wake.set()
            return _result(True, "a new login starts")
        if not self._waiting_for_code:
            return _result(False, "no login of this account waits for a code", e.FAILURE_REASON_TARGET_NOT_FOUND)
        answer: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        self._codes.put_nowait((command.submit_login_code.code, answer))
        try:
            async with asyncio.timeout(_CODE_ANSWER_SECONDS):
                accepted, message = await answer
        except TimeoutError:
            return _result(False, "the login page did not answer the code")
        return _result(accepted, message)

    # -------------------------------------------------------------------- live

    def _ensure_watching(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch())

    async def _stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None

    async def _watch(self) -> None:
        while not self._logged_out:
            try:
                await self.adapter.watch(self._arrived)
            except CrawlFailed as error:
                if error.login_state == e.LOGIN_STATE_LOGGED_OUT:
                    self._logged_out = True
                    self._wake.set()  # the loop starts the login
                    return
                log.warning("the live chat of %s stopped: %s", self.account_id, error)
            except Exception as error:
                log.warning("the live chat of %s stopped: %s", self.account_id, _short(error))
            await asyncio.sleep(self.config.live_retry)

    def _arrived(self, batch: sync_pb2.EntityBatch) -> None:
        if self.book.arrived(batch, time.monotonic()):
            self.live_arrivals += len(batch.messages)
            metrics.LIVE_MESSAGES.labels(account=self.account_id).inc(len(batch.messages))
            self.engine.publish(self.account_id, self.book.view)
            say(f"{self.account_id}: {len(batch.messages)} message(s) arrived live, sent at once")


def _copy(challenge: e.LoginChallenge) -> e.LoginChallenge:
    copy = e.LoginChallenge()
    copy.CopyFrom(challenge)
    return copy


def _result(
    accepted: bool, message: str, reason: e.FailureReason.ValueType = e.FAILURE_REASON_PLATFORM_ERROR
) -> sync_pb2.CommandResult:
    if accepted:
        return sync_pb2.CommandResult(outcome=sync_pb2.COMMAND_OUTCOME_SENT, message=message)
    return sync_pb2.CommandResult(outcome=sync_pb2.COMMAND_OUTCOME_FAILED, reason=reason, message=message)
