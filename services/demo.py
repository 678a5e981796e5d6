"""`imsync demo`: a master and a gateway on this machine, fed with live sample accounts."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

import grpc

from imsync_client import SyncClient
from services.common.sample import sample_accounts

from . import processes


@dataclass(frozen=True)
class DemoConfig:
    master_listen: str = "127.0.0.1:50051"
    gateway_listen: str = "127.0.0.1:8080"
    interval: float = 5.0
    accounts: int = 3


async def _demo(config: DemoConfig) -> None:
    master = await processes.start(["master", "--listen", config.master_listen])
    gateway = None
    try:
        gateway = await processes.start(["gateway", "--listen", config.gateway_listen, "--master", master.address])
        now = int(time.time())
        accounts = sample_accounts(config.accounts, now=now)
        async with grpc.aio.insecure_channel(master.address) as channel:
            sync = SyncClient(channel, "demo-worker")
            versions = await sync.open({account.account_id: 0 for account in accounts})
            for account in accounts:
                versions[account.account_id] = await sync.push_snapshot(
                    account.account_id, versions[account.account_id] + 1, account.account, account.batch
                )
            base = f"http://{gateway.address}"
            first = accounts[0].account_id
            print(
                "\nimsync demo is running. Try:\n"
                f"  curl '{base}/api/im/accounts'\n"
                f"  curl '{base}/api/im/conversations?account_id={first}'\n"
                f"  curl '{base}/api/im/unified-messages?account_id={first}&types=direct_message'\n"
                f"  curl '{base}/api/im/unified-messages/stats?account_id={first}'\n"
                f"  curl '{base}/api/im/contents?account_id={first}'\n"
                f"  grpcurl -plaintext {master.address} list   (reflection is on)\n"
                f"A new message arrives every {config.interval:g} s. Ctrl-C stops everything.\n",
                flush=True,
            )
            rng = random.Random(7)
            while True:
                await asyncio.sleep(config.interval)
                account = rng.choice(accounts)
                account.grow(int(time.time()))
                version = await sync.push_snapshot(
                    account.account_id, versions[account.account_id] + 1, account.account, account.batch
                )
                versions[account.account_id] = version
                print(f"pushed {account.account_id} version {version}", flush=True)
    finally:
        for child in (gateway, master):
            if child is not None:
                await child.stop()


def run_demo(config: DemoConfig) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_demo(config))
    return 0
