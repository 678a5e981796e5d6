"""The gateway process: the Starlette app under uvicorn."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

from services.common.addresses import AddressInUse, check_free
from services.common.http_server import HttpOptions, serve_asgi
from services.common.observability import serve_metrics
from services.common.tls import ClientTls

from .app import create_app
from .console import CONSOLE_DIR


@dataclass(frozen=True)
class GatewayConfig:
    listen: str = "127.0.0.1:8080"
    master: str = "127.0.0.1:50051"
    # The web console's files, served at `/`; None serves no console.
    console: Path | None = CONSOLE_DIR
    # TLS to the master; None speaks plain text.
    master_tls: ClientTls | None = None
    # HTTPS and the proxies believed.
    http: HttpOptions = HttpOptions()
    # Keep answers of repeated reads, kept exact by the master's invalidations; never over
    # several masters (whose store is shared in Redis).
    cache: bool = True
    # An API key with the "gateway" scope, for a master with API keys.
    cache_key: str = ""
    # Bytes of answers kept, of which one caller holds at most a quarter.
    cache_bytes: int = 64 * 1024 * 1024
    # Where Prometheus metrics are served ("" for nowhere); and whether on the gateway's port too.
    metrics_listen: str = ""
    metrics_on_port: bool = False
    # Origins whose pages may call the API from a browser (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    # The old IM names in every IM answer.
    legacy_names: bool = False


def run(config: GatewayConfig) -> None:
    scheme = "https" if config.http.tls_cert else "http"
    watch = config.cache and "," not in config.master
    kept = "keeping answers while the master allows" if watch else "keeping no answers"
    announce = lambda bound: f"imsync gateway listening on {scheme}://{bound} (master {config.master}, {kept})"  # noqa: E731
    app = create_app(
        config.master,
        console=config.console,
        tls=config.master_tls,
        trusted_proxies=config.http.trusted_proxies,
        watch=watch,
        watch_key=config.cache_key,
        cache_bytes=config.cache_bytes,
        metrics=config.metrics_on_port,
        cors_origins=config.cors_origins,
        legacy_names=config.legacy_names,
    )

    async def both() -> None:
        check_free(config.listen)
        if config.metrics_listen:
            check_free(config.metrics_listen)
        served = [serve_asgi(app, config.listen, announce, options=config.http)]
        if config.metrics_listen:
            served.append(serve_metrics(config.metrics_listen, "gateway"))
        await asyncio.gather(*served)

    try:
        asyncio.run(both())
    except AddressInUse as error:
        print(f"imsync gateway: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
