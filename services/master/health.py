"""gRPC health that tells the truth: the standard Health service (Check, Watch and List) over
statuses the master keeps in step with what it can do.

Every service of the master is NOT_SERVING while the master drains (SIGTERM), while its
journal cannot write (a full disk, a read-only directory: nothing can be acknowledged),
and while its Redis does not answer; SERVING again once that passes. "" is the whole
server, as gRPC's health protocol has it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.rpc_errors import bounded
from services.master.model.metrics import SERVING

log = logging.getLogger(__name__)

SERVING_STATUS = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
_ROUTINE = frozenset({"starting", "draining"})


class Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]  # grpc_health has no stubs
    def __init__(self, services: Iterable[str]) -> None:
        self._status: dict[str, health_pb2.HealthCheckResponse.ServingStatus.ValueType] = {
            name: NOT_SERVING for name in ("", *services)
        }
        self._watchers: dict[str, set[asyncio.Queue[health_pb2.HealthCheckResponse.ServingStatus.ValueType]]] = {}
        # Why the master is not serving, by cause ("starting", "draining", "journal", "redis").
        self.reasons: dict[str, str] = {"starting": "the master is starting"}

    def status(self) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
        return self._status[""]

    def set_reason(self, cause: str, why: str | None) -> None:
        """Notes (or, with None, clears) a cause of not serving; every status follows."""
        before = dict(self.reasons)
        if why is None:
            self.reasons.pop(cause, None)
        else:
            self.reasons[cause] = why
        if self.reasons != before:
            # Starting and draining are what a master does; the others are trouble.
            level = logging.INFO if cause in _ROUTINE else logging.WARNING
            if why is not None:
                log.log(level, "not serving: %s", why)
            elif self.reasons:
                log.log(level, "%s is fine; still not serving: %s", cause, "; ".join(self.reasons.values()))
            else:
                log.log(level, "serving" if cause == "starting" else f"serving again: {cause} is fine")
        self._set_all(NOT_SERVING if self.reasons else SERVING_STATUS)

    def _set_all(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        SERVING.set(1 if status == SERVING_STATUS else 0)
        for service in self._status:
            if self._status[service] != status:
                self._status[service] = status
                for queue in self._watchers.get(service, ()):
                    queue.put_nowait(status)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no service {bounded(repr(request.service))}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        queue: asyncio.Queue[health_pb2.HealthCheckResponse.ServingStatus.ValueType] = asyncio.Queue()
        self._watchers.setdefault(request.service, set()).add(queue)
        try:
            last = self._status.get(request.service, UNKNOWN)
            yield health_pb2.HealthCheckResponse(status=last)
            while True:
                status = await queue.get()
                if status != last:
                    last = status
                    yield health_pb2.HealthCheckResponse(status=status)
        finally:
            self._watchers[request.service].discard(queue)

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        response = health_pb2.HealthListResponse()
        for service, status in self._status.items():
            response.statuses[service].status = status
        return response
