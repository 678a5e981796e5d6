"""The worker's end of SyncData: one stream to the master for all the worker's accounts.

It says Hello with the versions it believes the master has, resumes each account from the
version the master really has (a delta, or a snapshot when that version is unknown), sends
heartbeats when idle, reports account status, performs commands, and when the stream breaks
or the master falls silent it reconnects with exponential backoff and full jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc

from imsync.v1 import sync_pb2, sync_pb2_grpc
from services.common.awake import AwakeClock, before
from services.common.rpc_errors import reason_of
from services.common.tls import open_channel

from .account_state import AccountView
from .account_sync import AccountSync
from .engine_config import EngineConfig, GoAway
from .metrics import CONNECTED
from .performer import CommandHandler, Performer
from .welcome import welcome_of

log = logging.getLogger(__name__)

# A scheduled worker's hands: start running an assigned account; stop running one.
AssignHandler = Callable[[sync_pb2.Assign], Awaitable[None]]
ReleaseHandler = Callable[[str, str], Awaitable[None]]

_TRANSPORT_LIMIT = 64 * 1024 * 1024


class SyncEngine:
    def __init__(
        self,
        config: EngineConfig,
        account_ids: Iterable[str],
        on_command: CommandHandler | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.accounts = {
            account_id: AccountSync(account_id, window=config.window, chunk_bytes=config.chunk_bytes)
            for account_id in account_ids
        }
        self._rng = rng or random.Random()
        self._status: dict[str, sync_pb2.AccountStatusReport] = {}
        self._status_dirty: set[str] = set()
        self.commands = Performer(config, on_command, self._deliver)
        self._unsent: list[sync_pb2.SyncDataRequest] = []
        self._outbound: asyncio.Queue[sync_pb2.SyncDataRequest | None] | None = None
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self.heartbeat_interval = 5.0
        self.lease_duration = 15.0
        self._rehello_at: float | None = None
        self._attempt = 0
        # When the master was last heard from (any message on the stream): on the monotonic
        # clock (how long the worker may run its accounts without a stream) and on the
        # clock of the time it was awake (the stream's liveness; services/common/awake.py).
        self.clock = AwakeClock()
        self._heard_at, self._heard_awake = time.monotonic(), self.clock()
        self._stopping = False  # set by drain(): whatever is assigned now goes back at once
        self._goodbye = False  # said by drain(): the stream's end is awaited, not reconnected
        # Observable state, for the worker's progress line and for tests.
        self.sessions = 0
        self.bytes_sent: Counter[str] = Counter()
        self.refused: dict[str, sync_pb2.AccountRefusal] = {}
        # A scheduled worker's (capacity > 0): what starts and stops an account's runner.
        self.on_assign: AssignHandler | None = None
        self.on_release: ReleaseHandler | None = None
        # Sessions to upload, newest per account, sent once the account is granted.
        self._sessions: dict[str, bytes] = {}
        self._master_keeps_sessions = True
        # Accounts being started or stopped (their tasks), so that a stop waits for a start.
        self._moving: dict[str, asyncio.Task[None]] = {}

    # ---------------------------------------------------------- the crawler's side

    def publish(self, account_id: str, view: AccountView) -> None:
        """The newest crawl of an account; what changed since the last one will be sent."""
        self.accounts[account_id].publish(view)
        self._wake.set()

    def report_status(self, report: sync_pb2.AccountStatusReport) -> None:
        self._status[report.account_id] = report
        self._status_dirty.add(report.account_id)
        self._wake.set()

    def upload_session(self, account_id: str, storage_state: bytes) -> None:
        """The account's browser session changed: the master keeps it for the next worker."""
        self._sessions[account_id] = storage_state
        self._wake.set()

    def add_account(self, account_id: str, master_version: int, lease_epoch: int = 0) -> AccountSync:
        """An account assigned to this worker, granted at `master_version` (and `lease_epoch`)."""
        account = self.accounts.get(account_id)
        if account is None:
            account = self.accounts[account_id] = AccountSync(
                account_id, window=self.config.window, chunk_bytes=self.config.chunk_bytes
            )
        account.on_welcome(master_version, lease_epoch)
        self.refused.pop(account_id, None)
        return account

    def remove_account(self, account_id: str) -> None:
        """The worker no longer runs the account."""
        self.accounts.pop(account_id, None)
        self._status.pop(account_id, None)
        self._status_dirty.discard(account_id)
        self._sessions.pop(account_id, None)
        self.refused.pop(account_id, None)

    def _move(self, account_id: str, step: Awaitable[None]) -> None:
        """Runs a start or stop of an account after the one under way, in order."""
        before = self._moving.get(account_id)

        async def run() -> None:
            if before is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await before
            try:
                await step
            except Exception:
                log.exception("could not start or stop account %s", account_id)
            finally:
                if self._moving.get(account_id) is task:
                    del self._moving[account_id]

        task = asyncio.get_running_loop().create_task(run())
        self._moving[account_id] = task

    def _assigned(self, assign: sync_pb2.Assign) -> None:
        account_id = assign.account.account_id
        if self._stopping:  # given before the master read that this worker stops
            self._say_released(account_id, assign.version.lease_epoch, stopping=True)
            return

        async def start() -> None:  # after a stop of it under way, which would remove it again
            self.add_account(account_id, assign.version.version, assign.version.lease_epoch)
            if self.on_assign is not None:
                await self.on_assign(assign)

        self._move(account_id, start())

    def _release(self, account_id: str, reason: str, *, answer: bool, stopping: bool = False) -> None:
        async def stop() -> None:
            try:
                if self.on_release is not None:
                    await self.on_release(account_id, reason)
            finally:
                # Its last session goes before the lease is let go, whatever else failed.
                state, account = self._sessions.pop(account_id, None), self.accounts.get(account_id)
                if state is not None and account is not None and account.granted:
                    upload = sync_pb2.SessionUpload(account_id=account_id, storage_state=state)
                    self._deliver(sync_pb2.SyncDataRequest(session=upload))
                self.remove_account(account_id)
                # Asked back, or granted meanwhile (a Welcome to a Hello sent before it stopped).
                if answer or (account is not None and account.granted):
                    self._say_released(account_id, account.lease_epoch if account is not None else 0, stopping=stopping)

        self._move(account_id, stop())

    async def drain(self, timeout: float = 10.0) -> None:
        """A scheduled worker stops: each account stopped, its session uploaded, its lease let
        go; then Goodbye, and the stream's end waited for (the master has read all of it)."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                # In rounds: an account assigned just before is known once its start has run.
                while self.accounts or self._moving:
                    for account_id in [a for a in self.accounts if a not in self._moving]:
                        self._release(account_id, "the worker stops", answer=True, stopping=True)
                    await asyncio.gather(*self._moving.values(), return_exceptions=True)
                if self._outbound is not None:  # (without a stream, the leases lapse on the master)
                    self._goodbye = True
                    self._outbound.put_nowait(sync_pb2.SyncDataRequest(goodbye=sync_pb2.Goodbye()))
                    while self._outbound is not None:
                        await asyncio.sleep(0.02)

    async def wait_synced(self, account_ids: Iterable[str] | None = None, timeout: float = 30.0) -> None:
        """Waits until the master has acknowledged the newest crawl of these accounts."""
        wanted = [self.accounts[a] for a in (account_ids if account_ids is not None else self.accounts)]
        async with asyncio.timeout(timeout):
            while not all(account.synced for account in wanted):
                self._progress.clear()
                await self._progress.wait()

    # ------------------------------------------------------------- the connection

    async def run(self) -> None:
        """Keeps a stream to the master until cancelled."""
        options = [
            ("grpc.max_send_message_length", _TRANSPORT_LIMIT),
            ("grpc.max_receive_message_length", _TRANSPORT_LIMIT),
            # The engine has its own backoff with jitter; the channel's must not add minutes to it.
            ("grpc.initial_reconnect_backoff_ms", int(self.config.backoff_initial * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(self.config.backoff_initial * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(self.config.backoff_max * 1000)),
        ]
        async with self.clock.running(), open_channel(self.config.master, self.config.tls, options) as channel:
            me = asyncio.current_task()
            while True:
                delay: float | None = None
                try:
                    await self._session(channel)
                except asyncio.CancelledError:
                    raise
                except GoAway as away:
                    log.info("the master is going away (%s); connecting again in %.1f s", away.reason, away.delay)
                    self._attempt = 0
                    delay = away.delay * self._rng.uniform(1.0, 1.5)
                except Exception as error:  # whatever broke, the worker reconnects
                    # gRPC turns the cancellation of a task awaiting a call into
                    # AioRpcError(CANCELLED); a cancelled engine must stop all the same.
                    if me is not None and me.cancelling():
                        raise asyncio.CancelledError() from error
                    if isinstance(error, grpc.aio.AioRpcError):
                        log.warning("sync stream ended: %s %s", error.code().name, error.details())
                    else:
                        log.warning("sync stream ended: %r", error)
                finally:
                    self._outbound = None
                    CONNECTED.set(0)
                    for account in self.accounts.values():
                        account.granted = False
                if self._goodbye:
                    return
                if delay is None:
                    ceiling = min(self.config.backoff_max, self.config.backoff_initial * 2**self._attempt)
                    self._attempt += 1
                    delay = self._rng.uniform(0, ceiling)
                await asyncio.sleep(delay)

    async def _session(self, channel: grpc.aio.Channel) -> None:
        outbound: asyncio.Queue[sync_pb2.SyncDataRequest | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[sync_pb2.SyncDataRequest]:
            while (item := await outbound.get()) is not None:
                for message in self.on_the_wire(item):
                    self.bytes_sent[message.WhichOneof("kind") or ""] += message.ByteSize()
                    yield message

        stub: Any = sync_pb2_grpc.SyncServiceStub(channel)
        call = stub.SyncData(requests(), metadata=(("authorization", f"Bearer {self.config.token}"),))
        tasks: list[asyncio.Task[None]] = []
        try:
            outbound.put_nowait(self._hello(self.accounts))
            silence = self.config.liveness_intervals * self.heartbeat_interval
            first = await welcome_of(call, self.clock, silence, self.config.connect_timeout)
            self._heard_at, self._heard_awake = time.monotonic(), self.clock()
            self._outbound = outbound
            # A new stream, perhaps to a master started again with keys: sessions go until it
            # says it keeps none.
            self._master_keeps_sessions = True
            self.sessions += 1
            CONNECTED.set(1)
            self._attempt = 0
            self._on_welcome(first.welcome)
            for request in self._unsent:
                outbound.put_nowait(request)
            self._unsent.clear()
            self._status_dirty.update(self._status)
            tasks = [asyncio.create_task(self._read(call)), asyncio.create_task(self._send(outbound))]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            outbound.put_nowait(None)
            call.cancel()

    def on_the_wire(self, message: sync_pb2.SyncDataRequest) -> list[sync_pb2.SyncDataRequest]:
        """The messages that go out for one queued message: itself. Tests override this to
        inject the faults of a real network (messages delivered twice)."""
        return [message]

    def _hello(self, accounts: Iterable[str]) -> sync_pb2.SyncDataRequest:
        return sync_pb2.SyncDataRequest(
            hello=sync_pb2.Hello(
                worker_id=self.config.worker_id,
                accounts=[
                    sync_pb2.AccountVersion(account_id=a, version=self.accounts[a].confirmed_version)
                    for a in accounts
                    if a in self.accounts
                ],
                capacity=self.config.capacity,
                labels=dict(self.config.labels),
                max_concurrent_crawls=self.config.crawls,
            )
        )

    def _on_welcome(self, welcome: sync_pb2.Welcome) -> None:
        if welcome.HasField("heartbeat_interval"):
            self.heartbeat_interval = welcome.heartbeat_interval.ToNanoseconds() / 1e9 or self.heartbeat_interval
        if welcome.HasField("lease_duration"):
            self.lease_duration = welcome.lease_duration.ToNanoseconds() / 1e9 or self.lease_duration
        for granted in welcome.accounts:
            account = self.accounts.get(granted.account_id)
            if account is not None:
                account.on_welcome(granted.version, granted.lease_epoch)
                self.refused.pop(granted.account_id, None)
            elif self.config.capacity:
                # Claimed by a Hello sent before the account stopped here: given back, or the
                # master would count it run by this worker while nobody runs it.
                self._say_released(granted.account_id, granted.lease_epoch)
        for refusal in welcome.refused:
            self.refused[refusal.account_id] = refusal
            log.warning("account %s refused: %s", refusal.account_id, refusal.status.message)
            if self.config.capacity:
                # A scheduled worker runs what the master gives it, nothing else.
                self._release(refusal.account_id, "refused", answer=False)
        if welcome.refused and not self.config.capacity:
            self._schedule_rehello()
        self._wake.set()
        self._progress.set()

    def unheard_for(self) -> float | None:
        """Seconds since the master was last heard from, while no stream to it is open
        (None while one is: its read's liveness timeout ends it when the master is silent)."""
        return None if self._outbound is not None else time.monotonic() - self._heard_at

    def let_go(self, reason: str) -> Awaitable[list[object]]:
        """Stops every account without a word to the master (there is no stream to say it
        on); done when they are stopped."""
        for account_id in list(self.accounts):
            self._release(account_id, reason, answer=False)
        return asyncio.gather(*self._moving.values(), return_exceptions=True)

    def _schedule_rehello(self) -> None:
        # Claim again once the other owner's lease could have lapsed.
        delay = self.lease_duration * (1 + self._rng.uniform(0, 0.2))
        self._rehello_at = time.monotonic() + delay

    async def _read(self, call: Any) -> None:
        while True:
            deadline = self._heard_awake + self.config.liveness_intervals * self.heartbeat_interval
            response = await before(call.read(), self.clock, deadline)
            if response is grpc.aio.EOF:  # type: ignore[attr-defined]
                if self._goodbye:
                    return
                raise ConnectionError("the master closed the stream")
            self._heard_at, self._heard_awake = time.monotonic(), self.clock()
            kind = response.WhichOneof("kind")
            if kind == "ack":
                account = self.accounts.get(response.ack.account_id)
                if account is not None:
                    account.on_ack(response.ack.version)
            elif kind == "nack":
                account = self.accounts.get(response.nack.account_id)
                if account is not None and account.on_nack(response.nack) == "NOT_OWNER":
                    if self.config.capacity:
                        self._release(response.nack.account_id, "taken", answer=False)
                    else:
                        self._schedule_rehello()
                elif reason_of(response.nack.status) == "NO_SESSION_KEYS":
                    # The master's choice (it runs without --session-keys, and says so): said
                    # once, and no session is sent on this stream again.
                    if self._master_keeps_sessions:
                        log.warning("the master keeps no sessions: %s", response.nack.status.message)
                        self._master_keeps_sessions = False
                elif account is None or not response.nack.version:
                    log.error("master refused: %s", response.nack.status.message)
            elif kind == "command":
                self.commands.start(response.command)
            elif kind == "welcome":
                self._on_welcome(response.welcome)
            elif kind == "assign":
                self._assigned(response.assign)
            elif kind == "release":
                self._release(response.release.account_id, response.release.reason, answer=True)
            elif kind == "go_away":
                raise GoAway(response.go_away.reconnect_after.ToNanoseconds() / 1e9, response.go_away.reason)
            self._wake.set()
            self._progress.set()

    async def _send(self, outbound: asyncio.Queue[sync_pb2.SyncDataRequest | None]) -> None:
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        while True:
            self._wake.clear()
            sent = False
            for account in list(self.accounts.values()):
                for message in account.next_messages():
                    outbound.put_nowait(message)
                    sent = True
            for account_id in [
                a
                for a in self._sessions
                if self._master_keeps_sessions and a in self.accounts and self.accounts[a].granted
            ]:
                upload = sync_pb2.SessionUpload(account_id=account_id, storage_state=self._sessions.pop(account_id))
                outbound.put_nowait(sync_pb2.SyncDataRequest(session=upload))
                sent = True
            for account_id in list(self._status_dirty):
                if account_id in self.accounts and self.accounts[account_id].granted:
                    outbound.put_nowait(sync_pb2.SyncDataRequest(account_status=self._status[account_id]))
                    self._status_dirty.discard(account_id)
                    sent = True
            if self._rehello_at is not None and time.monotonic() >= self._rehello_at:
                self._rehello_at = None
                missing = [a for a, account in self.accounts.items() if not account.granted]
                if missing:
                    outbound.put_nowait(self._hello(missing))
                    sent = True
            now = loop.time()
            if sent:
                last_sent = now
            idle_left = self.heartbeat_interval - (now - last_sent)
            if idle_left <= 0:
                heartbeat = sync_pb2.Heartbeat()
                heartbeat.sent_at.GetCurrentTime()
                outbound.put_nowait(sync_pb2.SyncDataRequest(heartbeat=heartbeat))
                last_sent = now
                continue
            wait = idle_left
            if self._rehello_at is not None:
                wait = min(wait, max(0.0, self._rehello_at - time.monotonic()))
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _say_released(self, account_id: str, lease_epoch: int, *, stopping: bool = False) -> None:
        """Tells the master the worker no longer runs the account, naming the grant it lets go."""
        released = sync_pb2.Released(account_id=account_id, lease_epoch=lease_epoch, stopping=stopping)
        self._deliver(sync_pb2.SyncDataRequest(released=released))

    def _deliver(self, request: sync_pb2.SyncDataRequest) -> None:
        if self._outbound is not None:
            self._outbound.put_nowait(request)
        else:
            self._unsent.append(request)
