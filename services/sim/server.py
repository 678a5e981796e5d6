"""The simulator process."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from dataclasses import dataclass

from services.common.addresses import AddressInUse
from services.common.http_server import HttpOptions, serve_asgi

from .app import Simulator, build_app
from .platform_data import Platform


@dataclass(frozen=True)
class SimConfig:
    listen: str = "127.0.0.1:8090"
    accounts: int = 3
    seed: int = 1
    # New comments, replies and messages per minute, over all accounts.
    rate_per_minute: float = 6.0
    http: HttpOptions = HttpOptions()


async def serve(config: SimConfig) -> None:
    simulator = Simulator(
        Platform(accounts=config.accounts, seed=config.seed, now=int(time.time())),
        rate_per_minute=config.rate_per_minute,
    )
    grower = asyncio.create_task(simulator.grow_forever())
    try:
        accounts = ", ".join(simulator.platform.accounts)
        await serve_asgi(
            build_app(simulator),
            config.listen,
            lambda bound: f"imsync sim listening on http://{bound} (accounts {accounts}; password 'sim')",
            options=config.http,
        )
    finally:
        grower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await grower


def uids_of(ready_line: str) -> list[str]:
    """The account uids a simulator names in its "listening on" line."""
    found = re.search(r"\(accounts ([\d, ]+);", ready_line)
    if found is None:
        raise ValueError(f"not a simulator's ready line: {ready_line!r}")
    return found.group(1).split(", ")


def worker_accounts(
    sim_address: str,
    account_ids: list[str],
    uids: list[str],
    *,
    page_timeout: float | None = None,
    by_qr: frozenset[str] = frozenset(),
    qr_refreshes: int | None = None,
    live_chat: bool = True,
) -> str:
    """[[accounts]] tables of a worker configuration crawling the simulator's accounts: by
    its password form (a shortcut), or, for the accounts in `by_qr`, logged in by an
    operator scanning the QR code the console shows."""
    extra = f"page_timeout = {page_timeout:g}\n" if page_timeout is not None else ""
    extra += f"qr_refreshes = {qr_refreshes}\n" if qr_refreshes is not None else ""
    extra += "" if live_chat else "live_chat = false\n"
    return "".join(
        f'\n[[accounts]]\naccount_id = "{account_id}"\nadapter = "douyin"\nbase_url = "http://{sim_address}"\n'
        + ("" if account_id in by_qr else f'login_uid = "{uid}"\nlogin_password = "sim"\n')
        + extra
        for account_id, uid in zip(account_ids, uids, strict=True)
    )


def run(config: SimConfig) -> None:
    try:
        asyncio.run(serve(config))
    except AddressInUse as error:
        print(f"imsync sim: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
