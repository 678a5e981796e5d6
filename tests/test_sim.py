"""The platform simulator: its JSON in-process, its pages in a real Chromium."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.sim.app import Simulator, build_app
from services.sim.live import _hex_address, _inode_of
from services.sim.platform_data import Platform

from .conftest import NOW, sim_subprocess

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    simulator = Simulator(Platform(accounts=2, seed=3, now=NOW))
    transport = httpx.ASGITransport(app=build_app(simulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        yield simulator, http


async def login(http: httpx.AsyncClient, uid: str) -> None:
    response = await http.post("/login", data={"uid": uid, "password": "sim"})
    assert response.status_code == 303


async def test_logged_out_pages_redirect_and_json_says_so(sim: tuple[Simulator, httpx.AsyncClient]) -> None:
    simulator, http = sim
    page = await http.get("/creator-micro/content/manage")
    assert page.status_code == 302 and page.headers["location"] == "/login"
    assert (await http.get("/aweme/v1/creator/item/list/")).json() == {"status_code": 8, "status_msg": "用户未登录"}
    assert (
        await http.post("/login", data={"uid": next(iter(simulator.platform.accounts)), "password": "x"})
    ).status_code == 403


async def test_json_shapes_and_paging(sim: tuple[Simulator, httpx.AsyncClient]) -> None:
    simulator, http = sim
    uid = next(iter(simulator.platform.accounts))
    await login(http, uid)
    works: list[dict[str, Any]] = []
    cursor = 0
    while True:
        page = (await http.get("/aweme/v1/creator/item/list/", params={"cursor": cursor, "count": 3})).json()
        works += page["item_info_list"]
        if not page["has_more"]:
            break
        cursor = page["cursor"]
    truth = (await http.get("/__sim/truth", params={"uid": uid})).json()
    assert sorted(w["item_id"] for w in works) == sorted(w["item_id"] for w in truth["works"])
    assert {"item_id", "aweme_id", "cover_image_url", "create_time", "comment_count", "media_type", "duration"} <= set(
        works[0]
    )
    assert isinstance(works[0]["create_time"], int) and works[0]["create_time"] < 10**10, "seconds"
    comments = (await http.get("/aweme/v1/web/comment/list/select/", params={"item_id": works[0]["item_id"]})).json()[
        "comments"
    ]
    comment = comments[0]
    assert comment["reply_id"] == "0" and comment["aweme_id"] == works[0]["item_id"]
    assert {"cid", "text", "create_time", "digg_count", "reply_comment_total", "ip_label"} <= set(comment)
    assert set(comment["user"]) == {"uid", "nickname", "avatar_thumb"} and comment["user"]["avatar_thumb"]["url_list"]
    conversations = (await http.get("/aweme/v1/im/conversation/list/")).json()["conversations"]
    assert re.fullmatch(r"0:1:\d+:\d+", conversations[0]["conversation_id"])
    history = (
        await http.get("/aweme/v1/im/message/history/", params={"conversation_id": conversations[0]["conversation_id"]})
    ).json()
    assert history["messages"][0]["create_time"] > 10**12, "private messages carry milliseconds"


async def test_replies_messages_and_refusals(sim: tuple[Simulator, httpx.AsyncClient]) -> None:
    simulator, http = sim
    uid = next(iter(simulator.platform.accounts))
    account = simulator.platform.accounts[uid]
    await login(http, uid)
    work = account.works[0]
    parent = next(c for c in account.comments.values() if c["aweme_id"] == work["item_id"] and c["reply_id"] == "0")
    sent = (
        await http.post(
            "/aweme/v1/web/comment/publish/",
            json={"aweme_id": work["item_id"], "reply_id": parent["cid"], "text": "谢谢🙏"},
        )
    ).json()
    assert sent["status_code"] == 0 and sent["comment"]["reply_id"] == parent["cid"]
    assert sent["comment"]["user"]["uid"] == uid, "the account's own reply"
    account.deleted.add(parent["cid"])
    refused = (
        await http.post(
            "/aweme/v1/web/comment/publish/", json={"aweme_id": work["item_id"], "reply_id": parent["cid"], "text": "x"}
        )
    ).json()
    assert refused["status_code"] == 2100
    other = next(c for c in account.comments.values() if c["reply_id"] == "0" and c["cid"] != parent["cid"])
    account.work(other["aweme_id"])["is_private"] = True  # type: ignore[index]
    private = (
        await http.post(
            "/aweme/v1/web/comment/publish/",
            json={"aweme_id": other["aweme_id"], "reply_id": other["cid"], "text": "x"},
        )
    ).json()
    assert private["status_code"] == 2149
    conversation_id = next(iter(account.conversations))
    message = (
        await http.post("/aweme/v1/im/message/send/", json={"conversation_id": conversation_id, "text": "在的"})
    ).json()
    assert message["status_code"] == 0 and message["message"]["is_self"] is True
    truth = (await http.get("/__sim/truth", params={"uid": uid})).json()
    assert any(m["server_id"] == message["message"]["server_id"] for m in truth["messages"])


async def test_fault_switches(sim: tuple[Simulator, httpx.AsyncClient]) -> None:
    simulator, http = sim
    await login(http, next(iter(simulator.platform.accounts)))
    await http.post("/__sim/faults", json={"malformed": True})
    with pytest.raises(json.JSONDecodeError):
        json.loads((await http.get("/aweme/v1/creator/item/list/")).content)
    await http.post("/__sim/faults", json={"malformed": False, "truncated": True})
    with pytest.raises(json.JSONDecodeError):
        json.loads((await http.get("/aweme/v1/creator/item/list/")).content)
    await http.post("/__sim/faults", json={"truncated": False, "expire_sessions": True})
    assert (await http.get("/aweme/v1/creator/item/list/")).json()["status_code"] == 8
    assert simulator.faults.slow_ms == 0 and not simulator.faults.hang


def test_the_platform_changes_over_time_and_stays_consistent() -> None:
    """Customers write, like and follow, delete comments (with the replies under them),
    start conversations; the account publishes works. Counts stay true to what is held."""
    platform = Platform(accounts=2, seed=9, now=NOW)

    def count(kind: str) -> int:
        return sum(len(getattr(a, kind)) for a in platform.accounts.values())

    before = {kind: count(kind) for kind in ("comments", "messages", "notices", "conversations", "works")}
    for step in range(400):
        platform.tick(NOW + step)
    for kind in ("messages", "notices", "conversations", "works"):
        assert count(kind) > before[kind], kind
    assert any(account.deleted for account in platform.accounts.values()), "some comments were deleted"
    for account in platform.accounts.values():
        for work in account.works:
            assert work["comment_count"] == sum(c["aweme_id"] == work["item_id"] for c in account.comments.values())
        for comment in account.comments.values():
            if comment["reply_id"] != "0":
                assert comment["reply_id"] in account.comments, "no reply outlives its comment"
            else:
                replies = sum(c["reply_id"] == comment["cid"] for c in account.comments.values())
                assert comment["reply_comment_total"] == replies
        assert not account.deleted & set(account.comments)
    again = Platform(accounts=2, seed=9, now=NOW)
    assert again.truth(next(iter(again.accounts))) == Platform(accounts=2, seed=9, now=NOW).truth(
        next(iter(again.accounts))
    )


def test_every_message_stored_is_pushed_to_whoever_listens() -> None:
    platform = Platform(accounts=1, seed=4, now=NOW)
    uid = next(iter(platform.accounts))
    heard: list[tuple[str, dict[str, Any]]] = []
    stop = platform.listen(lambda account, frame: heard.append((account, frame)))
    written = platform.customer_writes(uid, "message", "在吗", NOW)
    sent = platform.send(uid, written["conversation_id"], "在的", NOW)
    stop()
    platform.customer_writes(uid, "message", "不听了", NOW)
    assert [(a, f["message"]["server_id"]) for a, f in heard] == [(uid, written["server_id"]), (uid, sent["server_id"])]
    assert heard[0][1]["conversation"]["last_message"]["content"] == "在吗", "the conversation as it was then"


async def test_qr_login_with_an_sms_step(sim: tuple[Simulator, httpx.AsyncClient]) -> None:
    simulator, http = sim
    uid = next(iter(simulator.platform.accounts))
    await http.post("/__sim/login", json={"sms_uids": [uid], "sms_tries": 2})
    qr = (await http.get("/passport/web/get_qrcode/")).json()["data"]
    assert qr["qrcode"] and qr["expire_time"] > NOW and qr["token"] in qr["qrcode_index_url"]

    async def check() -> httpx.Response:
        return await http.get("/passport/web/check_qrconnect/", params={"token": qr["token"]})

    assert (await check()).json()["data"]["status"] == "1"
    assert (await http.post("/__sim/scan", json={"token": "nope", "uid": uid})).status_code == 400
    assert (await http.post("/__sim/scan", json={"token": qr["token"], "uid": uid})).json() == {"status": "verify"}
    asked = (await check()).json()["data"]
    assert asked["status"] == "verify" and asked["tries_left"] == 2 and "******" in asked["mobile"]
    code = (await http.get("/__sim/sms", params={"uid": uid})).json()["codes"][-1]
    wrong = (await http.post("/passport/web/sms_verify/", json={"token": qr["token"], "code": "x" + code})).json()
    assert wrong["data"]["error_code"] == 1202 and wrong["data"]["tries_left"] == 1
    assert (await http.get("/aweme/v1/creator/item/list/")).json()["status_code"] == 8, "not logged in yet"
    taken = await http.post("/passport/web/sms_verify/", json={"token": qr["token"], "code": code})
    assert taken.json()["message"] == "success" and taken.cookies.get("sessionid")
    assert (await http.get("/aweme/v1/creator/item/list/")).json()["status_code"] == 0
    # A second browser cannot log in with the same code.
    assert (await http.post("/passport/web/sms_verify/", json={"token": qr["token"], "code": code})).json()[
        "message"
    ] == "error"


async def test_a_qr_code_expires_and_too_many_wrong_codes_start_over(sim: tuple[Simulator, httpx.AsyncClient]) -> None:
    simulator, http = sim
    uid = next(iter(simulator.platform.accounts))
    now = [1000.0]
    simulator.logins.clock = lambda: now[0]
    await http.post("/__sim/login", json={"qr_ttl_s": 60, "sms_uids": [uid], "sms_tries": 2})
    token = (await http.get("/passport/web/get_qrcode/")).json()["data"]["token"]
    now[0] += 61
    assert (await http.get("/passport/web/check_qrconnect/", params={"token": token})).json()["data"]["status"] == "5"
    assert (await http.post("/__sim/scan", json={"token": token, "uid": uid})).status_code == 400, (
        "an expired code scans to nothing"
    )
    token = (await http.get("/passport/web/get_qrcode/")).json()["data"]["token"]
    await http.post("/__sim/scan", json={"token": token, "uid": uid})
    for _ in range(2):
        last = (await http.post("/passport/web/sms_verify/", json={"token": token, "code": "wrong"})).json()
    assert last["data"]["error_code"] == 1203 and last["data"]["tries_left"] == 0
    assert (await http.get("/passport/web/check_qrconnect/", params={"token": token})).json()["data"]["status"] == "5"


async def test_notices_page_like_the_other_lists(sim: tuple[Simulator, httpx.AsyncClient]) -> None:
    simulator, http = sim
    uid = next(iter(simulator.platform.accounts))
    await login(http, uid)
    first = (await http.get("/aweme/v1/web/notice/", params={"count": 4})).json()
    assert first["has_more"] and len(first["notice_list_v2"]) == 4
    rest = (await http.get("/aweme/v1/web/notice/", params={"cursor": first["cursor"], "count": 50})).json()
    notices = first["notice_list_v2"] + rest["notice_list_v2"]
    assert {n["nid"] for n in notices} == set(simulator.platform.accounts[uid].notices)
    assert all({"nid", "type", "create_time", "from_user", "content"} <= set(n) for n in notices)
    assert [n["create_time"] for n in notices] == sorted((n["create_time"] for n in notices), reverse=True)


@pytest.fixture(scope="module")
def sim_process() -> Iterator[tuple[str, str]]:
    with sim_subprocess() as running:
        yield running


@pytest.mark.e2e
async def test_the_pages_work_in_chromium(sim_process: tuple[str, str]) -> None:
    from playwright.async_api import async_playwright

    from services.worker.browser import launch_options

    base, uid = sim_process
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(**launch_options())
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 800})
            await page.goto(f"{base}/creator-micro/content/manage")
            assert page.url.endswith("/login"), "logged out: the login page replaces the creator pages"
            await page.click("details summary")  # the simulator's password shortcut
            await page.select_option("select[name=uid]", uid)
            await page.fill("input[name=password]", "sim")
            await page.click("form[action='/login'] button[type=submit]")
            await page.wait_for_selector("li.work")
            truth = httpx.get(f"{base}/__sim/truth", params={"uid": uid}).json()
            assert await page.locator("li.work").count() == len(truth["works"])
            await page.screenshot(path=str(ARTIFACTS / "sim-works.png"))

            await page.click("li.work a >> nth=0")
            await page.wait_for_selector("li.comment")
            first = page.locator("li.comment").first
            await first.locator("textarea").fill("感谢支持，已私信您🙏")
            await first.locator(".reply-box button").click()
            await first.locator(".status").filter(has_text="回复成功").wait_for()
            await page.screenshot(path=str(ARTIFACTS / "sim-comments.png"))
            truth = httpx.get(f"{base}/__sim/truth", params={"uid": uid}).json()
            assert any(c["text"] == "感谢支持，已私信您🙏" and c["user"]["uid"] == uid for c in truth["comments"])

            conversation_id = truth["conversations"][0]["conversation_id"]
            await page.goto(f"{base}/creator-micro/data/following/chat?conversation_id={conversation_id}")
            await page.wait_for_selector("#chat textarea")
            await page.fill("#chat textarea", "您好，这款有货的")
            await page.click("#chat button")
            await page.locator("#chat .status").filter(has_text="发送成功").wait_for()
            await page.screenshot(path=str(ARTIFACTS / "sim-chat.png"))
            truth = httpx.get(f"{base}/__sim/truth", params={"uid": uid}).json()
            assert any(m["content"] == "您好，这款有货的" and m["is_self"] for m in truth["messages"])
        finally:
            await browser.close()


def test_two_live_browsers_on_one_chat_page_are_an_overlap_a_gone_one_is_not() -> None:
    """The simulator's count of browsers on an account's chat page (how the fleet tests see
    two workers on one account): a browser whose process is gone holds nothing, even before
    the close of its socket is read; two live ones are recorded with their parents."""
    simulator = Simulator(Platform(accounts=1, seed=3, now=NOW))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    simulator.open_pages("u1", f"pid {gone.stdout.strip()}", +1)
    simulator.open_pages("u1", f"pid {os.getpid()}", +1)
    assert simulator.live_max["u1"] == 1 and simulator.overlaps == []
    simulator.open_pages("u1", f"pid {os.getppid()}", +1)
    assert simulator.live_max["u1"] == 2
    (overlap,) = simulator.overlaps
    assert overlap["ancestors"][f"pid {os.getpid()}"][0] == os.getppid()
    # The gone browser's socket closes at last: nothing goes below nothing.
    simulator.open_pages("u1", f"pid {gone.stdout.strip()}", -1)
    assert sorted(simulator.live_now["u1"]) == sorted([f"pid {os.getpid()}", f"pid {os.getppid()}"])


def test_a_connection_is_told_apart_from_another_on_the_same_local_port() -> None:
    """Linux gives one local port to connections to different servers at once (here made
    so by binding both to it): the simulator finds a page's socket by both of its ends,
    not by its local port."""
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    clients: list[socket.socket] = []
    try:
        port = 0
        for server in servers:
            client = socket.socket()
            clients.append(client)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            client.bind(("127.0.0.1", port))
            port = client.getsockname()[1]
            client.connect(server.getsockname())
        assert clients[0].getsockname() == clients[1].getsockname()
        for client, server in zip(clients, servers, strict=True):
            ends = (_hex_address(*client.getsockname()), _hex_address(*server.getsockname()))
            assert _inode_of(*ends) == str(os.fstat(client.fileno()).st_ino)
    finally:
        for sock in clients + servers:
            sock.close()
