"""End to end over real processes: `imsync master` and `imsync gateway` on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imsync.v1 import conversations_pb2 as conv
from imsync_client import ImClient, SyncClient, SyncRefused
from services import processes
from services.common.protojson import JsonStyle, to_json
from services.common.sample import SampleAccount, sample_accounts

from .conftest import NOW, token_for, write_tokens
from .waiting import eventually

pytestmark = pytest.mark.e2e


class Deployment:
    def __init__(self, master: str, gateway: str, channel: grpc.aio.Channel, http: httpx.AsyncClient) -> None:
        self.master = master
        self.channel = channel
        self.http = http
        self.im = ImClient(channel)
        self.sync = SyncClient(channel, "e2e-worker", token=token_for("e2e-worker"))


@pytest_asyncio.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    tokens = write_tokens(tmp_path / "tokens.toml")
    master = await processes.start(
        ["master", "--listen", "127.0.0.1:0", "--retention", "none", "--worker-tokens", str(tokens)]
    )
    gateway = await processes.start(["gateway", "--listen", "127.0.0.1:0", "--master", master.address])
    try:
        async with (
            grpc.aio.insecure_channel(master.address) as channel,
            httpx.AsyncClient(base_url=f"http://{gateway.address}", timeout=10) as http,
        ):
            yield Deployment(master.address, gateway.address, channel, http)
    finally:
        await gateway.stop()
        await master.stop()


async def walk(
    http: httpx.AsyncClient, account_id: str, count: int, between_pages: object = None
) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = ""
    while True:
        response = await http.get(
            "/api/im/conversations", params={"account_id": account_id, "cursor": cursor, "count": count}
        )
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        items += data["conversations"]
        if not data["has_more"]:
            return items
        cursor = data["cursor"]
        if between_pages is not None:
            await between_pages()  # type: ignore[operator]


async def test_snapshot_pushed_through_syncdata_comes_back_through_the_gateway(deployment: Deployment) -> None:
    account = SampleAccount("shop-1", seed=21, now=NOW)
    account.fill(conversations=37, messages_per_conversation=3, contents=2, comments_per_content=3)
    await deployment.sync.open({"shop-1": 0})
    assert await deployment.sync.push_snapshot("shop-1", 1, account.account, account.batch) == 1

    original = {c.conversation_id for c in account.batch.conversations}
    version = 1

    async def push_new_conversations() -> None:
        nonlocal version
        version += 1
        account.add_conversation(NOW + version * 60, 2)  # newer than everything: sorts first
        account.add_conversation(NOW - 40 * 86_400, 2)  # older than everything: sorts last
        assert await deployment.sync.push_snapshot("shop-1", version, account.account, account.batch) == version

    items = await walk(deployment.http, "shop-1", 6, push_new_conversations)
    ids = [str(item["conversation_id"]) for item in items]
    assert len(ids) == len(set(ids)), "no conversation twice"
    assert original <= set(ids), "no original conversation missed"
    # IM order: by last message time, newest first (none pinned here).
    times = [str(item["last_message"]["create_time"]) for item in items]  # type: ignore[index]
    assert times == sorted(times, reverse=True)


async def test_second_snapshot_replaces_the_first_and_read_state_survives(deployment: Deployment) -> None:
    account = SampleAccount("shop-2", seed=22, now=NOW)
    account.fill(conversations=8, messages_per_conversation=4, contents=0, comments_per_content=0)
    await deployment.sync.open({"shop-2": 0})
    await deployment.sync.push_snapshot("shop-2", 1, account.account, account.batch)

    kept = account.batch.conversations[1].conversation_id
    marked = await deployment.http.put(f"/api/im/conversations/{kept}/read", json={"account_id": "shop-2"})
    assert marked.status_code == 200 and marked.json()["data"]["marked_count"] > 0

    dropped = account.batch.conversations[0].conversation_id
    del account.batch.conversations[0]
    await deployment.sync.push_snapshot("shop-2", 2, account.account, account.batch)

    gone = await deployment.http.get(f"/api/im/conversations/{dropped}", params={"account_id": "shop-2"})
    assert gone.status_code == 404
    still = await deployment.http.get(f"/api/im/conversations/{kept}", params={"account_id": "shop-2"})
    assert still.json()["data"]["conversation"]["unread_count"] == 0


async def test_bad_input_over_real_processes(deployment: Deployment) -> None:
    account = SampleAccount("shop-3", seed=23, now=NOW)
    account.fill(conversations=5, messages_per_conversation=2, contents=0, comments_per_content=0)
    await deployment.sync.open({"shop-3": 0})
    bad = type(account.batch)()
    bad.CopyFrom(account.batch)
    bad.conversations[2].conversation_id = ""
    with pytest.raises(SyncRefused) as refused:
        await deployment.sync.push_snapshot("shop-3", 1, account.account, bad)
    assert "snapshot.entities.conversations[2].conversation_id" in refused.value.status.message
    # The stream is still open for the next message.
    assert await deployment.sync.push_snapshot("shop-3", 1, account.account, account.batch) == 1

    unknown = await deployment.http.get("/api/im/conversations", params={"account_id": "no-such-shop"})
    assert unknown.status_code == 404 and unknown.json()["status_code"] == 5
    missing = await deployment.http.get("/api/im/conversations")
    assert missing.status_code == 400 and "account_id" in missing.json()["status_msg"]
    cursor = await deployment.http.get("/api/im/conversations", params={"account_id": "shop-3", "cursor": "%%%"})
    assert cursor.status_code == 400 and "cursor" in cursor.json()["status_msg"]
    clamped = await deployment.http.get("/api/im/messages", params={"account_id": "shop-3", "count": 10_000})
    assert clamped.status_code == 200 and len(clamped.json()["data"]["messages"]) == 10


async def test_grpc_and_gateway_answer_identically_and_health_is_served(deployment: Deployment) -> None:
    account = sample_accounts(1, now=NOW, seed=30)[0]
    await deployment.sync.open({account.account_id: 0})
    await deployment.sync.push_snapshot(account.account_id, 1, account.account, account.batch)
    request = conv.ListConversationsRequest(account_id=account.account_id, count=4)
    over_grpc = await deployment.im.list_conversations(request)
    over_http = await deployment.http.get(
        "/api/im/conversations", params={"account_id": account.account_id, "count": 4}
    )
    assert over_http.json()["data"] == to_json(over_grpc, JsonStyle.IM)

    health = health_pb2_grpc.HealthStub(deployment.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="imsync.v1.SyncService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_the_demo_comes_up_and_its_urls_answer() -> None:
    demo = await asyncio.create_subprocess_exec(
        *processes.demo_command(),
        "--interval",
        "1",
        "--sim-rate",
        "120",
        stdout=asyncio.subprocess.PIPE,
        # Ctrl-C as in a terminal, however the tests were started (a shell without job
        # control starts background commands with SIGINT ignored, and so their children).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert demo.stdout is not None
    drains: list[asyncio.Task[bytes]] = []
    try:
        urls: list[str] = []
        async with asyncio.timeout(120):
            while not any("Ctrl-C stops everything" in line for line in urls):
                line = (await demo.stdout.readline()).decode()
                assert line, "the demo exited early"
                urls.append(line)
        # Keep reading the demo's progress lines, so that it never blocks on a full pipe.
        later: list[str] = []
        drains.append(asyncio.create_task(_collect_lines(demo.stdout, later)))
        printed = re.findall(r"curl (?:-N )?'([^']+)'", "".join(urls))
        assert len(printed) >= 5
        async with httpx.AsyncClient(timeout=60) as http:
            for url in printed:
                if "/events" in url:
                    # Live: the worker's next crawl brings new items, and their events.
                    async with http.stream("GET", url) as stream:
                        assert stream.status_code == 200
                        line = await anext(aiter(stream.aiter_lines()))
                        assert json.loads(line)["result"]["event"]["type"] in ("new_message", "new_comment")
                    continue
                response = await http.get(url)
                assert response.status_code == 200, (url, response.text)
                assert response.json()["status_code"] == 0
            # A process of the demo killed midway is started again: the master from its data.
            conversations = next(url for url in printed if "/conversations?" in url)
            before = {c["conversation_id"] for c in (await http.get(conversations)).json()["data"]["conversations"]}
            assert before
            os.kill(_child_of(demo.pid, "master"), signal.SIGKILL)
            async with asyncio.timeout(60):
                while not any("The master is running again" in line for line in later):
                    await asyncio.sleep(0.1)
                # The gateway's channel connects again within its backoff (at most 2 s).
                while (after := (await http.get(conversations)).json())["status_code"] != 0:
                    assert after["status_code"] == 14, after  # UNAVAILABLE until then
                    await asyncio.sleep(0.2)
            assert before <= {c["conversation_id"] for c in after["data"]["conversations"]}
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C stops the demo and its children
        try:
            async with asyncio.timeout(30):
                code = await demo.wait()
        except TimeoutError:
            demo.terminate()  # as SIGTERM does, so that none of its processes outlives the test
            await demo.wait()
            raise
        finally:
            for drain in drains:
                drain.cancel()
    assert code == 0


async def _collect_lines(stream: asyncio.StreamReader, lines: list[str]) -> bytes:
    while line := await stream.readline():
        lines.append(line.decode(errors="replace"))
    return b""


def _child_of(parent: int, command: str) -> int:
    """The pid of `parent`'s child running `imsync COMMAND`."""
    pid = processes.child_of(parent, command)
    assert pid is not None, f"no child of {parent} runs imsync {command}"
    return pid


