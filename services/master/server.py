"""The master process: SyncService and the IM query services over one store."""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from imsync.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    cache_pb2,
    cache_pb2_grpc,
    contents_pb2,
    contents_pb2_grpc,
    conversations_pb2,
    conversations_pb2_grpc,
    discussions_pb2,
    discussions_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    logins_pb2,
    logins_pb2_grpc,
    messages_pb2,
    messages_pb2_grpc,
    replies_pb2,
    replies_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
    sync_pb2,
    templates_pb2,
    templates_pb2_grpc,
    threads_pb2,
    threads_pb2_grpc,
    unified_messages_pb2,
    unified_messages_pb2_grpc,
)
from services.common.addresses import AddressInUse, check_free
from services.common.logs import Outage
from services.common.observability import serve_metrics
from services.common.rate_limit import RateLimiter
from services.common.tls import ServerTls
from services.master.api.cache import CacheServicer
from services.master.api.events import EventServicer
from services.master.api.logins import LoginServicer
from services.master.api.queries import (
    AccountServicer,
    ContentServicer,
    ConversationServicer,
    DiscussionServicer,
    MessageServicer,
    UnifiedMessageServicer,
)
from services.master.api.replies import ReplyServicer
from services.master.api.search import SearchServicer
from services.master.api.templates import TemplateServicer
from services.master.api.threads import ThreadServicer
from services.master.auth.api_keys import ApiKeys
from services.master.auth.at_start import refusal, warn_of_missing
from services.master.auth.session_keys import SessionKeys
from services.master.auth.worker_tokens import WorkerTokens
from services.master.backend import MemoryBackend, open_backend
from services.master.memory.durability import Recovery
from services.master.model import collector
from services.master.model.coherence import Coherence
from services.master.model.commands import Commands
from services.master.model.events import EventBus
from services.master.model.retention import Retention
from services.master.model.store import Store
from services.master.redis.errors import reraise_cancellation
from services.master.rpc.interceptor import ServerInterceptor
from services.master.snoozes import SnoozeClock
from services.master.sync.fleet_service import FleetServicer
from services.master.sync.hub import SyncConfig, SyncHub
from services.master.sync.service import SyncServicer, add_sync_service

