"""The web console in Chromium, against the demo's processes: simulator, worker in
Chromium, master and gateway.

It checks what a person would: the console lists what the API lists; a customer's new
message appears live with its badge; opening it marks it read everywhere; a reply typed
in the console reaches the platform and turns from pending to sent; the console says when
the gateway is gone, keeps what it shows, and catches up when it is back; the keyboard
works. Screenshots of the main views at two window sizes go to test-artifacts/console/.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp

from imsync.v1 import entities_pb2 as e
from imsync.v1 import sync_pb2
from imsync_client import SyncClient
from services import processes

from . import waiting
from .conftest import NOW, token_for, write_tokens
from .demo_processes import DemoProcesses

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts" / "console"
WIDE = {"width": 1366, "height": 800}
NARROW = {"width": 420, "height": 860}


async def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    return await waiting.eventually(check, timeout=timeout, every=0.3, ignoring=(httpx.HTTPError, KeyError, IndexError))


@pytest_asyncio.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoProcesses]:
    running = DemoProcesses(tmp_path, master_args=["--data-dir", str(tmp_path / "data")])
    try:
        await running.start()
        yield running
    finally:
        await running.stop()


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    from services.worker.browser import launch_options

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(**launch_options())
        try:
            yield launched
        finally:
            await launched.close()


async def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


CONSOLE = Path(__file__).parent.parent / "clients" / "web"


async def module_page(browser: Any, api: Callable[[Any], Awaitable[None]] | None = None) -> Any:
    """A blank page at http://console.test/ whose other paths are the console's files (its
    modules imported as they are), and /api/ routes answered by `api` when given."""

    async def serve(route: Any) -> None:
        name = route.request.url.removeprefix("http://console.test/") or "blank.html"
        if api is not None and name.startswith("api/"):
            await api(route)
        elif name == "blank.html":
            await route.fulfill(body="<!doctype html><title>t</title>", content_type="text/html")
        else:
            kind = "application/json" if name.endswith(".json") else "text/javascript"
            await route.fulfill(path=str(CONSOLE / name), content_type=kind)

    page = await browser.new_page()
    await page.route("http://console.test/**", serve)
    await page.goto("http://console.test/blank.html")
    return page


async def test_the_console_end_to_end(demo: DemoProcesses, browser: Any) -> None:
    async with (
        httpx.AsyncClient(base_url=demo.base, timeout=30) as http,
        httpx.AsyncClient(base_url=demo.platform, timeout=10) as platform,
    ):
        await _walk_through(demo, browser, http, platform)


# Records the notifications the page makes (the real ones are made too) and lets the test
# say whether the tab is hidden, which a headless page never is.
_NOTIFICATIONS = """
window.__shown = [];
const Real = window.Notification;
window.Notification = class extends Real {
  constructor(title, options) {
    super(title, options);
    window.__shown.push({ title, body: (options || {}).body || "" });
  }
};
let hidden = false;
Object.defineProperty(document, "visibilityState", { get: () => (hidden ? "hidden" : "visible") });
window.__hide = (value) => { hidden = value; document.dispatchEvent(new Event("visibilitychange")); };
"""


async def test_new_messages_notify_only_when_asked_and_only_while_the_tab_is_hidden(
    demo: DemoProcesses, browser: Any
) -> None:
    async with (
        httpx.AsyncClient(base_url=demo.base, timeout=30) as http,
        httpx.AsyncClient(base_url=demo.platform, timeout=10) as platform,
    ):
        await eventually(lambda: demo.synced(http))
        context = await browser.new_context(viewport=WIDE)
        await context.grant_permissions(["notifications"], origin=demo.base)
        await context.add_init_script(_NOTIFICATIONS)
        page = await context.new_page()
        await page.goto(demo.base + "/")
        await page.locator("#connection[data-state=live]").wait_for(timeout=30_000)
        account = (await http.get("/api/im/accounts")).json()["data"]["users"][0]
        uid = demo.uid_of(account["account_id"])

        async def customer_writes(text: str) -> None:
            await platform.post("/__sim/customer", json={"uid": uid, "kind": "message", "text": text})
            await page.locator("#list [role=option]", has_text=text).wait_for(timeout=60_000)

        # Not asked: nothing, hidden or not.
        await page.evaluate("window.__hide(true)")
        await customer_writes(f"不打扰 {secrets.token_hex(3)}")
        await page.evaluate("window.__hide(false)")
        # Asked, the tab in sight: nothing either.
        await page.locator("#notify").click()
        await page.locator("#notify[aria-pressed=true]").wait_for()
        await customer_writes(f"看得见 {secrets.token_hex(3)}")
        assert await page.evaluate("window.__shown") == []
        # Asked, the tab hidden: one notification naming the customer's words.
        await page.evaluate("window.__hide(true)")
        text = f"在吗 {secrets.token_hex(3)}"
        await customer_writes(text)
        shown = await page.evaluate("window.__shown")
        assert len(shown) == 1 and shown[0]["body"] == text, shown
        assert account["user_name"] in shown[0]["title"]
        # Remembered in this browser; pressed again, it stops.
        await page.reload()
        await page.locator("#notify[aria-pressed=true]").wait_for()
        await page.locator("#notify").click()
        await page.locator("#notify[aria-pressed=false]").wait_for()
        await context.close()


async def test_a_reply_shows_live_in_its_place_on_every_console(demo: DemoProcesses, browser: Any) -> None:
    """Two agents have the same conversation open. One replies: the other sees the reply
    appear without a reload, and both see it as the platform has it (not a pending bubble
    kept at the bottom), so the customer's answer to it comes after it on both."""
    async with (
        httpx.AsyncClient(base_url=demo.base, timeout=30) as http,
        httpx.AsyncClient(base_url=demo.platform, timeout=10) as platform,
    ):
        await eventually(lambda: demo.synced(http))
        account = (await http.get("/api/im/accounts")).json()["data"]["users"][0]
        uid = demo.uid_of(account["account_id"])
        question = f"能便宜点吗 {secrets.token_hex(3)}"
        await platform.post("/__sim/customer", json={"uid": uid, "kind": "message", "text": question})
        pages = []
        for _ in range(2):
            page = await (await browser.new_context(viewport=WIDE)).new_page()
            await page.goto(demo.base + "/")
            await page.locator("#connection[data-state=live]").wait_for(timeout=30_000)
            await page.locator("#list [role=option]", has_text=question).click(timeout=60_000)
            await page.locator(".thread .bubble", has_text=question).wait_for()
            pages.append(page)
        writer, watcher = pages

        answer = f"已经是最低价了 {secrets.token_hex(3)}"
        await writer.locator(".reply-box textarea").fill(answer)
        await writer.keyboard.press("Enter")
        for page in pages:
            # The platform's copy, in its place; no pending bubble left for it.
            await page.locator(".thread .bubble.outbound:not(.mine)", has_text=answer).wait_for(timeout=60_000)
            assert await page.locator(".thread .bubble.mine", has_text=answer).count() == 0
        then = f"好吧，那我下单 {secrets.token_hex(3)}"
        await platform.post("/__sim/customer", json={"uid": uid, "kind": "message", "text": then})
        for page in pages:
            await page.locator(".thread .bubble", has_text=then).wait_for(timeout=60_000)
            texts = await page.locator(".thread .bubble .text").all_inner_texts()
            assert texts.index(question) < texts.index(answer) < texts.index(then), texts
        await shoot(watcher, "wide-conversation-teammate-reply")


