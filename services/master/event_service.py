"""EventService: live events to IM clients, resumable within the bus's history."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc

from imsync.v1 import events_pb2 as ev
from imsync.v1 import events_pb2_grpc

from .api_keys import ApiKeys
from .errors import ResourceExhausted, StoreError
from .events import EventBus
from .status import grpc_status_of


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(self, bus: EventBus, keys: ApiKeys, max_streams_per_key: int = 16) -> None:
        self._bus = bus
        self._keys = keys
        self._max_streams = max_streams_per_key
        self._streams: Counter[str] = Counter()

    async def StreamEvents(
        self, request: ev.StreamEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[ev.StreamEventsResponse]:
        key_id = ""
        try:
            access = self._keys.authorize(list(context.invocation_metadata() or ()), "read")
            if access.key_id and self._streams[access.key_id] >= self._max_streams:
                raise ResourceExhausted(f"this key already has {self._max_streams} event streams open")
            key_id = access.key_id
            for position, account_id in enumerate(request.account_ids):
                access.check(account_id, field=f"account_ids[{position}]")
            # A key limited to some accounts hears of those only.
            accounts = list(request.account_ids) or sorted(access.accounts or ())
            subscription = self._bus.subscribe(accounts, list(request.types), request.after_event_id)
            self._streams[key_id] += 1
            try:
                # Headers now: a client learns the stream is open before the first event.
                await context.send_initial_metadata(())
                async for event in self._bus.follow(subscription):
                    yield ev.StreamEventsResponse(event=event)
            finally:
                self._streams[key_id] -= 1
        except StoreError as error:
            status = grpc_status_of(error)
            await context.abort(status.code, status.details, status.trailing_metadata)
