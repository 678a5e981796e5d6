"""EventService: live events to IM clients, resumable within the bus's history."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from imsync.v1 import events_pb2 as ev
from imsync.v1 import events_pb2_grpc
from services.master.auth.api_keys import Access, ApiKeys, SharedSeats
from services.master.model.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from services.master.model.events import EventBus
from services.master.rpc.access import caller


async def _renew(seats: SharedSeats, key_id: str, seat: str) -> None:
    """Keeps a stream's seat while it is open (a third of its lifetime at a time)."""
    while True:
        await asyncio.sleep(seats.seconds / 3)
        await seats.renew(key_id, seat)


def _address(metadata: list[tuple[str, str | bytes]], peer: str) -> str:
    """Where a caller is: the nearest address a gateway forwarded, else the connection's."""
    forwarded = next((v for k, v in metadata if k == "x-forwarded-for" and isinstance(v, str)), "")
    return forwarded.rpartition(",")[2].strip() or peer.rpartition(":")[0] or peer


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(
        self, bus: EventBus, keys: ApiKeys, max_streams_per_key: int = 16, max_streams_per_address: int = 64
    ) -> None:
        self._bus = bus
        self._keys = keys
        self._max_streams = max_streams_per_key
        self._max_per_address = max_streams_per_address
        self._streams: Counter[str] = Counter()
        self._by_address: Counter[str] = Counter()

    async def StreamEvents(
        self, request: ev.StreamEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[ev.StreamEventsResponse]:
        key_id = ""
        metadata = list(context.invocation_metadata() or ())
        address = _address(metadata, context.peer() or "")
        access = caller()
        if access.key_id and self._streams[access.key_id] >= self._max_streams:
            raise ResourceExhausted(f"this key already has {self._max_streams} event streams open")
        if self._by_address[address] >= self._max_per_address:
            raise ResourceExhausted(f"{self._max_per_address} event streams are open from this address already")
        key_id = access.key_id
        for position, account_id in enumerate(request.account_ids):
            access.check(account_id, field=f"account_ids[{position}]")
        # A key limited to some accounts hears of those only.
        accounts = list(request.account_ids) or sorted(access.accounts or ())
        subscription = self._bus.subscribe(accounts, list(request.types), request.after_event_id)
        seats, seat, renewing = self._keys.seats if access.key_id else None, secrets.token_hex(8), None
        if seats is not None and not await seats.take(key_id, seat, self._max_streams):
            self._bus.unsubscribe(subscription)
            raise ResourceExhausted(f"this key already has {self._max_streams} event streams open")
        if seats is not None:
            renewing = asyncio.create_task(_renew(seats, key_id, seat))
        self._streams[key_id] += 1
        self._by_address[address] += 1
        try:
            # Headers now: a client learns the stream is open before the first event.
            await context.send_initial_metadata(())
            check = self._still_allowed(metadata, access, request) if access.key_id else None
            # The team's templates are for keys that may use them (the reply scope).
            team_wide = "reply" in access.scopes
            async for event in self._bus.follow(subscription, check):
                if event.account_id or team_wide:
                    yield ev.StreamEventsResponse(event=event)
        finally:
            if renewing is not None and seats is not None:
                renewing.cancel()
                await asyncio.shield(seats.release(key_id, seat))
            self._streams[key_id] -= 1
            self._by_address[address] -= 1
            if self._by_address[address] <= 0:
                del self._by_address[address]

    def _still_allowed(
        self, metadata: list[tuple[str, str | bytes]], access: Access, request: ev.StreamEventsRequest
    ) -> Callable[[], None]:
        """A check that ends a stream once its key is revoked or no longer allows what the
        stream carries: within the quarter second in which new requests are refused."""
        seen = self._keys.revision()

        def check() -> None:
            nonlocal seen
            revision = self._keys.revision()
            if revision == seen:
                return
            seen = revision
            try:
                now = self._keys.access_of(metadata)
            except Unauthenticated:
                raise Unauthenticated("the API key was revoked; this event stream ends") from None
            if "read" not in now.scopes or now.accounts != access.accounts:
                raise PermissionDenied("the API key's scopes or accounts changed; subscribe again")

        return check
