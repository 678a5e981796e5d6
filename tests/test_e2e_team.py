"""Two agents working one inbox from the console, each in their own browser context with
their own API key, against the demo's processes (simulator, worker in Chromium, master,
gateway):

- one claims a conversation; the other sees it claimed, and sees them writing;
- sending over someone else's claim asks first;
- a note stays with the team: the other agent sees it, the platform never receives it;
- a snoozed conversation comes back when the customer writes;
- a desktop notification comes for a thread that is mine or nobody's, not for another's.

Screenshots of the conversations view, a claimed conversation and the narrow window go to
test-artifacts/console/.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from services.master.auth.api_keys import create_api_key

from .demo_processes import DemoProcesses
from .test_e2e_console import _NOTIFICATIONS, NARROW, WIDE, browser, eventually, shoot

pytestmark = pytest.mark.e2e
__all__ = ["browser"]  # the fixture, shared with the console's test


class Agents:
    def __init__(self, demo: DemoProcesses, keys: dict[str, str]) -> None:
        self.demo, self.keys = demo, keys


@pytest_asyncio.fixture
async def agents(tmp_path: Path) -> AsyncIterator[Agents]:
    keys_file = tmp_path / "api-keys.toml"
    keys = {
        "fang": create_api_key(keys_file, "fang", ["*"], ["read", "reply"], agent="王芳"),
        "lei": create_api_key(keys_file, "lei", ["*"], ["read", "reply"], agent="李雷"),
    }
    demo = DemoProcesses(
        tmp_path, accounts=1, master_args=["--api-keys", str(keys_file), "--data-dir", str(tmp_path / "data")]
    )
    try:
        await demo.start()
        yield Agents(demo, keys)
    finally:
        await demo.stop()


async def _console_of(browser: Any, demo: DemoProcesses, key: str, errors: list[str]) -> Any:
    context = await browser.new_context(viewport=WIDE)
    await context.add_init_script(f"window.localStorage.setItem('imsync.api-key', {json.dumps(key)})")
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(demo.base + "/")
    await page.wait_for_selector("#connection[data-state=live]")
    await page.locator("[role=tab][data-view=threads]").click()
    return page


async def test_two_agents_share_the_inbox(agents: Agents, browser: Any) -> None:
    demo = agents.demo
    headers = {"Authorization": f"Bearer {agents.keys['fang']}"}
    async with (
        httpx.AsyncClient(base_url=demo.base, timeout=30, headers=headers) as http,
        httpx.AsyncClient(base_url=demo.platform, timeout=10) as platform,
    ):

        async def synced() -> bool:
            users = (await http.get("/api/im/accounts")).json()["data"]["users"]
            return len(users) == 1 and int(users[0]["version"]) > 0

        await eventually(synced)
        account_id = "shop-0"
        uid = demo.uid_of(account_id)
        # A customer writes: the conversation to work on.
        opening = f"请问什么时候发货 {secrets.token_hex(3)}"
        await platform.post("/__sim/customer", json={"uid": uid, "kind": "message", "text": opening})
        errors: list[str] = []
        fang = await _console_of(browser, demo, agents.keys["fang"], errors)
        lei = await _console_of(browser, demo, agents.keys["lei"], errors)

        row = fang.locator("#list .thread-row", has_text=opening)
        await row.wait_for(timeout=60_000)
        conversation_key = await row.get_attribute("data-key")
        assert conversation_key is not None
        await shoot(fang, "wide-threads")

        # 0. 王芳 adds a quick reply for the team, while 李雷 is writing one of his own: his
        #    panel shows hers at once and keeps what he typed; the master refuses his (an
        #    unknown placeholder), says why beside the form, and his words stay.
        await lei.locator("#templates").click()
        await lei.locator("#template-name").fill("物流")
        await lei.locator("#template-text").fill("{order_id} 已发货")
        await fang.locator("#templates").click()
        await fang.locator("#template-name").fill("问候")
        await fang.locator("#template-text").fill("{customer_name}您好，我是{agent_name}，请稍等")
        await fang.get_by_role("button", name="Add").click()
        await fang.locator(".template-list .template", has_text="/问候").wait_for()
        await shoot(fang, "wide-templates")
        await lei.locator(".template-list .template", has_text="/问候").wait_for(timeout=15_000)
        assert await lei.locator("#template-text").input_value() == "{order_id} 已发货"
        await lei.get_by_role("button", name="Add").click()
        await lei.locator(".template-form .error", has_text="order_id").wait_for()
        assert (
            await lei.locator("#template-name").input_value(),
            await lei.locator("#template-text").input_value(),
        ) == (
            "物流",
            "{order_id} 已发货",
        )

        # 1. 王芳 claims it; 李雷 sees it claimed, in the list and in the conversation.
        await row.click()
        await fang.locator(".handling .claim").click()
        await fang.locator(".handling .owner.mine", has_text="Yours").wait_for()
        theirs = lei.locator(f'#list .thread-row[data-key="{conversation_key}"] .owner-tag.theirs', has_text="王芳")
        await theirs.wait_for(timeout=30_000)
        await lei.locator(f'#list .thread-row[data-key="{conversation_key}"]').click()
        await lei.locator(".handling .owner.theirs", has_text="Assigned to 王芳").wait_for()

        # 2. 王芳 writes (without sending): 李雷 sees it.
        await fang.locator(".reply-box textarea").fill("")
        await fang.locator(".reply-box textarea").press_sequentially("您好，", delay=50)
        await lei.locator(".presence", has_text="王芳 is writing").wait_for(timeout=15_000)
        await shoot(lei, "wide-thread-claimed")

        # 2b. 李雷 picks the template with "/" in the reply box: filled for this customer.
        customer = (await lei.locator("#detail-title").inner_text()).strip()
        await lei.locator(".reply-box textarea").press_sequentially("/问", delay=30)
        await lei.locator(".template-picker [role=option]", has_text="/问候").wait_for()
        await lei.locator(".reply-box textarea").press("Enter")
        await eventually(lambda: _filled(lei, f"{customer}您好，我是李雷，请稍等"))
        await lei.locator(".reply-box textarea").fill("")

        # 3. 李雷 answering over 王芳's claim is asked first; cancelled, nothing is sent.
        await lei.locator(".reply-box textarea").fill("我来回复")
        await lei.locator(".reply-box textarea").press("Enter")
        confirm = lei.locator(".guard .confirm", has_text="王芳 owns this thread")
        await confirm.wait_for()
        assert await lei.locator(".reply-box textarea").input_value() == "我来回复", "the text stays while asked"
        await confirm.get_by_role("button", name="Cancel").click()
        assert await lei.locator(".guard .confirm").count() == 0
        assert await lei.locator(".bubble.mine").count() == 0

        # 4. A note stays with the team: 李雷 sees it; the platform never gets it.
        note = f"老客户，优先发货 {secrets.token_hex(3)}"
        await fang.locator(".reply-box .mode-note").click()
        await fang.locator(".reply-box textarea").fill(note)
        await fang.locator(".reply-box textarea").press("Enter")
        await fang.locator(".thread .note", has_text=note).wait_for()
        await lei.locator(".thread .note", has_text=note).wait_for(timeout=15_000)
        await shoot(fang, "wide-thread-note")

        # 5. Snoozed, it leaves the open list; the customer writes again and it is back.
        await fang.locator(".handling select.snooze").select_option("hour")
        await fang.locator(".handling .state.snoozed").wait_for()
        await fang.locator(".detail-header .back").evaluate("b => b.click()")
        await fang.locator(f'#list .thread-row[data-key="{conversation_key}"]').wait_for(state="detached")
        again = f"还在吗 {secrets.token_hex(3)}"
        await platform.post("/__sim/customer", json={"uid": uid, "kind": "message", "text": again})
        back = fang.locator(f'#list .thread-row[data-key="{conversation_key}"]', has_text=again)
        await back.wait_for(timeout=60_000)
        assert await back.get_attribute("data-state") == "open"

        # 5b. A comment thread, handled as a conversation is: a customer comments on a work;
        #     王芳 opens its thread from the list and claims it, 李雷 sees it claimed; 王芳's
        #     note on it stays with the team.
        remark = f"这个有优惠吗 {secrets.token_hex(3)}"
        await platform.post("/__sim/customer", json={"uid": uid, "kind": "comment", "text": remark})
        comment_row = fang.locator('#list .thread-row[data-kind="comment"]', has_text=remark)
        await comment_row.wait_for(timeout=60_000)
        comment_key = await comment_row.get_attribute("data-key")
        await comment_row.click()
        await fang.locator(".thread .comment", has_text=remark).wait_for()
        await fang.locator(".handling .claim").click()
        await fang.locator(".handling .owner.mine").wait_for()
        claimed = lei.locator(f'#list .thread-row[data-key="{comment_key}"] .owner-tag.theirs', has_text="王芳")
        await claimed.wait_for(timeout=30_000)
        comment_note = f"先私信问订单号 {secrets.token_hex(3)}"
        await fang.locator(".reply-box .mode-note").click()
        await fang.locator(".reply-box textarea").fill(comment_note)
        await fang.locator(".reply-box textarea").press("Enter")
        await fang.locator(".thread .note", has_text=comment_note).wait_for()
        await shoot(fang, "wide-comment-thread")
        await shoot(lei, "wide-comment-thread-claimed")

        truth = (await platform.get("/__sim/truth", params={"uid": uid})).json()
        assert not any(note in m["content"] for m in truth["messages"]), "a note never reaches the platform"
        assert not any("我来回复" in m["content"] for m in truth["messages"])
        assert not any(comment_note in c["text"] for c in truth["comments"]), "nor a comment thread's note"

        # 6. Search: a part of what the customer wrote, found once crawled, the part marked.
        wanted = f"蓝色保温杯{secrets.token_hex(2)}"
        await platform.post(
            "/__sim/customer", json={"uid": uid, "kind": "message", "text": f"我想买那个{wanted}，有吗"}
        )
        query = wanted[2:7]  # "保温杯" and two more: no word boundary needed

        async def found() -> bool:
            await fang.locator("#search-input").fill(query)
            await fang.locator("#search-input").press("Enter")
            await fang.locator(".search-head").wait_for()
            return bool(await fang.locator("#list .hit mark", has_text=query).count())

        await eventually(found)
        hit = fang.locator("#list .hit", has_text=wanted)
        assert await hit.locator("mark").inner_text() == query
        await shoot(fang, "wide-search")
        await hit.click()
        await fang.locator(".thread .bubble", has_text=wanted).wait_for()
        await fang.set_viewport_size(NARROW)
        await fang.locator(".handling .owner.mine").wait_for()
        await shoot(fang, "narrow-thread-claimed")
        await fang.locator(".detail-header .back").click()
        await shoot(fang, "narrow-search")
        await fang.locator("#search-input").press("Escape")
        await fang.locator(".search-head").wait_for(state="detached")
        await fang.locator("[role=tab][data-view=threads]").click()
        await fang.locator("#list .thread-row").first.wait_for()
        await shoot(fang, "narrow-threads")
        assert not errors, errors


async def test_notifications_leave_out_threads_another_agent_owns(agents: Agents, browser: Any) -> None:
    demo = agents.demo
    headers = {"Authorization": f"Bearer {agents.keys['lei']}"}
    async with (
        httpx.AsyncClient(base_url=demo.base, timeout=30, headers=headers) as lei,
        httpx.AsyncClient(base_url=demo.platform, timeout=10) as platform,
    ):

        async def synced() -> bool:
            users = (await lei.get("/api/im/accounts")).json()["data"]["users"]
            return len(users) == 1 and int(users[0]["version"]) > 0

        await eventually(synced)
        uid = demo.uid_of("shop-0")
        context = await browser.new_context(viewport=WIDE)
        await context.grant_permissions(["notifications"], origin=demo.base)
        await context.add_init_script(
            f"window.localStorage.setItem('imsync.api-key', {json.dumps(agents.keys['fang'])})"
        )
        await context.add_init_script(_NOTIFICATIONS)
        fang = await context.new_page()
        await fang.goto(demo.base + "/")
        await fang.wait_for_selector("#connection[data-state=live]")
        await fang.locator("#notify").click()
        await fang.locator("#notify[aria-pressed=true]").wait_for()
        await fang.evaluate("window.__hide(true)")

        # A customer's comment in nobody's thread: 王芳 hears of it.
        first = f"有优惠吗 {secrets.token_hex(3)}"
        written = (await platform.post("/__sim/customer", json={"uid": uid, "kind": "comment", "text": first})).json()
        await fang.locator("#list .thread-row", has_text=first).wait_for(timeout=60_000)
        await eventually(lambda: _notified(fang, first))

        # 李雷 claims the thread; the customer answers in it: not 王芳's to hear of.
        async def claimed() -> bool:
            answer = await lei.post(f"/api/im/discussions/{written['cid']}/claim", json={"account_id": "shop-0"})
            return answer.status_code == 200

        await eventually(claimed)
        again = f"什么时候发货 {secrets.token_hex(3)}"
        await platform.post(
            "/__sim/customer", json={"uid": uid, "kind": "reply", "text": again, "parent": written["cid"]}
        )
        await fang.locator("#list .thread-row", has_text=again).wait_for(timeout=60_000)
        # And a comment in nobody's thread after it: heard, so the reply had its chance to be.
        last = f"好看 {secrets.token_hex(3)}"
        await platform.post("/__sim/customer", json={"uid": uid, "kind": "comment", "text": last})
        await eventually(lambda: _notified(fang, last))
        bodies = [shown["body"] for shown in await fang.evaluate("window.__shown")]
        assert again not in bodies, bodies
        await context.close()


async def _notified(page: Any, text: str) -> bool:
    return any(shown["body"] == text for shown in await page.evaluate("window.__shown"))


async def _filled(page: Any, text: str) -> bool:
    return bool(await page.locator(".reply-box textarea").input_value() == text)


# Words the console may show in Chinese too: its name, the platform's, keys and codes, and
# what the simulator's customers wrote ("vlog" is in a work's title).
ALLOWED_ASCII = {"imsync", "douyin", "API", "QR", "SMS", "JSON", "HTTP", "Enter", "Shift", "Esc", "English", "vlog"}


async def _english_words(page: Any) -> set[str]:
    """The ASCII words of three letters or more the page shows or says (text, labels, titles, placeholders)."""
    said = await page.evaluate(
        """() => [
          document.body.innerText,
          ...[...document.querySelectorAll('[aria-label],[title],[placeholder],[alt]')].flatMap((node) =>
            ['aria-label', 'title', 'placeholder', 'alt'].map((name) => node.getAttribute(name) || '')),
        ].join('\\n')"""
    )
    import re

    said = re.sub(r"\{[a-z_]+\}", "", said)  # a template's placeholders are its syntax
    said = re.sub(r"\b[a-z]+-[a-z0-9]+\b", "", said)  # ids: the account's (shop-0), the worker's
    return {word for word in re.findall(r"[A-Za-z]{3,}", said) if word not in ALLOWED_ASCII}


async def test_the_console_speaks_chinese_and_switches_to_english(agents: Agents, browser: Any) -> None:
    demo = agents.demo
    async with httpx.AsyncClient(base_url=demo.base, timeout=30) as http:

        async def synced() -> bool:
            users = (
                await http.get("/api/im/accounts", headers={"Authorization": f"Bearer {agents.keys['fang']}"})
            ).json()
            return int(users["data"]["users"][0]["version"]) > 0

        await eventually(synced)
    context = await browser.new_context(viewport=WIDE, locale="zh-CN")
    await context.add_init_script(f"window.localStorage.setItem('imsync.api-key', {json.dumps(agents.keys['fang'])})")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(demo.base + "/")
    await page.wait_for_selector("#connection[data-state=live]")
    assert await page.locator("html").get_attribute("lang") == "zh-CN"
    seen: dict[str, set[str]] = {}
    await page.locator("#list [role=option]").first.wait_for()
    seen["inbox"] = await _english_words(page)
    await page.locator("[role=tab][data-view=threads]").click()
    await page.locator("#list .thread-row").first.click()
    await page.locator(".handling .claim").wait_for()
    seen["conversation"] = await _english_words(page)
    await shoot(page, "wide-zh-conversation")
    await page.locator("#templates").click()
    await page.locator(".template-form").wait_for()
    seen["templates"] = await _english_words(page)
    await page.locator("[role=tab][data-view=works]").click()
    await page.locator("#list .work").first.click()
    await page.locator(".comments .comment").first.wait_for()
    seen["works"] = await _english_words(page)
    await page.locator(".account", has_text="小店").first.click()
    await page.locator(".collections").wait_for()
    seen["account"] = await _english_words(page)
    await shoot(page, "wide-zh-account")
    assert {view: words for view, words in seen.items() if words} == {}

    # Switched to English, it says so at once, and remembers it.
    await page.locator("#language").select_option("en")
    await page.locator("[role=tab][data-view=threads]", has_text="Threads").wait_for()
    assert await page.locator("#connection").inner_text() == "Live", "the state it is in, not the page's first words"
    await page.reload()
    await page.locator("[role=tab][data-view=inbox]", has_text="Inbox").wait_for()
    assert await page.locator("html").get_attribute("lang") == "en"

    # 中文 and then English chosen at once, the Chinese words arriving last: English stays.
    arrived = asyncio.Event()

    async def slowly(route: Any) -> None:
        await asyncio.sleep(1.0)
        await route.continue_()
        arrived.set()

    await page.route("**/assets/locale-zh-CN.json", slowly)
    await page.locator("#language").select_option("zh-CN")
    await page.locator("#language").select_option("en")
    await asyncio.wait_for(arrived.wait(), 10)
    await asyncio.sleep(0.5)
    assert await page.locator("[role=tab][data-view=threads]").inner_text() == "Threads"
    assert await page.locator("html").get_attribute("lang") == "en"
    assert await page.locator("#language").input_value() == "en"
    await page.reload()
    await page.locator("[role=tab][data-view=inbox]", has_text="Inbox").wait_for()
    assert not errors, errors
