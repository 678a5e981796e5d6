"""The whole flow on real processes: simulator, worker in Chromium, master, gateway."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import waiting
from .demo_processes import DemoProcesses

pytestmark = pytest.mark.e2e


def chromium_browsers(ancestor: int) -> list[int]:
    """The Chromium browser processes (not their renderers and helpers) under a process."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])

    def under(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == ancestor:
                return True
        return False

    return [
        pid
        for pid, command in commands.items()
        if under(pid) and "chrom" in command.split(" ")[0] and "--type=" not in command
    ]


async def eventually(check: Callable[[], Any]) -> Any:
    # A key missing from a body that is not there yet counts as "not yet" too.
    return await waiting.eventually(
        check, timeout=60.0, every=0.3, ignoring=(httpx.HTTPError, KeyError, IndexError, TypeError)
    )


async def all_items(http: httpx.AsyncClient, path: str, key: str, **params: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        data = (await http.get(path, params=params | {"cursor": cursor, "count": "100"})).json()["data"]
        out += data[key]
        if not data["has_more"]:
            return out
        cursor = data["cursor"]


async def test_the_worker_crawls_the_simulator_in_chromium_end_to_end(tmp_path: Path) -> None:
    demo = DemoProcesses(tmp_path)
    try:
        await demo.start()
        uids = demo.uids
        assert demo.worker is not None
        worker = demo.worker

        async with (
            httpx.AsyncClient(base_url=demo.base, timeout=30) as http,
            httpx.AsyncClient(base_url=demo.platform, timeout=10) as platform,
        ):
            await eventually(lambda: demo.synced(http))

            # 1. After a crawl, the gateway holds what the platform holds, account by account.
            for index, uid in enumerate(uids):
                account_id = f"shop-{index}"

                async def matches(uid: str = uid, account_id: str = account_id) -> bool:
                    truth = (await platform.get("/__sim/truth", params={"uid": uid})).json()
                    conversations = await all_items(
                        http, "/api/im/conversations", "conversations", account_id=account_id
                    )
                    messages = await all_items(http, "/api/im/messages", "messages", account_id=account_id)
                    works = await all_items(http, "/api/im/contents", "contents", account_id=account_id)
                    comments = await all_items(http, "/api/im/discussions", "discussions", account_id=account_id)
                    return (
                        {c["conversation_id"] for c in conversations}
                        == {c["conversation_id"] for c in truth["conversations"]}
                        and {m["message_id"] for m in messages} == {m["server_id"] for m in truth["messages"]}
                        and {w["content_id"] for w in works} == {w["aweme_id"] for w in truth["works"]}
                        and {c["comment_id"] for c in comments} == {c["cid"] for c in truth["comments"]}
                    )

                await eventually(matches)

            # 2. Something new on the platform reaches a live (SSE) client after the next crawl.
            params = {"types": "new_message,new_comment"}
            async with http.stream(
                "GET", "/api/im/events", params=params, headers={"Accept": "text/event-stream"}
            ) as stream:
                for _ in range(3):
                    await platform.post("/__sim/tick")
                lines = stream.aiter_lines()
                async with asyncio.timeout(60):
                    data = ""
                    while not data:
                        line = await anext(lines)
                        data = line[len("data: ") :] if line.startswith("data: ") else ""
                event = json.loads(data)["event"]
                assert event["type"] in ("new_message", "new_comment")

            # 3. A reply sent through REST is typed into the platform's page and comes back.
            comment = next(
                c
                for c in await all_items(http, "/api/im/discussions", "discussions", account_id="shop-0")
                if not c["parent_comment_id"]
            )
            body = {
                "request_id": "e2e-reply",
                "reply_to_comment": {"comment_id": comment["comment_id"], "text": "谢谢支持❤️"},
            }
            assert (await http.post("/api/im/replies", json=body)).status_code == 200

            async def sent() -> dict[str, Any] | None:
                reply: dict[str, Any] = (await http.get("/api/im/replies/e2e-reply")).json()["data"]["reply"]
                return reply if reply["state"] == "sent" else None

            reply = await eventually(sent)
            truth = (await platform.get("/__sim/truth", params={"uid": uids[0]})).json()
            assert any(c["cid"] == reply["created_id"] and c["text"] == "谢谢支持❤️" for c in truth["comments"])

            async def reply_synced() -> bool:
                replies = await all_items(
                    http, f"/api/im/discussions/{comment['comment_id']}/replies", "discussions", account_id="shop-0"
                )
                return any(
                    r["comment_id"] == reply["created_id"] and r["author"]["user_id"] == uids[0] for r in replies
                )

            await eventually(reply_synced)

            # 4. A misbehaving platform: reported in the account's status, data kept, then recovered.
            before = len(await all_items(http, "/api/im/messages", "messages", account_id="shop-1"))
            await platform.post("/__sim/faults", json={"truncated": True})

            async def reported() -> bool:
                users = (await http.get("/api/im/accounts")).json()["data"]["users"]
                return all("unreadable" in u["last_error"] for u in users)

            await eventually(reported)
            assert len(await all_items(http, "/api/im/messages", "messages", account_id="shop-1")) == before
            await platform.post("/__sim/faults", json={"truncated": False})

            async def recovered() -> bool:
                users = (await http.get("/api/im/accounts")).json()["data"]["users"]
                return all(u["last_error"] == "" and u["login_state"] == "logged_in" for u in users)

            await eventually(recovered)

            # A page that never finishes loading, then a session the platform expired.
            await platform.post("/__sim/faults", json={"hang": True})

            async def hung() -> bool:
                users = (await http.get("/api/im/accounts")).json()["data"]["users"]
                return all("Timeout" in u["last_error"] or "never finished" in u["last_error"] for u in users)

            await eventually(hung)
            await platform.post("/__sim/faults", json={"hang": False, "expire_sessions": True})
            await eventually(recovered)  # the worker logged in again by itself
            assert len(await all_items(http, "/api/im/messages", "messages", account_id="shop-1")) >= before

            # 5. One Chromium for both accounts; killed under the worker, it starts a new one and goes on.
            browsers = chromium_browsers(worker.process.pid)
            assert len(browsers) == 1, f"one browser for every account of the worker: {browsers}"
            for pid in browsers:
                os.kill(pid, signal.SIGKILL)
            crawled_before = (await http.get("/api/im/accounts/shop-1")).json()["data"]["user"]["last_crawl_at"]

            async def crawling_again() -> bool:
                user = (await http.get("/api/im/accounts/shop-1")).json()["data"]["user"]
                return bool(user["last_crawl_at"] != crawled_before and user["last_error"] == "")

            await eventually(crawling_again)
            assert worker.process.returncode is None, "the worker never crashes"
    finally:
        await demo.stop()