from .data_lock import DataDirInUse
from .health import Health

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    sync_pb2.DESCRIPTOR.services_by_name["SyncService"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    conversations_pb2.DESCRIPTOR.services_by_name["ConversationService"].full_name,
    messages_pb2.DESCRIPTOR.services_by_name["MessageService"].full_name,
    contents_pb2.DESCRIPTOR.services_by_name["ContentService"].full_name,
    discussions_pb2.DESCRIPTOR.services_by_name["DiscussionService"].full_name,
    unified_messages_pb2.DESCRIPTOR.services_by_name["UnifiedMessageService"].full_name,
    replies_pb2.DESCRIPTOR.services_by_name["ReplyService"].full_name,
    threads_pb2.DESCRIPTOR.services_by_name["ThreadService"].full_name,
    templates_pb2.DESCRIPTOR.services_by_name["TemplateService"].full_name,
    fleet_pb2.DESCRIPTOR.services_by_name["FleetService"].full_name,
    search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name,
    logins_pb2.DESCRIPTOR.services_by_name["LoginService"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    cache_pb2.DESCRIPTOR.services_by_name["CacheService"].full_name,
)


@dataclass(frozen=True)
class MasterConfig:
    listen: str = "127.0.0.1:50051"
    # TOML file of hashed worker tokens; without one, no worker may sync.
    worker_tokens: Path | None = None
    sync: SyncConfig = SyncConfig()
    command_ttl: float = 300.0
    # TOML file of hashed API keys for IM clients; without one, every client may read all.
    api_keys: Path | None = None
    # Requests a second per API key (a burst of twice as many); 0: no limit.
    rate_limit: float = 50.0
    max_streams_per_key: int = 16
    max_streams_per_address: int = 64
    # Events kept for clients resuming a stream: at most so many, and so many bytes.
    event_history: int = 10_000
    event_history_bytes: int = 64 * 1024 * 1024
    # The largest gRPC message taken at all (a larger one ends its stream); sync messages
    # between SyncConfig.max_message_bytes and this are refused with a Nack.
    max_receive_bytes: int = 64 * 1024 * 1024
    # Where Prometheus metrics are served ("" for nowhere).
    metrics_listen: str = ""
    # Where the journal lives; without one, a restart loses everything.
    data_dir: Path | None = None
    # SQLite's synchronous setting for the journal: FULL survives power loss, NORMAL only
    # a crash of the process.
    journal_sync: str = "FULL"
    # An account's journal rows are compacted into a checkpoint once they outweigh both
    # this and its last checkpoint.
    checkpoint_min_bytes: int = 16 * 1024 * 1024
    # What a stopping master tells its workers to wait before they connect again.
    reconnect_after: float = 1.0
    retention: Retention = Retention()
    # TLS for every client (workers, gateways, services); None serves plain text.
    tls: ServerTls | None = None
    # Where accounts live: "memory" (this process, journaled under data_dir), or a Redis
    # URL (redis://host:port/db) shared by several masters.
    store: str = "memory"
    # Prefix of every Redis key, so that several deployments can share one Redis.
    redis_prefix: str = "imsync"
    # With Redis: acknowledge a change only once this many replicas have it (WAIT), within
    # redis_wait_timeout seconds (else it is not acknowledged: UNAVAILABLE).
    redis_wait_replicas: int = 0
    redis_wait_timeout: float = 1.0
    # This master's name in the leases it holds in Redis; empty: host, process and address.
    master_id: str = ""
    # How long a gateway keeping answers may go unheard before changes are acknowledged
    # without it (coherence.py).
    cache_lease: float = 1.0
    # The key ring workers' uploaded sessions are sealed with (auth/session_keys.py);
    # None: no session is kept, and an account that moves logs in again.
    session_keys: Path | None = None

    @property
    def shared(self) -> bool:
        return self.store != "memory"


# How long stop() waits for each background task once cancelled.
_TASK_STOP_SECONDS = 5.0
# How often the master collects what its freezes hold in cycles (collector.py), when it froze anything.
_MAINTENANCE_SECONDS = 600


class Master:
    """A master's parts, for the process and for tests that run one in-process."""

    def __init__(self, config: MasterConfig, store: Store | None = None) -> None:
        self.config = config
        if config.cache_lease <= 0:
            raise ValueError(f"--cache-lease-seconds: {config.cache_lease:g} is not a positive number of seconds")
        self.backend = open_backend(config, store)
        self.hub = SyncHub(
            self.store,
            WorkerTokens(config.worker_tokens),
            self.book,
            config.sync,
            self.backend.shared_leases,
            SessionKeys.load(config.session_keys) if config.session_keys is not None else None,
        )
        self.keys = ApiKeys(config.api_keys, RateLimiter(config.rate_limit, int(config.rate_limit * 2)))
        # Over Redis, a key's rate is counted across every master.
        self.keys.shared = self.backend.shared_limiter(self.keys.limiter)
        self.keys.seats = self.backend.shared_seats()
        # The IM servicers: served over gRPC, and called directly by an embedded gateway.
        self.im_servicers = im_servicers(
            self.store,
            self.book,
            self.bus,
            self.keys,
            self.hub,
            config.max_streams_per_key,
            config.max_streams_per_address,
        )
        self.snoozes = SnoozeClock(self.store, self.bus)
        self.server: grpc.aio.Server | None = None
        # Set once stop() begins: the background loops end at their next turn.
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        # Set when the journal fails: the master cannot keep its promises and must stop.
        self.failed = asyncio.Event()
        # Not serving until started; then while draining, while the journal cannot write,
        # while Redis does not answer.
        self.health = Health(SERVICE_NAMES)

    # The backend's parts, as the servicers and tests know them.
    @property
    def store(self) -> Store:
        return self.backend.store

    @property
    def book(self) -> Commands:
        return self.backend.book

    @property
    def bus(self) -> EventBus:
        return self.backend.bus

    @property
    def coherence(self) -> Coherence | None:
        return self.backend.coherence

    @property
    def persistence(self) -> str:
        """What an acknowledgement means with the Redis the master uses (told at start)."""
        return self.backend.persistence

    @property
    def recovery(self) -> Recovery | None:
        return self.backend.recovery if isinstance(self.backend, MemoryBackend) else None

    async def start(self) -> int:
        """Recovers the data directory, if any, and starts serving on config.listen; returns the
        port. Raises AddressInUse or DataDirInUse when another process holds either."""
        check_free(self.config.listen)
        await self.backend.open(self.config.listen, self.health, self.failed)
        if self.recovery is not None and self.recovery.journal.epoch > 1:
            self.hub.scheduler.wait_for_returning_workers()
        self._tasks = [asyncio.create_task(task) for task in self.backend.background(self.health, self._renew_leases)]
        # No SO_REUSEPORT: a second master on this port fails to bind instead of sharing it.
        self.server = await build_server(
            self.hub,
            self.im_servicers,
            CacheServicer(self.coherence, self.keys),
            self.health,
            self.keys,
            self.config.max_receive_bytes,
        )
        if self.config.tls is not None:
            port = _bind(lambda: self.server.add_secure_port(self.config.listen, self.config.tls.credentials()))  # type: ignore[union-attr]
        else:
            port = _bind(lambda: self.server.add_insecure_port(self.config.listen))  # type: ignore[union-attr]
        if port == 0:
            raise AddressInUse(self.config.listen)
        self.backend.bound(f"{self.config.listen.rpartition(':')[0]}:{port}")
        await self.server.start()
        self.health.set_reason("starting", None)
        self._tasks.append(asyncio.create_task(self.hub.clock.run()))
        self._tasks.append(asyncio.create_task(self._sweep()))
        self._tasks.append(asyncio.create_task(self.snoozes.run()))
        if self.coherence is not None:
            self._tasks.append(asyncio.create_task(self._watch_keys(self.coherence)))
        return port

    async def _watch_keys(self, coherence: Coherence) -> None:
        """Gateways keep answers per API key: once the keys file changes (a key revoked, its
        accounts narrowed), every kept answer goes."""
        revision = self.keys.revision()
        while True:
            await asyncio.sleep(0.25)
            if coherence.watching and (now := self.keys.revision()) != revision:
                revision = now
                coherence.changed_everything()

    async def _sweep(self) -> None:
        scheduling = Outage(log, "scheduling", self.backend.out_of_reach)
        sweeping = Outage(log, "the sweep", self.backend.out_of_reach)
        for count in itertools.count(1):
            await asyncio.sleep(1.0)
            if self._stopping:  # a cancellation alone may be lost in a call to Redis
                return
            await _turn(scheduling, self.hub.scheduler.round())
            await _turn(sweeping, self._sweep_once(count))

    async def _sweep_once(self, count: int) -> None:
        await self.hub.sweep()
        if count % self.backend.retention_every == 0:
            await self.store.enforce_retention()
        if count % _MAINTENANCE_SECONDS == 0 and collector.maintain():
            log.debug("collected what the freezes of the last %d s held", _MAINTENANCE_SECONDS)
        await self.backend.sweep(count)

    async def _renew_leases(self) -> None:
        renewing = Outage(log, "renewing the leases in Redis", self.backend.out_of_reach)
        while not self._stopping:
            await asyncio.sleep(self.config.sync.lease_duration / 3)
            await _turn(renewing, self.hub.renew_shared())

    async def stop(self, grace: float | None = None) -> None:
        """Stops taking work, answers what was taken, tells workers to come back later,
        and leaves the journal checkpointed and closed."""
        self.health.set_reason("draining", "the master is stopping")
        self._stopping = True
        self.backend.stopping()
        for task in self._tasks:
            task.cancel()
            # Bounded: a task that swallowed its cancellation must not keep the master up.
            done, _ = await asyncio.wait({task}, timeout=_TASK_STOP_SECONDS)
            if not done:
                log.warning("a background task did not stop within %g s: %s", _TASK_STOP_SECONDS, task.get_coro())
        self.hub.drain(self.config.reconnect_after)
        self.bus.close()
        if self.server is not None:
            await self.server.stop(grace)
        await self.backend.close(self.hub.settle)
        # What the freezes held (collector.py) goes back to the collector with the master's state.
        collector.thaw()


def im_servicers(
    store: Store,
    book: Commands,
    bus: EventBus,
    keys: ApiKeys,
    hub: SyncHub,
    max_streams_per_key: int = 16,
    max_streams_per_address: int = 64,
) -> list[tuple[ServiceDescriptor, Any]]:
    """The IM services' servicers with their descriptors: served over gRPC, and called
    directly by a gateway in this process (in_process.py)."""

    def service(module: Any, name: str) -> ServiceDescriptor:
        return module.DESCRIPTOR.services_by_name[name]  # type: ignore[no-any-return]

    return [
        (service(accounts_pb2, "AccountService"), AccountServicer(store, keys)),
        (service(conversations_pb2, "ConversationService"), ConversationServicer(store, keys)),
        (service(messages_pb2, "MessageService"), MessageServicer(store, keys)),
        (service(contents_pb2, "ContentService"), ContentServicer(store, keys)),
        (service(discussions_pb2, "DiscussionService"), DiscussionServicer(store, keys)),
        (service(unified_messages_pb2, "UnifiedMessageService"), UnifiedMessageServicer(store, keys)),
        (service(threads_pb2, "ThreadService"), ThreadServicer(store, keys)),
        (service(templates_pb2, "TemplateService"), TemplateServicer(store, keys)),
        (service(fleet_pb2, "FleetService"), FleetServicer(hub)),
        (service(search_pb2, "SearchService"), SearchServicer(store, keys)),
        (service(replies_pb2, "ReplyService"), ReplyServicer(store, keys, book)),
        (service(logins_pb2, "LoginService"), LoginServicer(store, keys, book)),
        (service(events_pb2, "EventService"), EventServicer(bus, keys, max_streams_per_key, max_streams_per_address)),
    ]


_ADDERS: dict[str, Callable[[Any, grpc.aio.Server], None]] = {
    "AccountService": accounts_pb2_grpc.add_AccountServiceServicer_to_server,
    "ConversationService": conversations_pb2_grpc.add_ConversationServiceServicer_to_server,
    "MessageService": messages_pb2_grpc.add_MessageServiceServicer_to_server,
    "ContentService": contents_pb2_grpc.add_ContentServiceServicer_to_server,
    "DiscussionService": discussions_pb2_grpc.add_DiscussionServiceServicer_to_server,
    "UnifiedMessageService": unified_messages_pb2_grpc.add_UnifiedMessageServiceServicer_to_server,
    "ThreadService": threads_pb2_grpc.add_ThreadServiceServicer_to_server,
    "TemplateService": templates_pb2_grpc.add_TemplateServiceServicer_to_server,
    "FleetService": fleet_pb2_grpc.add_FleetServiceServicer_to_server,
    "SearchService": search_pb2_grpc.add_SearchServiceServicer_to_server,
    "ReplyService": replies_pb2_grpc.add_ReplyServiceServicer_to_server,
    "LoginService": logins_pb2_grpc.add_LoginServiceServicer_to_server,
    "EventService": events_pb2_grpc.add_EventServiceServicer_to_server,
}


async def build_server(
    hub: SyncHub,
    servicers: list[tuple[ServiceDescriptor, Any]],
    cache: CacheServicer,
    health_servicer: Health,
    keys: ApiKeys,
    max_receive_bytes: int = 64 * 1024 * 1024,
) -> grpc.aio.Server:
    server = grpc.aio.server(
        interceptors=[ServerInterceptor(keys)],
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.max_send_message_length", max_receive_bytes),
        ],
    )
    add_sync_service(SyncServicer(hub), server)
    for descriptor, servicer in servicers:
        _ADDERS[descriptor.name](servicer, server)
    cache_pb2_grpc.add_CacheServiceServicer_to_server(cache, server)

    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return server