_PARENT = """
import asyncio, sys
from services import processes

async def main():
    child = await processes.start(["sim", "--listen", "127.0.0.1:0", "--accounts", "1"])
    print(child.process.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


# A test run's fixtures start their redis-servers so (local_redis.py).
_REDIS_PARENT = """
import sys, tempfile, time
from pathlib import Path
from services.common.local_redis import RedisServer

server = RedisServer(Path(tempfile.mkdtemp()) / "redis").start()
print(server.process.pid, flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("starter", [_PARENT, _REDIS_PARENT], ids=["processes.start", "local_redis"])
async def test_a_process_started_by_one_killed_outright_stops_with_it(starter: str) -> None:
    """What processes.start starts (the demo's master, gateway, simulator and worker; the
    tests' masters and workers), and the redis-servers the tests and benchmarks start, are
    sent SIGTERM when the process that started them dies, however it died: SIGKILLed (a
    test run stopped so never tears its fixtures down), it used to leave them running,
    orphaned, on their ports."""
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", starter, stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parent.parent
    )
    assert parent.stdout is not None
    child = int(await asyncio.wait_for(parent.stdout.readline(), 60))
    assert _alive(child)
    parent.kill()
    await parent.wait()
    await eventually(lambda: not _alive(child), timeout=15)


async def test_the_demo_stops_its_processes_when_its_terminal_closes() -> None:
    """SIGHUP (the terminal `scripts/demo` runs in closed) stops the demo as Ctrl-C does:
    it used to end the demo alone, leaving its master, gateway, simulator, worker and
    Chromium running on the demo's ports."""
    demo = await asyncio.create_subprocess_exec(*processes.demo_command(), stdout=asyncio.subprocess.PIPE)
    assert demo.stdout is not None
    try:
        async with asyncio.timeout(120):
            while "Ctrl-C stops everything" not in (line := (await demo.stdout.readline()).decode()):
                assert line, "the demo exited early"
        children = [_child_of(demo.pid, command) for command in ("master", "gateway", "sim", "worker")]
        demo.send_signal(signal.SIGHUP)
        async with asyncio.timeout(60):
            while await demo.stdout.readline():
                pass  # what it says as it stops
            assert await demo.wait() == 0
        await eventually(lambda: not any(_alive(pid) for pid in children), timeout=15)
    finally:
        if demo.returncode is None:
            demo.terminate()
            await demo.wait()


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent to read it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
