"""The gateway in the master's process (`imsync master --gateway-listen`): one process for
single-machine use, in which the gateway calls the services directly (in_process.py)
and answers repeated reads from a cache kept exact by the store's own generations
(gateway/cache.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from starlette.applications import Starlette

from services.common.http_server import HttpOptions, serve_asgi
from services.gateway.app import create_app
from services.gateway.cache import Metadata, ResponseCache
from services.gateway.observe import Probe
from services.master.in_process import InProcessChannel
from services.master.memory.store import MemoryStore
from services.master.server import Alongside, Master


def embedded_app(
    master: Master,
    *,
    console: Path | None = None,
    http: HttpOptions = HttpOptions(),
    cache: bool = True,
    cache_bytes: int = 64 * 1024 * 1024,
    encoded_bytes: int = 32 * 1024 * 1024,
    metrics: bool = False,
    cors_origins: Sequence[str] = (),
    legacy_names: bool = False,
) -> tuple[Starlette, ResponseCache | None]:
    """The gateway over a started master's servicers, and its cache (none over a store
    other masters change too)."""
    responses = None
    if cache and isinstance(master.store, MemoryStore):
        keys = master.keys

        def authorize(metadata: Metadata) -> object:
            return keys.authorize(list(metadata), "read")

        responses = ResponseCache(master.store.stamp, authorize, max_bytes=cache_bytes)
    app = create_app(
        channel=InProcessChannel(master.im_servicers, master.keys, encoded_bytes=encoded_bytes),  # type: ignore[arg-type]
        console=console,
        trusted_proxies=http.trusted_proxies,
        cache=responses,
        metrics=metrics,
        ready=_ready_probe(master),
        cors_origins=cors_origins,
        legacy_names=legacy_names,
    )
    return app, responses


def _ready_probe(master: Master) -> Probe:
    """Ready while the master in this process serves (its health's reasons, if any, say why not)."""

    async def ready() -> str:
        return "; ".join(master.health.reasons.values())

    return ready


def embedded_gateway(
    listen: str,
    *,
    console: Path | None,
    http: HttpOptions = HttpOptions(),
    cache: bool = True,
    cache_bytes: int = 64 * 1024 * 1024,
    encoded_bytes: int = 32 * 1024 * 1024,
    metrics: bool = False,
    cors_origins: Sequence[str] = (),
    legacy_names: bool = False,
) -> Alongside:
    async def run(master: Master, stop: asyncio.Event) -> None:
        app, responses = embedded_app(
            master,
            console=console,
            http=http,
            cache=cache,
            cache_bytes=cache_bytes,
            encoded_bytes=encoded_bytes,
            metrics=metrics,
            cors_origins=cors_origins,
            legacy_names=legacy_names,
        )
        scheme = "https" if http.tls_cert else "http"
        kept = "with a response cache" if responses is not None else "without a cache (the store is shared)"
        announce = lambda bound: f"imsync gateway listening on {scheme}://{bound} (embedded, {kept})"  # noqa: E731
        await serve_asgi(app, listen, announce, options=http, stop=stop)

    return run
