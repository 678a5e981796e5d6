"""The master process: SyncService and the IM query services over one store."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from imsync.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    contents_pb2,
    contents_pb2_grpc,
    conversations_pb2,
    conversations_pb2_grpc,
    discussions_pb2,
    discussions_pb2_grpc,
    messages_pb2,
    messages_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
    unified_messages_pb2,
    unified_messages_pb2_grpc,
)

from .memory_store import MemoryStore
from .query_services import (
    AccountServicer,
    ContentServicer,
    ConversationServicer,
    DiscussionServicer,
    MessageServicer,
    UnifiedMessageServicer,
)
from .store import Store
from .sync_service import SyncServicer

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    sync_pb2.DESCRIPTOR.services_by_name["SyncService"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    conversations_pb2.DESCRIPTOR.services_by_name["ConversationService"].full_name,
    messages_pb2.DESCRIPTOR.services_by_name["MessageService"].full_name,
    contents_pb2.DESCRIPTOR.services_by_name["ContentService"].full_name,
    discussions_pb2.DESCRIPTOR.services_by_name["DiscussionService"].full_name,
    unified_messages_pb2.DESCRIPTOR.services_by_name["UnifiedMessageService"].full_name,
)


@dataclass(frozen=True)
class MasterConfig:
    listen: str = "127.0.0.1:50051"


async def build_server(store: Store) -> grpc.aio.Server:
    server = grpc.aio.server()
    sync_pb2_grpc.add_SyncServiceServicer_to_server(SyncServicer(store), server)
    accounts_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(store), server)
    conversations_pb2_grpc.add_ConversationServiceServicer_to_server(ConversationServicer(store), server)
    messages_pb2_grpc.add_MessageServiceServicer_to_server(MessageServicer(store), server)
    contents_pb2_grpc.add_ContentServiceServicer_to_server(ContentServicer(store), server)
    discussions_pb2_grpc.add_DiscussionServiceServicer_to_server(DiscussionServicer(store), server)
    unified_messages_pb2_grpc.add_UnifiedMessageServiceServicer_to_server(UnifiedMessageServicer(store), server)

    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return server


async def serve(config: MasterConfig, store: Store | None = None) -> None:
    server = await build_server(store if store is not None else MemoryStore())
    port = server.add_insecure_port(config.listen)
    if port == 0:
        raise SystemExit(f"imsync master: cannot listen on {config.listen}")
    host = config.listen.rpartition(":")[0]
    await server.start()
    # Tests and the demo read this line to learn the port when asked for port 0.
    print(f"imsync master listening on {host}:{port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await server.stop(grace=5)
