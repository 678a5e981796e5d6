"""Who is calling: every IM call is authorized once, by the error boundary (boundary.py),
before its servicer runs; the servicer reads the caller's access from here.

The scope a call needs is its service's: replies need `reply`, logins `login`, the cache
watch of gateways `gateway`, every other IM service `read`. SyncData authenticates its
workers by their tokens itself (sync/service.py); health and reflection are open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TypeVar

from imsync.v1 import (
    accounts_pb2,
    cache_pb2,
    contents_pb2,
    conversations_pb2,
    discussions_pb2,
    events_pb2,
    fleet_pb2,
    logins_pb2,
    messages_pb2,
    replies_pb2,
    search_pb2,
    templates_pb2,
    threads_pb2,
    unified_messages_pb2,
)
from services.master.auth.api_keys import Access
from services.master.model.store import Store

T = TypeVar("T")


def _name(module: object, service: str) -> str:
    return module.DESCRIPTOR.services_by_name[service].full_name  # type: ignore[attr-defined, no-any-return]


SCOPES: dict[str, str] = {
    _name(accounts_pb2, "AccountService"): "read",
    _name(conversations_pb2, "ConversationService"): "read",
    _name(messages_pb2, "MessageService"): "read",
    _name(contents_pb2, "ContentService"): "read",
    _name(discussions_pb2, "DiscussionService"): "read",
    _name(unified_messages_pb2, "UnifiedMessageService"): "read",
    _name(events_pb2, "EventService"): "read",
    _name(replies_pb2, "ReplyService"): "reply",
    # The team's handling of conversations is an agent's work, as replies are.
    _name(threads_pb2, "ThreadService"): "reply",
    _name(templates_pb2, "TemplateService"): "reply",
    _name(search_pb2, "SearchService"): "read",
    _name(logins_pb2, "LoginService"): "login",
    _name(cache_pb2, "CacheService"): "gateway",
    # Adding, pausing and removing accounts, and seeing the workers.
    _name(fleet_pb2, "FleetService"): "admin",
}

CALLER: ContextVar[Access] = ContextVar("imsync_caller")


def scope_of(method: str) -> str | None:
    """The scope `method` ("/package.Service/Method") needs; None: not an API-key call."""
    return SCOPES.get(method.lstrip("/").partition("/")[0])


def caller() -> Access:
    """What the current call's API key allows (set by the boundary before the servicer ran)."""
    return CALLER.get()


async def answered(store: Store, compute: Callable[[Access], Awaitable[T]]) -> T:
    """Runs `compute` with what the caller's key may do, and returns its result once every
    change made so far is on disk (the store's journal), so that nothing a client is told,
    its own change or another's, can be lost by a crash: a journal that cannot write
    answers UNAVAILABLE (NotPersisted)."""
    result = await compute(caller())
    persisted = store.persisted()
    if persisted is not None:
        await persisted
    return result