async def _walk_through(
    demo: DemoProcesses, browser: Any, http: httpx.AsyncClient, platform: httpx.AsyncClient
) -> None:
    await eventually(lambda: demo.synced(http))
    stranger_hosts: list[str] = []
    errors: list[str] = []
    page = await browser.new_page(viewport=WIDE)
    page.on(
        "request", lambda request: None if request.url.startswith(demo.base) else stranger_hosts.append(request.url)
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    sent_replies: list[str] = []
    page.on("request", lambda r: sent_replies.append(r.post_data or "") if r.url.endswith("/api/im/replies") else None)
    await page.goto(demo.base + "/")

    async def waiting_for(locator: Any, what: str) -> None:
        """Waits for `locator`; when it does not come, says what the replies and the worker did."""
        try:
            await locator.wait_for(timeout=60_000)
        except Exception as error:
            states = []
            for body in sent_replies:
                request_id = json.loads(body)["request_id"] if body else ""
                states.append((await http.get(f"/api/im/replies/{request_id}")).json() if request_id else "no body")
            worker = "\n".join(list(demo.worker.output)[-30:]) if demo.worker else ""
            raise AssertionError(f"{what}: {error}\nreplies sent: {states}\nworker said:\n{worker}") from error

    async def badge_of(account_name: str) -> int:
        button = page.locator(".account", has=page.locator(".name", has_text=account_name))
        badges = button.locator(".badge")
        return int(await badges.inner_text()) if await badges.count() else 0

    async def stats(account_id: str) -> int:
        return int(
            (await http.get("/api/im/unified-messages/stats", params={"account_id": account_id})).json()["data"][
                "total_unread"
            ]
        )

    # 1. The console lists what the API lists: accounts with their unread counts, and the inbox.
    users = (await http.get("/api/im/accounts")).json()["data"]["users"]
    await page.wait_for_selector("#connection[data-state=live]")
    for user in users:
        await page.locator(".account .name", has_text=user["user_name"]).wait_for()
        assert await badge_of(user["user_name"]) == await stats(user["account_id"])
    first = users[0]
    await page.locator(".account", has=page.locator(".name", has_text=first["user_name"])).click()
    listed = (
        await http.get("/api/im/unified-messages", params={"account_id": first["account_id"], "count": "30"})
    ).json()["data"]["messages"]

    async def shown_keys() -> list[str]:
        return [
            key
            for key in await page.locator("#list [role=option]").evaluate_all("rows => rows.map(r => r.dataset.key)")
        ]

    # The console opens on the inbox by thread: conversations and comment threads as the
    # API lists them.
    await page.locator("[role=tab][data-view=threads][aria-selected=true]").wait_for()
    by_thread = (
        await http.get("/api/im/unified-threads", params={"account_id": first["account_id"], "count": "30"})
    ).json()["data"]["threads"]
    assert {t["kind"] for t in by_thread} == {"conversation", "comment"}
    expected = [f"thread:{first['account_id']}:{t['kind']}:{t['thread_id']}" for t in by_thread]
    await eventually(lambda: _same_start(shown_keys, expected))
    await shoot(page, "wide-threads")
    # The inbox item by item.
    await page.locator("[role=tab][data-view=inbox]").click()
    await eventually(lambda: _same_start(shown_keys, [f"item:{first['account_id']}:{m['id']}" for m in listed]))
    await shoot(page, "wide-inbox")

    # 2. A customer writes: the message appears without a reload, with its badge.
    before = await badge_of(first["user_name"])
    text = f"还有货吗 {secrets.token_hex(3)}"
    uid = demo.uid_of(first["account_id"])
    await platform.post("/__sim/customer", json={"uid": uid, "kind": "message", "text": text})
    row = page.locator("#list [role=option]", has_text=text)
    await row.wait_for(timeout=60_000)
    assert await row.locator(".dot").count() == 1, "shown unread"
    await eventually(lambda: _at_least(badge_of(first["user_name"]), before + 1))

    # 3. Opening it marks the conversation read: the badge drops everywhere at once.
    await row.click()
    await page.locator(".thread .bubble", has_text=text).wait_for()
    # The console marks it read with a request of its own: wait for the count to drop, then
    # for the badge to follow (the badge equals the count already before the request lands).
    await eventually(lambda: _at_most(stats(first["account_id"]), before))
    await eventually(lambda: _badge_matches(badge_of(first["user_name"]), stats(first["account_id"])))
    await shoot(page, "wide-conversation")

    # 4. A reply typed in the console shows as pending, then sent, and reaches the platform.
    answer = f"有的，马上发货 {secrets.token_hex(3)}"
    await page.locator(".reply-box textarea").fill(answer)
    await page.keyboard.press("Enter")
    mine = page.locator(".bubble.mine", has_text=answer)
    await mine.wait_for()
    assert "Sending" in await mine.inner_text() or "Sent" in await mine.inner_text()
    await (
        page.locator(".bubble.mine.sent", has_text=answer)
        .or_(page.locator(".thread .bubble.outbound", has_text=answer))
        .first.wait_for(timeout=60_000)
    )

    async def on_platform() -> bool:
        truth = (await platform.get("/__sim/truth", params={"uid": uid})).json()
        return any(m["content"] == answer for m in truth["messages"])

    await eventually(on_platform)

    # 4b. Pin and mute from the conversation's header: the switches say so and the master
    #     keeps it (the API agrees); pressed again, they undo it.
    message_id = await page.locator(".thread .bubble", has_text=text).first.get_attribute("data-message-id")
    found = (await http.get(f"/api/im/messages/{message_id}", params={"account_id": first["account_id"]})).json()
    conversation_id = found["data"]["message"]["conversation_id"]

    async def flags() -> tuple[bool, bool]:
        got = await http.get(f"/api/im/conversations/{conversation_id}", params={"account_id": first["account_id"]})
        conversation = got.json()["data"]["conversation"]
        return bool(conversation.get("is_pinned")), bool(conversation.get("is_muted"))

    assert await flags() == (False, False)
    await page.locator(".detail-header .toggle.pin").click()
    await page.locator(".detail-header .toggle.pin[aria-pressed=true]").wait_for()
    await page.locator(".detail-header .toggle.mute").click()
    await page.locator(".detail-header .toggle.mute[aria-pressed=true]").wait_for()
    assert await flags() == (True, True)
    await shoot(page, "wide-conversation-pinned")
    await page.locator(".detail-header .toggle.pin").click()
    await page.locator(".detail-header .toggle.pin[aria-pressed=false]").wait_for()
    await page.locator(".detail-header .toggle.mute").click()
    await page.locator(".detail-header .toggle.mute[aria-pressed=false]").wait_for()
    assert await flags() == (False, False)

    # 5. Works: a work's comments with their replies. A reply under a comment of a work made
    #    private fails with the platform's reason; once the work is public, Retry sends it.
    await page.locator("[role=tab][data-view=works]").click()
    work_row = page.locator("#list .work").first
    content_id = (await work_row.get_attribute("data-key")).rpartition(":")[2]
    await platform.post("/__sim/private", json={"uid": uid, "item_id": content_id, "is_private": True})
    await work_row.click()
    await page.locator(".comments").wait_for()
    thread = await page.locator(".comment-thread").first.get_attribute("data-thread")
    comment = page.locator(f'.comment-thread[data-thread="{thread}"]')
    await comment.locator(".actions button").click()
    under = f"谢谢支持 {secrets.token_hex(3)}"
    await comment.locator("textarea").fill(under)
    # A customer's comment arriving meanwhile redraws the comments: the draft stays.
    arriving = f"新评论 {secrets.token_hex(3)}"
    await platform.post("/__sim/customer", json={"uid": uid, "kind": "comment", "text": arriving})
    await page.locator(".comments .comment", has_text=arriving).wait_for(timeout=60_000)
    assert await comment.locator("textarea").input_value() == under
    await comment.locator("textarea").focus()
    await page.keyboard.press("Enter")
    mine_under = page.locator(".my-reply", has_text=under)
    await waiting_for(mine_under.locator(".reply-state.failed"), "the reply under a private work fails")
    assert "refused" in await mine_under.inner_text()
    await shoot(page, "wide-work-failed-reply")
    await platform.post("/__sim/private", json={"uid": uid, "item_id": content_id, "is_private": False})
    await mine_under.get_by_role("button", name="Retry").click()
    await waiting_for(
        page.locator(".my-reply", has_text=under).locator(".reply-state.sent"), "the retried reply is sent"
    )
    await shoot(page, "wide-work")

    # 6. Filters, and the keyboard: back to the inbox, move down, open.
    await page.locator("[role=tab][data-view=inbox]").click()
    await page.get_by_role("button", name="Comments").click()
    await page.locator("#list [role=option] .kind").first.wait_for()
    kinds = await page.locator("#list [role=option] .kind").all_inner_texts()
    assert kinds and set(kinds) == {"Comment"}, kinds
    await page.get_by_role("button", name="Comments").click()
    await page.locator("#list [role=option] .kind", has_text="Message").first.wait_for()
    await page.locator("#list [role=option]").first.focus()
    await page.keyboard.press("j")
    await page.keyboard.press("Enter")
    await page.locator("#detail-title").wait_for()
    await page.keyboard.press("Escape")
    assert await page.locator("#detail-title").count() == 0

    # 7. The gateway goes away: the console says so and keeps what it shows; back, it catches up.
    shown = len(await shown_keys())
    await demo.stop_gateway()
    await page.wait_for_selector("#connection[data-state=offline]", timeout=30_000)
    assert len(await shown_keys()) == shown, "what was shown stays"
    await shoot(page, "wide-offline")
    missed = f"在吗 {secrets.token_hex(3)}"
    await platform.post("/__sim/customer", json={"uid": uid, "kind": "message", "text": missed})
    await demo.start_gateway()
    await page.wait_for_selector("#connection[data-state=live]", timeout=60_000)
    await page.locator("#list [role=option]", has_text=missed).wait_for(timeout=60_000)

    # 8. The master restarts: it no longer holds the events after the console's last one,
    #    so the console reloads, and new messages keep coming.
    await demo.restart_master()
    after_restart = f"重启后 {secrets.token_hex(3)}"
    await platform.post("/__sim/customer", json={"uid": uid, "kind": "message", "text": after_restart})
    await page.locator("#list [role=option]", has_text=after_restart).wait_for(timeout=90_000)
    await page.wait_for_selector("#connection[data-state=live]", timeout=30_000)

    # 9. A narrow window: the list, then a conversation on its own with a way back.
    await page.set_viewport_size(NARROW)
    await shoot(page, "narrow-inbox")
    await page.locator("#list [role=option]", has_text=missed).click()
    await page.locator(".detail-header .back").wait_for()
    assert not await page.locator(".listing").is_visible()
    # Its reply box asks no more than fits: the keys' hints are for a keyboard, and wider.
    assert await page.locator("#detail textarea").get_attribute("placeholder") == "Write a reply…"
    await shoot(page, "narrow-conversation")
    await page.locator(".detail-header .back").click()
    assert await page.locator(".listing").is_visible()

    # 10. A long conversation: older messages load as the reader scrolls up.
    await page.set_viewport_size(WIDE)
    for index in range(35):
        await platform.post("/__sim/customer", json={"uid": uid, "kind": "message", "text": f"第{index}条"})
    await page.locator("#list [role=option]", has_text="第34条").click(timeout=60_000)
    await page.locator(".thread .bubble", has_text="第34条").wait_for()
    assert "Shift+Enter" in (await page.locator("#detail textarea").get_attribute("placeholder") or "")
    bubbles = page.locator(".thread .bubble:not(.mine)")
    loaded = await bubbles.count()
    assert loaded == 30, loaded
    await page.locator(".thread").evaluate("thread => thread.scrollTop = 0")
    await eventually(lambda: _at_least(bubbles.count(), loaded + 1))

    assert not stranger_hosts, f"requests to other hosts: {stranger_hosts}"
    assert not errors, errors


async def _same_start(shown: Callable[[], Any], listed: list[str]) -> bool:
    keys = await shown()
    return len(keys) >= min(len(listed), 5) and keys[: len(listed)] == listed[: len(keys)]


async def _at_least(value: Any, wanted: int) -> bool:
    return int(await value) >= wanted


async def _at_most(value: Any, wanted: int) -> bool:
    return int(await value) <= wanted


async def _badge_matches(badge: Any, stats: Any) -> bool:
    return int(await badge) == int(await stats)


async def test_a_reply_is_shown_once_as_soon_as_the_platform_s_copy_is_there(browser: Any) -> None:
    """The platform's copy of a reply can come before the worker's word that it was sent
    (a live push, then the command's result): the pending bubble goes as the copy comes,
    not after. A copy is the text on an item no older than the reply; an older message of
    the same words is not it. The console's own module, in Chromium."""
    page = await module_page(browser)
    seen = await page.evaluate(
        """async () => {
          const { copiedIn } = await import("/replies.js");
          const at = new Date().toISOString();
          const reply = (state, createdId = "") => ({ state, createdId, text: "最低价了", at });
          const copy = { message_id: "m-9", content: "最低价了", create_time: at };
          const older = { message_id: "m-1", content: "最低价了", create_time: "2026-01-01T00:00:00Z" };
          const id = (m) => m.message_id, when = (m) => m.create_time;
          return {
            pendingWithItsCopy: copiedIn(reply("pending"), [older, copy], id, when),
            pendingWithAnOlderOne: copiedIn(reply("pending"), [older], id, when),
            sentById: copiedIn(reply("sent", "m-1"), [older], id, when),
            failedWithItsCopy: copiedIn(reply("failed"), [copy], id, when),
          };
        }"""
    )
    assert seen == {
        "pendingWithItsCopy": True,
        "pendingWithAnOlderOne": False,
        "sentById": True,
        "failedWithItsCopy": False,
    }
    await page.close()


async def test_all_accounts_waits_for_an_account_whose_pages_came_back_empty(tmp_path: Path, browser: Any) -> None:
    """With "Unread only" across accounts, where one account's first page is empty (the
    master looks at 5,000 items a page, and its newest 5,100 are read) but its unread items
    are newer than another account's: the console holds the other account's items back
    until that account has shown its own, so no row is ever put above rows already shown."""
    from services.master.model.store import SCAN

    read_count = SCAN + 100

    def account(account_id: str, newest: int, count: int) -> tuple[e.Account, sync_pb2.EntityBatch]:
        customer = e.User(user_id=f"{account_id}-customer", user_name=f"{account_id} customer")
        batch = sync_pb2.EntityBatch(
            conversations=[e.Conversation(conversation_id=f"{account_id}-c", participant=customer)]
        )
        for index in range(count):
            batch.messages.add(
                message_id=f"{account_id}-{index:05}",
                conversation_id=f"{account_id}-c",
                sender=customer,
                content=f"{account_id} {index}",
                direction=e.DIRECTION_INBOUND,
                create_time=Timestamp(seconds=newest - index),
            )
        return e.Account(account_id=account_id, user_name=account_id), batch

    master = await processes.start(
        [
            "master",
            "--listen",
            "127.0.0.1:0",
            "--worker-tokens",
            str(write_tokens(tmp_path / "tokens.toml")),
            "--retention",
            "none",
            "--rate-limit",
            "0",
            "--gateway-listen",
            "127.0.0.1:0",
            "--gateway-console",
            str(CONSOLE),
        ]
    )
    grpc_address = (await master.line_with("master listening on")).rpartition(" ")[2]
    try:
        async with (
            grpc.aio.insecure_channel(grpc_address) as channel,
            httpx.AsyncClient(base_url=f"http://{master.address}", timeout=30) as http,
        ):
            worker = SyncClient(channel, "test-worker", token=token_for("test-worker"))
            await worker.open({"a-shop": 0, "b-shop": 0})
            # a-shop: read_count + 40 messages, the newest read_count read; b-shop: 30,
            # every one older than a-shop's.
            for account_id, newest, count in (("a-shop", NOW, read_count + 40), ("b-shop", NOW - 20_000, 30)):
                profile, batch = account(account_id, newest, count)
                assert await worker.push_snapshot(account_id, 1, profile, batch) == 1
            ids: list[str] = []
            cursor = ""
            while len(ids) < read_count:
                asked: dict[str, str | int] = {"account_id": "a-shop", "count": 100, "cursor": cursor}
                page = (await http.get("/api/im/unified-messages", params=asked)).json()["data"]
                ids += [item["id"] for item in page["messages"]]
                cursor = page["cursor"]
            for at in range(0, read_count, 1000):
                body = {"account_id": "a-shop", "ids": ids[at : min(at + 1000, read_count)]}
                assert (await http.put("/api/im/unified-messages/read-many", json=body)).status_code == 200
            unread: dict[str, str | int] = {"account_id": "a-shop", "is_read": "false", "count": 30}
            first = (await http.get("/api/im/unified-messages", params=unread)).json()["data"]
            assert first["messages"] == [] and first["has_more"], "a-shop's first unread page is to be empty"
            second = (await http.get("/api/im/unified-messages", params={**unread, "cursor": first["cursor"]})).json()
            newest_unread = f"item:a-shop:{second['data']['messages'][0]['id']}"

            page = await browser.new_page(viewport=WIDE)
            # Every first row the inbox list ever shows, in order.
            await page.add_init_script(
                """window.firstRows = [];
                new MutationObserver(() => {
                  const list = document.getElementById("list");
                  const row = list && list.querySelector("li.item");
                  const key = row ? row.dataset.key : "";
                  if (key && window.firstRows[window.firstRows.length - 1] !== key) window.firstRows.push(key);
                }).observe(document, { childList: true, subtree: true });"""
            )
            await page.goto(f"http://{master.address}/")
            await page.click("button[data-view=inbox]")
            await page.locator("#list li.item").first.wait_for(timeout=20_000)
            # Forgotten and clicked in one task: the observer, which reads the list as it is
            # when called, sees the old list no more.
            await page.evaluate(
                """() => {
                  window.firstRows = [];
                  const unread = [...document.querySelectorAll("#filters label")].find((l) => l.textContent.includes("Unread"));
                  unread.querySelector("input").click();
                }"""
            )
            await eventually(lambda: page.locator("#list li.item").count())
            rows = await page.locator("#list li.item").evaluate_all("rows => rows.map(r => r.dataset.key)")
            await shoot(page, "all-accounts-unread")
            shown = await page.evaluate("window.firstRows")
            await page.close()
    finally:
        await master.stop()
    # The first unread row is a-shop's newest unread one, and it was the first row from the
    # start: b-shop's older items never stood above it.
    assert rows[0] == newest_unread, rows[:3]
    assert shown == [newest_unread], shown


async def test_marking_many_items_read_goes_in_requests_of_a_thousand(browser: Any) -> None:
    """The API marks at most 1,000 inbox items a request: the console's api.markItemsRead
    sends 2,500 ids as three requests (1,000, 1,000, 500) and adds up what they marked. Its
    own module, in Chromium, against a stand-in for the endpoint."""
    bodies: list[dict[str, Any]] = []

    async def read_many(route: Any) -> None:
        assert route.request.url == "http://console.test/api/im/unified-messages/read-many"
        body = json.loads(route.request.post_data)
        bodies.append(body)
        answer = {"data": {"marked_count": len(body["ids"]) - 1}, "status_code": 0, "status_msg": ""}
        await route.fulfill(body=json.dumps(answer), content_type="application/json")

    page = await module_page(browser, read_many)
    answer = await page.evaluate(
        """async () => {
          const { api } = await import("/api.js");
          const ids = Array.from({ length: 2500 }, (_, n) => `message:m-${n}`);
          return await api.markItemsRead("acc-1", ids);
        }"""
    )
    await page.close()
    assert [len(body["ids"]) for body in bodies] == [1000, 1000, 500]
    assert [body["ids"][0] for body in bodies] == ["message:m-0", "message:m-1000", "message:m-2000"]
    assert {body["account_id"] for body in bodies} == {"acc-1"}
    assert answer == {"marked_count": 999 + 999 + 499}