# What runs in the master's process beside it until the event is set (the embedded gateway).
Alongside = Callable[["Master", asyncio.Event], Coroutine[Any, Any, None]]


async def _turn(outage: Outage, work: Coroutine[Any, Any, None]) -> None:
    """One turn of a background loop: its failure told as `outage` tells it."""
    try:
        await work
        outage.succeeded()
    except Exception as error:
        reraise_cancellation()
        outage.failed(error)


def _bind(add: Callable[[], int]) -> int:
    """gRPC's add_*_port: the port bound, 0 when it could not bind."""
    try:
        return add()
    except RuntimeError:
        return 0


def _exit(message: str, code: int = 2) -> NoReturn:
    """One line saying why, and the exit code of a wrong invocation or configuration."""
    print(f"imsync master: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


async def serve(config: MasterConfig, store: Store | None = None, alongside: Alongside | None = None) -> None:
    try:
        master = Master(config, store)
    except ValueError as error:
        _exit(str(error))
    refused = refusal(config.worker_tokens, config.api_keys, master.hub.tokens, master.keys)
    if refused is not None:
        _exit(refused)
    try:
        port = await master.start()
    except (AddressInUse, DataDirInUse) as error:
        _exit(str(error))
    except OSError as error:
        _exit(str(error), 1)
    host = config.listen.rpartition(":")[0]
    warn_of_missing(config.worker_tokens, config.api_keys, config.session_keys)
    recovery = master.recovery
    if recovery is not None:
        for problem in recovery.problems:
            print(f"imsync master: JOURNAL DAMAGED: {problem}", flush=True)
        print(
            f"imsync master: recovered {recovery.accounts} accounts, {recovery.entities} entities and "
            f"{recovery.replies} replies from {config.data_dir} in {recovery.seconds:.2f} s",
            flush=True,
        )
    if master.persistence:
        print(f"imsync master: store {config.store} (prefix {config.redis_prefix!r}); {master.persistence}", flush=True)
    stop = asyncio.Event()
    beside = None
    if alongside is not None:
        beside = asyncio.create_task(alongside(master, stop))
        await asyncio.sleep(0)  # it binds and says where before the master does
        if beside.done() and isinstance(beside.exception(), AddressInUse):
            await master.stop(grace=0)
            _exit(f"--gateway-listen: {beside.exception()}")
    # Tests and the demo read this line to learn the port when asked for port 0.
    print(f"imsync master listening on {host}:{port}", flush=True)
    metrics = None
    if config.metrics_listen:
        metrics = asyncio.create_task(serve_metrics(config.metrics_listen, "master", stop))
        await asyncio.sleep(0)
        if metrics.done() and isinstance(metrics.exception(), AddressInUse):
            await master.stop(grace=0)
            _exit(f"--metrics-listen: {metrics.exception()}")

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    failed = asyncio.create_task(master.failed.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([failed, stopped], return_when=asyncio.FIRST_COMPLETED)
    failed.cancel()
    stopped.cancel()
    log.info("stopping")
    stop.set()
    if beside is not None:
        await asyncio.gather(beside, return_exceptions=True)
    if metrics is not None:
        await asyncio.gather(metrics, return_exceptions=True)
    await master.stop(grace=5)
    if master.failed.is_set():
        raise SystemExit("imsync master: the journal failed; stopped without acknowledging more")
