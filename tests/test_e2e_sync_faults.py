"""Faults on real processes: workers and masters killed, two workers after one account."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from imsync.v1 import accounts_pb2 as acc
from imsync.v1 import unified_messages_pb2 as uni
from imsync_client import ImClient, SyncClient
from services import processes
from services.common.sample import SampleAccount

from . import waiting
from .conftest import NOW, token_for, write_tokens

pytestmark = pytest.mark.e2e


async def eventually(check: Callable[[], object], timeout: float = 20.0) -> None:
    await waiting.eventually(check, timeout=timeout, every=0.1, ignoring=(grpc.aio.AioRpcError,))


def worker_config(folder: Path, name: str, master: str, accounts: list[str], interval: float = 0.3) -> Path:
    tables = "".join(
        f'\n[[accounts]]\naccount_id = "{a}"\nadapter = "sample"\nseed = {i + 5}\n' for i, a in enumerate(accounts)
    )
    path = folder / f"{name}.toml"
    path.write_text(
        f'master = "{master}"\nworker_id = "{name}"\ntoken = "{token_for(name)}"\ncrawl_interval = {interval}\n{tables}'
    )
    return path


@pytest_asyncio.fixture
async def tokens(tmp_path: Path) -> Path:
    return write_tokens(tmp_path / "tokens.toml")


async def start_master(tokens: Path, listen: str = "127.0.0.1:0") -> processes.Child:
    return await processes.start(
        [
            "master",
            "--listen",
            listen,
            "--retention",
            "none",
            "--worker-tokens",
            str(tokens),
            "--heartbeat-seconds",
            "0.3",
            "--lease-seconds",
            "1.5",
        ]
    )


@pytest_asyncio.fixture
async def children() -> AsyncIterator[list[processes.Child]]:
    started: list[processes.Child] = []
    yield started
    for child in reversed(started):
        await child.stop()


async def test_a_worker_killed_mid_snapshot_leaves_the_master_unchanged(
    tokens: Path, children: list[processes.Child]
) -> None:
    master = await start_master(tokens)
    children.append(master)
    sample = SampleAccount("shop", seed=1, now=NOW)
    sample.fill(conversations=8, messages_per_conversation=4, contents=2, comments_per_content=3)
    async with grpc.aio.insecure_channel(master.address) as channel:
        client = SyncClient(channel, "test-worker", token=token_for("test-worker"))
        await client.open({"shop": 0})
        assert await client.push_snapshot("shop", 1, sample.account, sample.batch) == 1
        await client.close()
        im = ImClient(channel)
        before = await im.list_unified_messages(uni.ListUnifiedMessagesRequest(account_id="shop", count=100))

        # The same worker restarts, takes the account over, and dies halfway through version 2.
        dying = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.helpers.half_snapshot",
            master.address,
            token_for("test-worker"),
            "test-worker",
            "shop",
            "2",
            stdout=asyncio.subprocess.PIPE,
        )
        assert dying.stdout is not None
        async with asyncio.timeout(30):
            line = (await dying.stdout.readline()).decode()
        assert line.startswith("sent "), line
        dying.send_signal(signal.SIGKILL)
        await dying.wait()

        after = await im.list_unified_messages(uni.ListUnifiedMessagesRequest(account_id="shop", count=100))
        assert after == before
        account = (await im.get_account(acc.GetAccountRequest(account_id="shop"))).user
        assert account.version == 1


async def test_the_worker_resumes_by_itself_when_the_master_is_killed_and_restarted(
    tmp_path: Path, tokens: Path, children: list[processes.Child]
) -> None:
    master = await start_master(tokens)
    children.append(master)
    worker = await processes.start(
        ["worker", "--config", str(worker_config(tmp_path, "worker-a", master.address, ["a1", "a2"]))]
    )
    children.append(worker)
    async with grpc.aio.insecure_channel(master.address) as channel:
        im = ImClient(channel, timeout=2)

        async def both_synced() -> bool:
            accounts = (await im.list_accounts(acc.ListAccountsRequest())).users
            return len(accounts) == 2 and all(a.version > 0 and a.online for a in accounts)

        await eventually(both_synced)
        master.process.send_signal(signal.SIGKILL)
        await master.process.wait()
        # A new master on the same address, empty: the worker must fill it by itself.
        children.append(await start_master(tokens, listen=master.address))
        await eventually(both_synced, timeout=30)
        stats = await im.get_unified_stats(uni.GetUnifiedStatsRequest(account_id="a1"))
        assert stats.total_unread > 0
    assert worker.process.returncode is None, "the worker never crashes"


async def test_two_workers_claiming_one_account_one_wins_the_other_is_told_why(
    tmp_path: Path, tokens: Path, children: list[processes.Child]
) -> None:
    master = await start_master(tokens)
    children.append(master)
    first = await processes.start(
        ["worker", "--config", str(worker_config(tmp_path, "worker-a", master.address, ["shared"]))]
    )
    children.append(first)
    async with grpc.aio.insecure_channel(master.address) as channel:
        im = ImClient(channel, timeout=2)

        async def owned_by_a() -> bool:
            account = (await im.get_account(acc.GetAccountRequest(account_id="shared"))).user
            return account.worker_id == "worker-a" and account.version > 0

        await eventually(owned_by_a)
        second = await processes.start(
            ["worker", "--config", str(worker_config(tmp_path, "worker-b", master.address, ["shared"]))]
        )
        children.append(second)

        async def b_was_told() -> bool:
            return any("owned by worker 'worker-a'" in line for line in second.output)

        await eventually(b_was_told)
        assert await owned_by_a()
        # When the owner dies, its lease lapses and the other worker takes over.
        first.process.send_signal(signal.SIGKILL)
        await first.process.wait()

        async def owned_by_b() -> bool:
            account = (await im.get_account(acc.GetAccountRequest(account_id="shared"))).user
            return account.worker_id == "worker-b" and account.online

        await eventually(owned_by_b, timeout=30)


async def test_a_reply_sent_through_rest_is_performed_by_the_worker(
    tmp_path: Path, tokens: Path, children: list[processes.Child]
) -> None:
    import httpx

    master = await start_master(tokens)
    children.append(master)
    gateway = await processes.start(["gateway", "--listen", "127.0.0.1:0", "--master", master.address])
    children.append(gateway)
    worker = await processes.start(
        ["worker", "--config", str(worker_config(tmp_path, "worker-a", master.address, ["shop"]))]
    )
    children.append(worker)
    async with httpx.AsyncClient(base_url=f"http://{gateway.address}", timeout=5) as http:

        async def has_conversations() -> bool:
            body = (await http.get("/api/im/conversations", params={"account_id": "shop"})).json()
            return bool(body["data"] and body["data"]["conversations"])

        await eventually(has_conversations)
        conversation = (await http.get("/api/im/conversations", params={"account_id": "shop"})).json()["data"][
            "conversations"
        ][0]
        body = {
            "request_id": "e2e-1",
            "send_message": {"conversation_id": conversation["conversation_id"], "text": "您好，已为您处理✅"},
        }
        assert (await http.post("/api/im/replies", json=body)).status_code == 200

        async def sent() -> bool:
            reply = (await http.get("/api/im/replies/e2e-1")).json()["data"]["reply"]
            return bool(reply["state"] == "sent")

        await eventually(sent)
        created = (await http.get("/api/im/replies/e2e-1")).json()["data"]["reply"]["created_id"]

        async def message_synced() -> bool:
            response = await http.get(f"/api/im/messages/{created}")
            return response.status_code == 200 and response.json()["data"]["message"]["direction"] == "outbound"

        await eventually(message_synced)
        message = (await http.get(f"/api/im/messages/{created}")).json()["data"]["message"]
        assert message["content"] == "您好，已为您处理✅"
